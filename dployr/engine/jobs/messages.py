"""The instance handle's requests and replies about jobs (plain values, like the rest)."""

from __future__ import annotations

import attrs

from dployr.engine.messages import LogPage
from dployr.models import check_name
from dployr.schedule import Concurrency, JobRun
from dployr.supervision import Query


def _name(_: object, __: object, value: str) -> None:
    check_name(value)


@attrs.frozen
class JobInfo:
    """A job's schedule, its next due time and its last runs."""

    name: str
    schedule: str | None
    timezone: str
    concurrency: Concurrency
    timeout: float
    starting_deadline: float | None
    next_run: float | None
    """When it next falls due (Unix seconds); None without a schedule or while stopped."""
    active: tuple[int, ...]
    """The runs in progress."""
    runs: tuple[JobRun, ...]
    """The last runs, newest first."""


@attrs.frozen
class GetJob(Query[JobInfo]):
    """A job's schedule, next run and last runs."""

    name: str = attrs.field(validator=_name)
    limit: int = 10


@attrs.frozen
class ListRuns(Query[tuple[JobRun, ...]]):
    """A job's last runs, newest first."""

    name: str = attrs.field(validator=_name)
    limit: int = 20


@attrs.frozen
class RunJob(Query[JobRun]):
    """Start a run of the job now (as its concurrency allows); its record once started."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class ReadRunLogs(Query[LogPage]):
    """The lines of one run (its output and dployr's lines about it), after a cursor."""

    name: str = attrs.field(validator=_name)
    run: int
    after: int | None = None
    limit: int = 1000
