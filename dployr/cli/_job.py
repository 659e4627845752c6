"""The options of a scheduled job, for ``deploy``: ``--schedule``, ``--timezone``,
``--concurrency``, ``--timeout`` and ``--starting-deadline``.

Durations are written as elsewhere in the CLI (``90s``, ``10m``, ``1h``; a bare number is
seconds). The options given change those fields of the job's stored options; the others
stay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import asyncclick as click

F = TypeVar("F", bound=Callable[..., Any])


def _duration(flag: str) -> Callable[[Any, Any, str | None], float | None]:
    def convert(_: Any, __: Any, value: str | None) -> float | None:
        from dployr.timeparse import parse_duration

        return None if value is None else parse_duration(value, flag)

    return convert


def job_options(command: F) -> F:
    """Add a job's options to a command."""
    options = (
        click.option(
            "--schedule",
            metavar="CRON",
            help="When a job runs: 5 cron fields ('0 3 * * *') or @hourly, @daily, @weekly, "
            "@monthly, @yearly [none: only when asked, with dployr jobs run].",
        ),
        click.option("--timezone", metavar="ZONE", help="The zone the schedule is read in [UTC]."),
        click.option(
            "--concurrency",
            type=click.Choice(["forbid", "replace", "allow"]),
            help="A run due while another is active: skipped, replaces it, or runs beside "
            "it [forbid].",
        ),
        click.option(
            "--timeout",
            callback=_duration("--timeout"),
            help="How long a run may take; then SIGTERM, the stop grace, SIGKILL [1h].",
        ),
        click.option(
            "--starting-deadline",
            callback=_duration("--starting-deadline"),
            help="How late a run missed while dployr was down may still start, once; later "
            "it is recorded as missed [no limit].",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def describe_job(job: dict[str, Any]) -> str:
    """A job's options in one line, as ``dployr settings`` shows them."""
    schedule = job.get("schedule")
    when = f"{schedule} ({job['timezone']})" if schedule else "no schedule (runs when asked)"
    deadline = job.get("starting_deadline")
    late = "any time late" if deadline is None else f"at most {deadline:g} s late"
    return (
        f"{when}; concurrency {job['concurrency']}; timeout {job['timeout']:g} s; "
        f"a missed run catches up {late}"
    )


def pop_job(flags: dict[str, Any]) -> dict[str, Any]:
    """Take the given job options out of ``flags``, as job fields."""
    changes: dict[str, Any] = {}
    for field in ("schedule", "timezone", "concurrency", "timeout", "starting_deadline"):
        value = flags.pop(field, None)
        if value is not None:
            changes[field] = value
    return changes
