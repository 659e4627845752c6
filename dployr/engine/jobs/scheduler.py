"""The scheduler of one job: sleeps until the next due time, then says the run is due.

A child of the job's service supervisor (``scheduler``). It owns no process and reads no
store: it computes due times with :mod:`dployr.schedule` and hands each one to ``due``
(the job's :class:`~dployr.engine.jobs.runner.JobRunner`), which records and starts the
run. Between due times it sleeps, so a job costs the daemon nothing while it waits.

Time is the wall clock ``wall`` (Unix seconds: a schedule is about the calendar), slept on
with trio's clock: the sleep is recomputed if the wall clock was stepped meanwhile, so a
due time is never early. Tests give a wall clock that follows trio's autojump clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from dployr.schedule import Schedule, Trigger
from dployr.supervision import ChildContext

Due = Callable[[float, Trigger], Awaitable[None]]
"""What the scheduler calls when a run falls due: its due time and why it runs."""


class Scheduler:
    """The run function of a job's ``scheduler`` child."""

    def __init__(
        self,
        schedule: Schedule,
        due: Due,
        *,
        after: float,
        wall: Callable[[], float],
        on_next: Callable[[float], None] = lambda t: None,
    ) -> None:
        self.schedule = schedule
        self._due = due
        self._after = after
        """The latest due time already handled: the next one is after it."""
        self._wall = wall
        self._on_next = on_next

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hand every due time to ``due`` as it comes, until stopped."""
        task_status.started()
        while True:
            due = self.schedule.next_after(max(self._after, self._wall()))
            self._on_next(due)
            await self._sleep_until(due)
            self._after = due
            await self._due(due, Trigger.SCHEDULE)

    async def _sleep_until(self, due: float) -> None:
        # One sleep, and another only if the wall clock was stepped back meanwhile: a
        # sleep on the calendar's clock, not a poll.
        while (left := due - self._wall()) > 0:  # noqa: ASYNC110
            await trio.sleep(left)
