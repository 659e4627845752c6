"""Scheduled jobs, the pure part: schedules, a job's options, and the rules of its runs.

A job's schedule is a 5-field cron expression (``0 3 * * *``) or a nickname (``@daily``),
read in a time zone (``Europe/Berlin``; UTC by default). The expression is evaluated by
cronsim (the parser healthchecks.io runs on), which keeps Debian cron's rules across a
daylight-saving change: a fixed time that does not exist that day (02:30 when clocks jump
from 02:00 to 03:00) fires at the first minute after the jump, and a time that happens
twice (when clocks go back) fires once, at its first occurrence.

The rules here decide, with no clock and no I/O, what a scheduler does:

- :func:`on_due`: a run is due while others are active: start it, skip it, or replace them
  (the job's ``concurrency``);
- :func:`catch_up`: the daemon starts after due times it missed: run the latest of them
  once if it is still within the ``starting_deadline``, and record the rest as missed.

Everything in this module is plain values: no trio, no store.
"""

from __future__ import annotations

import enum
import math
import zoneinfo
from datetime import UTC, datetime

import attrs
from cronsim import CronSim, CronSimError

from dployr.errors import SpecError


class InvalidSchedule(SpecError):
    """A schedule, time zone or job option that dployr refuses."""


NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The nicknames cron understands (but ``@reboot``: a job runs on a schedule or on demand)."""

MAX_SCAN = 1000
"""The most due times counted one by one when the daemon was down a long time (a job due
every minute misses 1440 a day); beyond it, a missed record says "more than 1000"."""


class Concurrency(enum.Enum):
    """What a run that falls due does while another run of the job is still active."""

    FORBID = "forbid"
    """It is skipped, and recorded as skipped (the default)."""
    REPLACE = "replace"
    """The active runs are stopped (TERM, grace, KILL), then it starts."""
    ALLOW = "allow"
    """It starts beside them."""


class Trigger(enum.Enum):
    """Why a run exists."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    CATCH_UP = "catch-up"
    """A due time passed while the daemon was down; it runs once, late."""


class RunStatus(enum.Enum):
    """Where a run is, or how it ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    """Its process exited with code 0."""
    FAILED = "failed"
    """A non-zero exit, a signal, its timeout, or the daemon died during it."""
    STOPPED = "stopped"
    """Stopped on purpose before it ended: replaced by a newer run, or the job was stopped."""
    SKIPPED = "skipped"
    """Not started: another run was active and the job's concurrency is ``forbid``."""
    MISSED = "missed"
    """Not started: it fell due while the daemon was down, past its starting deadline."""

    @property
    def finished(self) -> bool:
        """Whether the run has ended (or never started)."""
        return self is not RunStatus.RUNNING


def expand(expression: str) -> str:
    """The 5 fields of a schedule (a nickname becomes its expression)."""
    return NICKNAMES.get(expression.strip().lower(), expression.strip())


def check_schedule(expression: object) -> str:
    """Return ``expression`` if it is a schedule dployr runs, else raise InvalidSchedule."""
    if not isinstance(expression, str) or not expression.strip() or len(expression) > 200:
        raise InvalidSchedule(
            f"schedule must be a cron expression such as '0 3 * * *' or @daily, not {expression!r}"
        )
    if expression.strip().startswith("@") and expression.strip().lower() not in NICKNAMES:
        names = ", ".join(NICKNAMES)
        raise InvalidSchedule(f"unknown schedule {expression!r}: use 5 cron fields or {names}")
    fields = expand(expression).split()
    if len(fields) != 5 or not expression.strip().isprintable():
        raise InvalidSchedule(
            f"schedule {expression!r} must have 5 fields (minute hour day-of-month month "
            "day-of-week), such as '0 3 * * *'"
        )
    try:
        it = CronSim(" ".join(fields), datetime(2000, 1, 1, tzinfo=UTC))
        next(it)
    except CronSimError as error:
        raise InvalidSchedule(f"schedule {expression!r} is not valid: {error}") from None
    except StopIteration:
        raise InvalidSchedule(f"schedule {expression!r} never falls due") from None
    return expression.strip()


def check_timezone(name: object) -> str:
    """Return ``name`` if it names a time zone (IANA: ``Europe/Berlin``, ``UTC``)."""
    rule = "use an IANA name such as UTC or Europe/Berlin"
    if not isinstance(name, str) or not name or len(name) > 100:
        raise InvalidSchedule(f"time zone must be text ({rule}), not {name!r}")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone {name!r}: {rule}") from None
    return name


@attrs.frozen
class Schedule:
    """When a job falls due: a cron expression read in a time zone."""

    expression: str = attrs.field(converter=check_schedule)
    timezone: str = attrs.field(default="UTC", validator=lambda _, __, v: check_timezone(v))

    def _zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def next_after(self, t: float) -> float:
        """The first due time strictly after ``t`` (Unix seconds)."""
        start = datetime.fromtimestamp(math.floor(t), self._zone())
        return next(CronSim(expand(self.expression), start)).timestamp()

    def last_at_or_before(self, t: float) -> float | None:
        """The latest due time at or before ``t`` (None if there is none in 50 years)."""
        # Due times are whole seconds: at or before t is before the next whole second.
        start = datetime.fromtimestamp(math.floor(t) + 1, self._zone())
        try:
            return next(CronSim(expand(self.expression), start, reverse=True)).timestamp()
        except StopIteration:
            return None

    def due_back(self, t: float, *, after: float, limit: int) -> list[float]:
        """The due times in ``(after, t]``, newest first, at most ``limit`` of them."""
        start = datetime.fromtimestamp(math.floor(t) + 1, self._zone())
        found: list[float] = []
        for due in CronSim(expand(self.expression), start, reverse=True):
            stamp = due.timestamp()
            if stamp <= after or len(found) >= limit:
                break
            found.append(stamp)
        return found

    def due_between(self, start: float, end: float, limit: int = MAX_SCAN) -> list[float]:
        """The due times in ``(start, end]``, oldest first, at most ``limit`` of them."""
        found: list[float] = []
        t = start
        while len(found) < limit:
            t = self.next_after(t)
            if t > end:
                break
            found.append(t)
        return found

    def local(self, t: float) -> datetime:
        """``t`` as a time in the schedule's zone (for messages and the dashboard)."""
        return datetime.fromtimestamp(t, self._zone())


def _timeout(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidSchedule(f"timeout must be a number of seconds, not {value!r}")
    if not 0 < value <= 7 * 86400:
        raise InvalidSchedule(f"timeout must be more than 0 and at most 7 days, not {value!r}")


def _deadline(_: object, __: object, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidSchedule(f"starting-deadline must be a number of seconds, not {value!r}")
    if not 0 <= value <= 366 * 86400:
        raise InvalidSchedule(
            f"starting-deadline must be from 0 seconds to 366 days, not {value!r}"
        )


def _schedule(_: object, __: object, value: str | None) -> None:
    if value is not None:
        check_schedule(value)


DEFAULT_TIMEOUT = 3600.0


@attrs.frozen
class JobOptions:
    """How a job (a service of type ``job``) runs: its schedule and the rules of its runs."""

    schedule: str | None = attrs.field(default=None, validator=_schedule)
    """A cron expression or nickname; None: the job runs only when asked (``jobs run``)."""
    timezone: str = attrs.field(default="UTC", validator=lambda _, __, v: check_timezone(v))
    """The zone the schedule is read in."""
    concurrency: Concurrency = Concurrency.FORBID
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=_timeout)
    """Seconds a run may take; then SIGTERM to its group, the stop grace, SIGKILL."""
    starting_deadline: float | None = attrs.field(default=None, validator=_deadline)
    """How late a run missed while the daemon was down may still start (once); None: however
    late. Past it, the run is recorded as missed."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.concurrency, Concurrency):
            raise InvalidSchedule(
                f"concurrency must be forbid, replace or allow, not {self.concurrency!r}"
            )

    @property
    def cron(self) -> Schedule | None:
        """The schedule as a value that computes due times, if the job has one."""
        if self.schedule is None:
            return None
        return Schedule(self.schedule, self.timezone)


class Decision(enum.Enum):
    """What to do with a run that falls due (:func:`on_due`)."""

    START = "start"
    SKIP = "skip"
    REPLACE = "replace"
    """Stop the active runs first, then start."""


def on_due(active: int, concurrency: Concurrency) -> Decision:
    """What a run that falls due while ``active`` runs are active does."""
    if active == 0 or concurrency is Concurrency.ALLOW:
        return Decision.START
    if concurrency is Concurrency.FORBID:
        return Decision.SKIP
    return Decision.REPLACE


@attrs.frozen
class CatchUp:
    """What a scheduler that starts does about the due times it missed (:func:`catch_up`)."""

    run_at: float | None = None
    """The due time to run now, late, as a catch-up run (at most one)."""
    missed: tuple[float, ...] = ()
    """Due times recorded as missed (at most :data:`MAX_SCAN`, the latest ones)."""
    more_missed: bool = False
    """There were more missed due times than ``missed`` holds."""

    @property
    def nothing(self) -> bool:
        """No due time was missed."""
        return self.run_at is None and not self.missed


def catch_up(schedule: Schedule, handled: float, now: float, deadline: float | None) -> CatchUp:
    """The due times in ``(handled, now]`` were missed: which to run once, which are missed.

    ``handled`` is the latest due time the job has a record of (run, skipped or missed),
    or when it was deployed. The latest missed due time runs once if it is within
    ``deadline`` seconds of ``now`` (or there is no deadline); every other one is recorded
    as missed, never run. So however long the daemon was down, at most one run catches up.
    """
    newest_first = schedule.due_back(now, after=handled, limit=MAX_SCAN + 1)
    if not newest_first:
        return CatchUp()
    more = len(newest_first) > MAX_SCAN
    times = tuple(reversed(newest_first[:MAX_SCAN]))
    if deadline is None or now - times[-1] <= deadline:
        return CatchUp(run_at=times[-1], missed=times[:-1], more_missed=more)
    return CatchUp(missed=times, more_missed=more)


def describe_seconds(seconds: float) -> str:
    """``3600`` → ``1 h``, ``90`` → ``90 s``: a duration in a message."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def next_due(options: JobOptions, after: float) -> float | None:
    """When the job next falls due after ``after`` (None: it has no schedule)."""
    cron = options.cron
    return None if cron is None else cron.next_after(after)


@attrs.frozen
class JobRun:
    """One run of a job, as recorded: when it was due, when it ran, and how it ended."""

    id: int
    """Its number among the job's runs: 1, 2, 3 ..."""
    service: str
    deployment: int
    """The deployment whose release it runs (or would have run)."""
    trigger: Trigger
    status: RunStatus
    scheduled_at: float | None = None
    """The due time it was started for (Unix seconds); None for a manual run."""
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    """The signal that ended its process, if one did (a timeout's SIGTERM or SIGKILL)."""
    message: str = ""
    """What happened, in a few words: "exited with code 1", "timed out after 1 h"."""
    first_cursor: int | None = None
    """The first line of its output (or of dployr's lines about it) in the service's log."""
    last_cursor: int | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end (None while it runs or if it never started)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)
