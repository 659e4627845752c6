"""The scheduler of one job: sleeps until the next due time, then says the run is due.

A child of the job's service supervisor (``scheduler``). It owns no process and reads no
store: it computes due times with :mod:`dployr.schedule` and hands each one to ``due``
(the job's :class:`~dployr.engine.jobs.runner.JobRunner`), which records and starts the
run. Between due times it sleeps, so a job costs the daemon nothing while it waits. No due
time is dropped: one that is late is handed over at once; several gone by unseen (the
machine slept) go to ``overdue``, where the catch-up rules apply.

Time is the wall clock ``wall`` (Unix seconds: a schedule is about the calendar), slept on
with trio's clock: the sleep is recomputed if the wall clock was stepped meanwhile, so a
due time is never early. Tests give a wall clock that follows trio's autojump clock.

With ``ahead`` and ``lead``, it wakes ``lead`` seconds before each due time and holds the
run's start in ``ahead(due)`` (a context) until the due time has been handed over: the
job's runner spawns the run's process there, held before its program, so that starting it
at the due time is one write, even with many jobs due in the same second (the spawns and
their cgroup moves are done by then, off the event loop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from dployr.schedule import Schedule, Trigger
from dployr.supervision import ChildContext

Due = Callable[[float, Trigger], Awaitable[None]]
"""What the scheduler calls when a run falls due: its due time and why it runs."""
Overdue = Callable[[float], Awaitable[None]]
"""What it calls when several due times after the given one have passed unseen."""
Ahead = Callable[[float], contextlib.AbstractAsyncContextManager[None]]
"""What it holds from ``lead`` seconds before a due time until it was handed over."""


def _nothing_ahead(due: float) -> contextlib.AbstractAsyncContextManager[None]:
    return contextlib.nullcontext()


class Scheduler:
    """The run function of a job's ``scheduler`` child."""

    def __init__(
        self,
        schedule: Schedule,
        due: Due,
        overdue: Overdue,
        *,
        after: float,
        wall: Callable[[], float],
        on_next: Callable[[float], None] = lambda t: None,
        ahead: Ahead = _nothing_ahead,
        lead: float = 0.0,
    ) -> None:
        self.schedule = schedule
        self._due = due
        self._overdue = overdue
        self._after = after
        """The latest due time already handled: the next one is after it."""
        self._wall = wall
        self._on_next = on_next
        self._ahead = ahead
        self._lead = lead

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hand every due time to ``due`` as it comes, until stopped."""
        task_status.started()
        schedule = self.schedule
        while True:
            due = schedule.next_after(self._after)
            now = self._wall()
            if due < now and schedule.next_after(due) <= now:
                # Two due times or more went by unseen: the wall clock jumped (a machine
                # that slept), or handing one over took long. The catch-up rules decide:
                # the latest runs once if within the starting deadline, the rest are
                # missed.
                await self._overdue(self._after)
                self._after = schedule.last_at_or_before(now) or now
                continue
            self._on_next(due)
            await self._sleep_until(due - self._lead)
            # Not when it is due already: getting ready would only delay it.
            ready = self._ahead(due) if due > self._wall() else _nothing_ahead(due)
            async with ready:
                await self._sleep_until(due)  # no wait if it is just late: it runs now
                self._after = due
                await self._due(due, Trigger.SCHEDULE)

    async def _sleep_until(self, due: float) -> None:
        # One sleep, and another only if the wall clock was stepped back meanwhile: a
        # sleep on the calendar's clock, not a poll.
        while (left := due - self._wall()) > 0:  # noqa: ASYNC110
            await trio.sleep(left)
