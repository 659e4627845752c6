"""The Watchdog's probe cadence, on a mock clock, against a real loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from dployr.engine.health import Check, HealthRestart, Verdict, Watchdog
from dployr.models import Health, HealthKind, HealthOptions
from dployr.supervision import ChildContext


@pytest.fixture
def clock() -> trio.testing.MockClock:
    # Jumps only once every task has waited 20 ms of real time: loopback connects finish
    # long before that, so a probe's own timeout never runs out while it waits on one.
    return trio.testing.MockClock(autojump_threshold=0.02)


async def test_a_release_that_failed_while_starting_is_found_ready_quickly(
    clock: trio.testing.MockClock,
) -> None:
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
    port = closed.getsockname()[1]
    check = Check(HealthKind.TCP, port, "/", None, Path("."), {})
    options = HealthOptions(interval=10.0, timeout=1.0, failures=3, successes=1)
    verdicts: list[tuple[float, Health]] = []
    degraded, healthy = trio.Event(), trio.Event()

    def on_verdict(verdict: Verdict) -> None:
        verdicts.append((trio.current_time(), verdict.state.health))
        if verdict.state.health is Health.DEGRADED:
            degraded.set()
        if verdict.state.health is Health.HEALTHY:
            healthy.set()

    watchdog = Watchdog(check, options, on_verdict)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(watchdog.run, ChildContext(("web", "health"), 1, None))
        with trio.fail_after(60):
            await degraded.wait()  # three refusals while the app "starts"
        up = trio.current_time()
        assert up - start < 1.0
        closed.listen()  # the app is up
        with trio.fail_after(60):
            await healthy.wait()
        # Still on the start-up cadence, not the 10 s interval.
        assert trio.current_time() - up < 2 * (up - start) + 0.1
        # Then every interval.
        count = len(verdicts)
        await trio.sleep(35)
        assert len(verdicts) - count == 3
        nursery.cancel_scope.cancel()
    closed.close()


async def test_each_run_starts_with_no_failures_and_its_own_start_period(
    clock: trio.testing.MockClock,
) -> None:
    options = HealthOptions(
        interval=1.0, timeout=1.0, failures=2, successes=1, start_period=5.0, restart_after=3
    )
    with trio.socket.socket() as closed:
        await closed.bind(("127.0.0.1", 0))  # never answers: every probe fails
        check = Check(HealthKind.TCP, closed.getsockname()[1], "/", None, Path("."), {})
        watchdog = Watchdog(check, options, lambda verdict: None)
        # One run per incarnation of the process, as the release supervisor restarts them.
        for incarnation in (1, 2, 3):
            start = trio.current_time()
            with pytest.raises(HealthRestart) as raised:
                await watchdog.run(ChildContext(("web", "health"), incarnation, None))
            assert str(raised.value).startswith("3 health checks failed in a row: connect to")
            # The failures during the start period did not count, in every run.
            assert trio.current_time() - start >= options.start_period + 2 * options.interval
