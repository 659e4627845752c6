"""The restart policy as a release's supervisor applies it, on trio's autojump clock.

The process child here stands in for a service that an operator (or the OOM killer)
kills every 2 seconds; ``tests/engine/test_restarts.py`` does the same to real processes.
"""

from __future__ import annotations

import signal

import pytest
import trio

from dployr.engine import restarts
from dployr.errors import RestartIntensityExceeded
from dployr.models import RestartPolicy
from dployr.supervision import ChildContext, ChildSpec, Crashed, ExitReason, Strategy, Supervisor


async def killed_every_two_seconds(
    ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> ExitReason:
    task_status.started()
    await trio.sleep(2)
    return Crashed(signal=signal.SIGKILL)


def release_supervisor(policy: RestartPolicy) -> Supervisor:
    """A release's supervisor as the service builds it from ``policy``."""
    process = ChildSpec(
        "process",
        killed_every_two_seconds,
        restart=restarts.restart_type(policy),
        backoff=policy.backoff(),
    )
    return Supervisor(
        "release-1.1", [process], strategy=Strategy.ONE_FOR_ALL, intensity=policy.intensity()
    )


async def test_the_default_policy_fails_a_process_killed_every_two_seconds(
    autojump_clock: trio.abc.Clock,
) -> None:
    supervisor = release_supervisor(RestartPolicy())
    start = trio.current_time()
    with pytest.RaisesGroup(
        pytest.RaisesExc(RestartIntensityExceeded, match="gave up after 5 restarts in 60 s")
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
    # Up 2 s each time, under the 5 s minimum uptime: the backoff grows (0, 1, 2, 4, 8 s)
    # and the sixth kill, at 27 s, is one restart too many.
    assert trio.current_time() - start == pytest.approx(27)


async def test_a_generous_policy_keeps_it_up_for_good(autojump_clock: trio.abc.Clock) -> None:
    generous = RestartPolicy(max_restarts=50, window=60, delay=0.1, max_delay=1, min_uptime=1)
    supervisor = release_supervisor(generous)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(3600 + 1)
        # Up 2 s each time, over the 1 s minimum uptime: every restart is immediate, and
        # 30 a minute stay within the budget of 50.
        assert supervisor.statistics().restarts == 1800
        nursery.cancel_scope.cancel()
