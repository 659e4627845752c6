"""The scheduler child under trio's autojump clock: days pass in no time, due times exact.

The wall clock the scheduler reads follows trio's clock from a chosen start, so a test
can put it just before a daylight-saving change and let the nights go by.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import trio
import trio.testing

from dployr.engine.jobs.scheduler import Scheduler
from dployr.schedule import Schedule, Trigger
from dployr.supervision import ChildSpec, Supervisor

BERLIN = ZoneInfo("Europe/Berlin")


class Calendar:
    """A wall clock that runs on trio's (autojump) clock, from ``start``."""

    def __init__(self, start: datetime) -> None:
        self.offset = start.timestamp() - trio.current_time()

    def __call__(self) -> float:
        return self.offset + trio.current_time()


async def scheduled(
    schedule: Schedule, start: datetime, count: int, *, work: float = 0.0
) -> list[tuple[float, float]]:
    """The first ``count`` due times handed over, each with the wall time it was handed at.
    Each due run takes ``work`` seconds of the caller's time."""
    wall = Calendar(start)
    seen: list[tuple[float, float]] = []
    done = trio.Event()

    async def due(t: float, trigger: Trigger) -> None:
        assert trigger is Trigger.SCHEDULE
        seen.append((t, wall()))
        await trio.sleep(work)
        if len(seen) >= count:
            done.set()

    async def overdue(after: float) -> None:
        seen.append((-after, wall()))  # after which due time several went by unseen
        if len(seen) >= count:
            done.set()

    scheduler = Scheduler(schedule, due, overdue, after=wall(), wall=wall)
    supervisor = Supervisor("job", [ChildSpec("scheduler", scheduler.run, shutdown=0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await done.wait()
        nursery.cancel_scope.cancel()
    return seen[:count]


def shown(schedule: Schedule, t: float) -> str:
    return schedule.local(t).strftime("%m-%d %H:%M %Z")


async def test_due_times_are_handed_over_on_time(autojump_clock: trio.testing.MockClock) -> None:
    every_minute = Schedule("* * * * *")
    start = datetime(2026, 12, 6, 20, 0, 30, tzinfo=BERLIN)
    seen = await scheduled(every_minute, start, 5)
    assert [shown(every_minute, t) for t, _ in seen] == [
        "12-06 19:01 UTC",
        "12-06 19:02 UTC",
        "12-06 19:03 UTC",
        "12-06 19:04 UTC",
        "12-06 19:05 UTC",
    ]
    assert all(at == t for t, at in seen)  # no skew at all on a clock that only jumps


async def test_a_nightly_job_across_the_spring_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nightly = Schedule("30 2 * * *", "Europe/Berlin")
    seen = await scheduled(nightly, datetime(2026, 3, 27, 12, 0, tzinfo=BERLIN), 4)
    assert [shown(nightly, t) for t, _ in seen] == [
        "03-28 02:30 CET",
        "03-29 03:00 CEST",  # 02:30 did not exist that night: just after the jump
        "03-30 02:30 CEST",
        "03-31 02:30 CEST",
    ]


async def test_a_nightly_job_across_the_autumn_change_runs_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nightly = Schedule("30 2 * * *", "Europe/Berlin")
    seen = await scheduled(nightly, datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN), 3)
    assert [shown(nightly, t) for t, _ in seen] == [
        "10-25 02:30 CEST",  # 02:30 came twice that night: it ran the first time only
        "10-26 02:30 CET",
        "10-27 02:30 CET",
    ]


async def test_due_times_that_go_by_unseen_are_never_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    every_minute = Schedule("* * * * *")
    start = datetime(2026, 12, 6, 20, 0, 30, tzinfo=BERLIN)
    # Handing a due time over takes 70 s: the next one is late, and handed over at once.
    seen = await scheduled(every_minute, start, 3, work=70)
    assert [(shown(every_minute, t), at - t) for t, at in seen] == [
        ("12-06 19:01 UTC", 0),
        ("12-06 19:02 UTC", 10),
        ("12-06 19:03 UTC", 20),
    ]
    # It takes 150 s: two due times go by, and the catch-up rules get them.
    seen = await scheduled(every_minute, start, 4, work=150)
    assert [shown(every_minute, abs(t)) for t, _ in seen] == [
        "12-06 19:01 UTC",
        "12-06 19:01 UTC",  # overdue: the due times after 19:01 up to now (19:03:30)
        "12-06 19:04 UTC",
        "12-06 19:04 UTC",
    ]
    assert [t < 0 for t, _ in seen] == [False, True, False, True]


async def test_a_run_is_got_ready_lead_seconds_ahead_until_handed_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    every_minute = Schedule("* * * * *")
    wall = Calendar(datetime(2026, 12, 6, 20, 0, 30, tzinfo=BERLIN))
    seen: list[tuple[str, float]] = []
    done = trio.Event()

    @contextlib.asynccontextmanager
    async def ahead(due: float) -> AsyncIterator[None]:
        seen.append(("ready", due - wall()))
        yield
        seen.append(("over", due - wall()))

    async def due(t: float, trigger: Trigger) -> None:
        seen.append(("due", t - wall()))
        if len(seen) >= 6:
            done.set()

    async def overdue(after: float) -> None:
        raise AssertionError("nothing is overdue")

    scheduler = Scheduler(
        every_minute, due, overdue, after=wall(), wall=wall, ahead=ahead, lead=2.0
    )
    supervisor = Supervisor("job", [ChildSpec("scheduler", scheduler.run, shutdown=0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await done.wait()
        nursery.cancel_scope.cancel()
    assert seen[:6] == [("ready", 2.0), ("due", 0.0), ("over", 0.0)] * 2
