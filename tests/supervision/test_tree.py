"""A tree three levels deep: a crash-looping leaf takes down only its own subtree."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from dployr.errors import RestartIntensityExceeded
from dployr.supervision import (
    DISABLED_BACKOFF,
    ChildSpec,
    ChildTerminated,
    Crashed,
    Intensity,
    MaxIntensityReached,
    ShutdownFailed,
    SupervisionEvent,
    Supervisor,
    Topic,
)

from .children import Child, Recorder


async def test_a_crash_looping_leaf_takes_down_only_its_own_subtree(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    crashy, steady, worker = Child("crashy", log), Child("steady", log), Child("worker", log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    web = Supervisor(
        "web", [crashy.spec(backoff=DISABLED_BACKOFF), steady.spec()], intensity=Intensity(3, 60)
    )
    jobs = Supervisor("jobs", [worker.spec()])
    root = Supervisor(
        "root",
        [
            ChildSpec.supervisor("web", web.run, restart="transient"),
            ChildSpec.supervisor("jobs", jobs.run),
        ],
        intensity=Intensity(10, 600),
        events=events,  # nested supervisors publish on their parent's topic
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        assert log == ["start crashy", "start steady", "start worker"]
        for _ in range(4):  # the fourth crash is one more than web's intensity allows
            crashy.crash()
            await trio.testing.wait_all_tasks_blocked()
        await recorder.settle()
        gave_up = [e for e in recorder.events if isinstance(e, MaxIntensityReached)]
        assert [e.supervisor for e in gave_up] == [("root", "web")]
        web_exit = next(
            e
            for e in recorder.events
            if isinstance(e, ChildTerminated) and e.child.id == "web" and e.supervisor == ("root",)
        )
        assert isinstance(web_exit.reason, Crashed)
        assert isinstance(web_exit.reason.exception, RestartIntensityExceeded)
        # web's subtree was stopped (steady too) and restarted by root, with a fresh budget;
        # jobs and its worker never noticed.
        assert steady.incarnations == 2
        assert crashy.incarnations == 5
        assert worker.incarnations == 1
        stats = root.statistics()
        assert [(c.id, c.running, c.restarts) for c in stats.children] == [
            ("web", True, 1),
            ("jobs", True, 0),
        ]
        assert web.statistics().recent_restarts == 0
        crashy.crash()  # web has its whole budget again
        await trio.testing.wait_all_tasks_blocked()
        assert web.statistics().recent_restarts == 1
        nursery.cancel_scope.cancel()
    # Everything stopped depth-first in reverse order.
    assert log[-3:] == ["stop worker", "stop steady", "stop crashy"]


async def test_cancelling_the_root_stops_a_deep_tree_in_reverse_order() -> None:
    log: list[str] = []
    leaves = [Child(name, log) for name in ("a1", "a2", "b1", "b2")]
    a = Supervisor("a", [leaves[0].spec(), leaves[1].spec()])
    b = Supervisor("b", [leaves[2].spec(), leaves[3].spec()])
    mid = Supervisor("mid", [ChildSpec.supervisor("a", a.run)])
    root = Supervisor(
        "root",
        [ChildSpec.supervisor("mid", mid.run), ChildSpec.supervisor("b", b.run)],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        assert log == ["start a1", "start a2", "start b1", "start b2"]
        nursery.cancel_scope.cancel()
    assert log[4:] == ["stop b2", "stop b1", "stop a2", "stop a1"]


async def test_a_nested_supervisor_waits_out_its_childrens_grace_by_default(
    autojump_clock: trio.abc.Clock,
) -> None:
    # With the worker default (5 s), "mid" would be reported as failing to stop, and its
    # stop cut short, while its child still cleans up within the 8 s its own spec gives it.
    log: list[str] = []
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    slow = Child("slow", log, cleanup=7.0)
    mid = Supervisor("mid", [slow.spec(shutdown=8.0)])
    root = Supervisor("root", [ChildSpec.supervisor("mid", mid.run)], events=events)
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        stopping = trio.current_time()
        nursery.cancel_scope.cancel()
    assert log == ["start slow", "stop slow", "cleaned slow"]
    assert trio.current_time() - stopping == pytest.approx(7.0)
    stopped = [e for e in await recorder.settle() if isinstance(e, ChildTerminated)]
    assert [e.child.id for e in stopped] == ["slow", "mid"]
    assert not [e for e in recorder.events if isinstance(e, ShutdownFailed)]


@pytest.mark.parametrize("depth", [1, 2, 3])
async def test_child_paths_name_the_tree(depth: int) -> None:
    log: list[str] = []
    leaf = Child("leaf", log)
    events: Topic[SupervisionEvent] = Topic("events")
    recorder = Recorder(events)
    spec = leaf.spec()
    for level in range(depth, 1, -1):
        sup = Supervisor(f"s{level}", [spec])
        spec = ChildSpec.supervisor(f"s{level}", sup.run)
    root = Supervisor("s1", [spec], events=events)
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        started = [e for e in await recorder.settle() if e.child.id == "leaf"]
        assert started[0].supervisor == tuple(f"s{n}" for n in range(1, depth + 1))
        nursery.cancel_scope.cancel()
