"""Supervisor semantics, after OTP: strategies, restart types, intensity, backoff, shutdown."""

from __future__ import annotations

import itertools
import math

import pytest
import trio
import trio.testing

from dployr.errors import (
    ActorDead,
    DuplicateChild,
    RestartIntensityExceeded,
    SpecError,
    StartError,
    UnknownChild,
)
from dployr.supervision import (
    DISABLED_BACKOFF,
    NORMAL,
    Backoff,
    ChildContext,
    ChildKind,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildTerminated,
    Crashed,
    Intensity,
    MaxIntensityReached,
    Restart,
    Shutdown,
    ShutdownFailed,
    Strategy,
    SupervisionEvent,
    Supervisor,
    Topic,
)
from dployr.supervision.policy import DEFAULT_SHUTDOWN

from .children import Child, Recorder


def three(log: list[str]) -> tuple[Child, Child, Child]:
    return Child("a", log), Child("b", log), Child("c", log)


async def test_children_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    a, b, c = three(log)
    sup = Supervisor("root", [a.spec(), b.spec(), c.spec()])
    async with trio.open_nursery() as nursery:
        assert await nursery.start(sup.run) is sup
        assert log == ["start a", "start b", "start c"]
        nursery.cancel_scope.cancel()
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_start_returns_only_once_every_child_is_ready(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    a, b, c = three(log)
    b.ready_after = 5.0  # b takes 5 s to become ready
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("root", [a.spec(), b.spec(), c.spec()]).run)
        assert trio.current_time() == pytest.approx(5.0)
        assert log == ["start a", "start b", "start c"]
        nursery.cancel_scope.cancel()


async def test_a_child_that_fails_to_start_stops_the_ones_already_started() -> None:
    log: list[str] = []
    a, b, c = three(log)
    c.fail_starts = 1
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    sup = Supervisor("root", [a.spec(), b.spec(), c.spec()], events=events)
    async with trio.open_nursery() as nursery:
        with pytest.raises(
            StartError, match="root/c failed to start: crashed: RuntimeError: c can"
        ):
            await nursery.start(sup.run)
    assert log == ["start a", "start b", "failed c", "stop b", "stop a"]
    assert await recorder.kinds() == [
        "child_started a",
        "child_started b",
        "start_error c",
        "child_terminated b",
        "child_terminated a",
    ]


EXPECTED_AFTER_B_EXITS = {
    Strategy.ONE_FOR_ONE: ["start b"],
    Strategy.REST_FOR_ONE: ["stop c", "start b", "start c"],
    Strategy.ONE_FOR_ALL: ["stop c", "stop a", "start a", "start b", "start c"],
}


@pytest.mark.parametrize(
    ("strategy", "restart", "exit"),
    list(itertools.product(Strategy, Restart, ["crash", "finish"])),
    ids=lambda v: v.value if hasattr(v, "value") else v,
)
async def test_strategy_by_restart_type_by_exit(
    strategy: Strategy, restart: Restart, exit: str
) -> None:
    log: list[str] = []
    a, b, c = three(log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    sup = Supervisor(
        "root", [a.spec(), b.spec(restart=restart), c.spec()], strategy=strategy, events=events
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await recorder.settle()
        del log[:]
        b.crash() if exit == "crash" else b.finish()
        restarted = restart is Restart.PERMANENT or (
            restart is Restart.TRANSIENT and exit == "crash"
        )
        kinds = await recorder.kinds()
        expected_log = [f"{exit} b"] + (EXPECTED_AFTER_B_EXITS[strategy] if restarted else [])
        assert log == expected_log
        # The event sequence: b's exit first, then (if restarted) siblings stopped in reverse
        # order as their own events, the restart, and the starts in order.
        assert kinds[0] == "child_terminated b"
        terminated = [e for e in recorder.events if isinstance(e, ChildTerminated)]
        assert terminated[0].reason == (
            NORMAL if exit == "finish" else Crashed(message="RuntimeError: b crashed")
        )
        if restarted:
            expected = [line.split() for line in EXPECTED_AFTER_B_EXITS[strategy]]
            stops = [name for verb, name in expected if verb == "stop"]
            starts = [name for verb, name in expected if verb == "start"]
            assert kinds[1:] == (
                [f"child_terminated {s}" for s in stops]
                + ["child_restarting b"]
                + [f"child_started {s}" for s in starts]
            )
            for event in terminated[1:]:  # siblings were stopped, not crashed
                assert event.reason == Shutdown("restart of b")
        else:
            assert kinds == ["child_terminated b"]
        # The final tree: everything runs again, except b when it was not restarted; a
        # temporary b is forgotten altogether.
        stats = sup.statistics()
        running = {child.id: child.running for child in stats.children}
        expected = {"a": True, "b": restarted, "c": True}
        if restart is Restart.TEMPORARY:
            del expected["b"]
        assert running == expected
        assert stats.restarts == (1 if restarted else 0)
        nursery.cancel_scope.cancel()


async def test_a_crash_reason_returned_as_a_value_restarts_a_transient_child() -> None:
    started = 0

    async def exits_with_code(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> Crashed | None:
        nonlocal started
        started += 1
        task_status.started()
        if started == 1:
            return Crashed(exit_code=3)  # an OS process actor reports its exit this way
        await trio.sleep_forever()
        return None

    sup = Supervisor("root", [ChildSpec("proc", exits_with_code, restart="transient")])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        assert started == 2
        child = sup.statistics().children[0]
        assert child.last_exit == Crashed(exit_code=3)
        assert child.last_exit.describe() == "exited with code 3"
        nursery.cancel_scope.cancel()


async def test_exceeding_the_intensity_stops_children_in_reverse_and_escalates(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    a, b, c = three(log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    sup = Supervisor(
        "root",
        [a.spec(), b.spec(backoff=DISABLED_BACKOFF), c.spec()],
        intensity=Intensity(restarts=2, period=10),
        events=events,
    )
    with pytest.RaisesGroup(
        pytest.RaisesExc(RestartIntensityExceeded, match="root gave up after 2 restarts in 10 s")
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            for _ in range(3):
                await trio.testing.wait_all_tasks_blocked()
                b.crash()
    assert log[-3:] == ["crash b", "stop c", "stop a"]
    kinds = await recorder.kinds()
    assert kinds[-4:] == [
        "child_terminated b",
        "max_intensity_reached b",
        "child_terminated c",
        "child_terminated a",
    ]
    gave_up = next(e for e in recorder.events if isinstance(e, MaxIntensityReached))
    assert gave_up.describe() == "gave up after 2 restarts in 10 s"


async def test_restarts_outside_the_period_do_not_count(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    b = Child("b", log)
    sup = Supervisor(
        "root", [b.spec(backoff=DISABLED_BACKOFF)], intensity=Intensity(restarts=2, period=10)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        for _ in range(10):  # one crash every 6 s: never more than 2 inside 10 s
            await trio.sleep(6)
            b.crash()
            await trio.testing.wait_all_tasks_blocked()
        assert b.incarnations == 11
        assert sup.statistics().restarts == 10
        nursery.cancel_scope.cancel()


async def test_backoff_delays_follow_the_policy_and_reset_after_stable_uptime(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    b = Child("b", log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    backoff = Backoff(initial=1, cap=4, stable=30)
    sup = Supervisor(
        "root", [b.spec(backoff=backoff)], intensity=Intensity(100, 1000), events=events
    )

    async def crash_and_time() -> tuple[float, float]:
        """Crash b at once when it runs; return (announced delay, measured delay)."""
        await recorder.settle()
        crashed_at = trio.current_time()
        b.crash()
        restarting = await recorder.next(ChildRestarting)
        started = await recorder.next(ChildStarted)  # the autojump clock runs the timer
        return restarting.delay, started.at - crashed_at

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        timings = [await crash_and_time() for _ in range(6)]
        assert [announced for announced, _ in timings] == [0, 1, 2, 4, 4, 4]
        for announced, measured in timings:
            assert measured == pytest.approx(announced)
        await trio.sleep(30)  # stable for the stable period: the next crash restarts at once
        assert (await crash_and_time())[0] == 0
        assert (await crash_and_time())[0] == 1
        nursery.cancel_scope.cancel()


async def test_a_failed_restart_counts_and_is_retried_with_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    b = Child("b", log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    sup = Supervisor(
        "root", [b.spec(backoff=Backoff(1, 1, 10))], intensity=Intensity(3, 60), events=events
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        b.fail_starts = 2
        b.crash()
        await trio.sleep(5)
        assert log[1:] == ["crash b", "failed b", "failed b", "start b"]
        assert sup.statistics().restarts == 3
        kinds = await recorder.kinds()
        assert kinds.count("start_error b") == 2
        nursery.cancel_scope.cancel()


async def test_shutdown_gives_each_child_its_grace_then_cancels_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    polite = Child("polite", log, cleanup=1.0)  # cleans up within its 5 s grace
    stubborn = Child("stubborn", log, cleanup=1000.0)  # ignores its 3 s grace
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    sup = Supervisor("root", [polite.spec(shutdown=5), stubborn.spec(shutdown=3)], events=events)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        start = trio.current_time()
        nursery.cancel_scope.cancel()
    # Reverse order: stubborn first, cut off after its 3 s; then polite, done after 1 s.
    assert log[2:] == ["stop stubborn", "stop polite", "cleaned polite"]
    assert trio.current_time() - start == pytest.approx(4.0)
    failed = [e for e in await recorder.settle() if isinstance(e, ShutdownFailed)]
    assert [e.child.id for e in failed] == ["stubborn"]
    assert "cancelled after 3 s of grace" in failed[0].describe()


async def test_a_brutal_kill_gives_no_grace(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    child = Child("c", log, cleanup=1000.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(Supervisor("root", [child.spec(shutdown=0)]).run)
        start = trio.current_time()
        nursery.cancel_scope.cancel()
    assert trio.current_time() == start
    assert log == ["start c", "stop c"]


async def test_children_are_added_terminated_restarted_and_deleted_at_run_time() -> None:
    log: list[str] = []
    a, b = Child("a", log), Child("b", log)
    sup = Supervisor("root", [a.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert await sup.start_child(b.spec()) == 1
        assert sup.which_children() == ["a", "b"]
        with pytest.raises(DuplicateChild, match="root' already has a child 'b'"):
            await sup.start_child(b.spec())
        await sup.terminate_child("b")
        assert log[-1] == "stop b"
        stats = {c.id: c for c in sup.statistics().children}
        assert not stats["b"].running
        assert stats["b"].last_exit == Shutdown()
        assert await sup.restart_child("b") == 2
        with pytest.raises(StartError, match="already running"):
            await sup.restart_child("b")
        await sup.delete_child("b")
        assert sup.which_children() == ["a"]
        with pytest.raises(UnknownChild, match="root' has no child 'b'"):
            await sup.terminate_child("b")
        nursery.cancel_scope.cancel()
    with pytest.raises(ActorDead, match="supervisor 'root' is not running"):
        await sup.start_child(b.spec())


async def test_terminating_one_child_does_not_block_the_supervisor(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    slow = Child("slow", log, cleanup=8.0)
    other = Child("other", log)
    sup = Supervisor("root", [slow.spec(shutdown=10), other.spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        nursery.start_soon(sup.terminate_child, "slow")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await sup.start_child(Child("new", log).spec())  # not held up by slow's clean-up
        assert trio.current_time() == start
        other.crash()
        await trio.testing.wait_all_tasks_blocked()
        assert other.incarnations == 2
        nursery.cancel_scope.cancel()


async def test_a_temporary_child_is_reported_never_escalated_and_forgotten() -> None:
    log: list[str] = []
    temp = Child("temp", log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    sup = Supervisor(
        "root", [temp.spec(restart="temporary")], intensity=Intensity(0, 60), events=events
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        temp.crash()
        await trio.testing.wait_all_tasks_blocked()
        stats = sup.statistics()
        assert stats.restarts == 0
        assert stats.children == ()  # forgotten, as in OTP: its id is free again
        exits = [e for e in await recorder.settle() if isinstance(e, ChildTerminated)]
        assert isinstance(exits[0].reason, Crashed)
        assert await sup.start_child(temp.spec(restart="temporary")) == 2
        nursery.cancel_scope.cancel()


async def test_statistics_are_frozen() -> None:
    sup = Supervisor("root", [Child("a", []).spec()])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        stats = sup.statistics()
        with pytest.raises(AttributeError):
            stats.restarts = 3  # type: ignore[misc]
        assert stats.children[0].value == 1
        nursery.cancel_scope.cancel()


def test_a_childs_shutdown_default_follows_its_kind() -> None:
    start = Child("x", []).start
    assert ChildSpec("x", start).kind is ChildKind.WORKER
    assert ChildSpec("x", start).shutdown == DEFAULT_SHUTDOWN
    nested = ChildSpec.supervisor("x", start, "transient")
    assert (nested.kind, nested.shutdown, nested.restart) == (
        ChildKind.SUPERVISOR,
        math.inf,
        Restart.TRANSIENT,
    )
    assert ChildSpec("x", start, kind="supervisor").shutdown == math.inf
    assert ChildSpec.supervisor("x", start, shutdown=30.0).shutdown == 30.0  # said: kept


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ChildSpec("", Child("x", []).start), "non-empty string"),
        (lambda: ChildSpec("a/b", Child("x", []).start), "may not contain '/'"),
        (lambda: ChildSpec("x" * 300, Child("x", []).start), "longer than 200"),
        (lambda: ChildSpec("x", "not callable"), "must be callable"),  # type: ignore[arg-type]
        (lambda: ChildSpec("x", Child("x", []).start, restart="sometimes"), "restart must be"),
        (lambda: ChildSpec("x", Child("x", []).start, shutdown=-1), "shutdown must be"),
        (lambda: ChildSpec("x", Child("x", []).start, shutdown=math.nan), "shutdown must be"),
        (lambda: ChildSpec("x", Child("x", []).start, kind="manager"), "kind must be one of"),
        (lambda: Supervisor("s", strategy="all_for_none"), "strategy must be one of"),
        (
            lambda: Supervisor(
                "s",
                [ChildSpec("x", Child("x", []).start, backoff=Backoff(10, 60, 10))],
                intensity=Intensity(5, 60),
            ),
            "crash loop would never be stopped",
        ),
    ],
)
def test_specs_are_validated_when_built(build: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build()  # type: ignore[operator]
