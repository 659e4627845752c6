"""``dployr jobs runs NAME`` and ``dployr jobs run NAME``: a scheduled job's runs.

A job (a service deployed with ``--schedule``, or run only when asked) keeps a record of
every run: when it was due, when it ran, how it ended. ``runs`` lists them; ``run``
starts one now and prints its output as it comes, ending with the run's exit. A run's
lines are also ``dployr logs NAME --run ID``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.cli.client import Client


@click.group()
def jobs() -> None:
    """A scheduled job's runs: list them, or start one now."""


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _in_zone(t: float, zone: str) -> str:
    """A due time as the job's zone reads it: ``2026-12-07 03:00 CET``."""
    import datetime
    import zoneinfo

    return datetime.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def _duration(run: dict[str, Any]) -> str:
    start, end = run.get("started_at"), run.get("ended_at")
    if start is None:
        return "-"
    seconds = (end if end is not None else time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def next_words(job: dict[str, Any]) -> str:
    """When the job runs next, in words."""
    if job.get("schedule") is None:
        return "no schedule: it runs when asked (dployr jobs run NAME)"
    if job.get("next_run") is None:
        return f"schedule {job['schedule']} ({job['timezone']}); not scheduled now (stopped)"
    when = _in_zone(job["next_run"], job["timezone"])
    return f"schedule {job['schedule']} ({job['timezone']}); next run {when}"


async def describe_next(client: Client, name: str, deployment: int) -> str:
    """The line ``deploy`` ends with for a job."""
    job = await client.call("GET", client.service(name, "/job"))
    return f"{name} is a job (deployment {deployment}): {next_words(job)}"


@jobs.command()
@click.argument("name")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_obj
async def runs(options: Options, name: str, limit: int) -> None:
    """List a job's last runs, newest first, and when it runs next.

    Status: running, succeeded, failed, stopped (replaced, or the job was stopped),
    skipped (another run was active: concurrency forbid) or missed (due while dployr was
    down, past the starting deadline). Trigger: schedule, manual or catch-up.
    """
    from dployr.cli.output import emit, table, visible

    async with options.client() as client:
        job = await client.call("GET", client.service(name, "/job"), params={"limit": limit})

    def show(rows: list[dict[str, Any]]) -> None:
        click.echo(f"{name}: {next_words(job)}")
        if not rows:
            click.echo("no runs yet")
            return
        table(
            ["run", "status", "trigger", "due", "started", "took", "deployment", "note"],
            [
                [
                    r["id"],
                    r["status"],
                    r["trigger"],
                    _when(r.get("scheduled_at")),
                    _when(r.get("started_at")),
                    _duration(r),
                    r["deployment"],
                    visible(r.get("message") or ""),
                ]
                for r in rows
            ],
        )

    emit(job["runs"], options.json, show)


@jobs.command()
@click.argument("name")
@json_option
@click.pass_obj
async def run(options: Options, name: str) -> None:
    """Start a run of a job now and print its output until it ends.

    Exits 0 if the run succeeded, 1 otherwise. Ctrl-C stops following; the run goes on
    (see it with dployr jobs runs NAME). With --json, prints the run's record at its end.
    """
    from dployr.cli._runtime import until_signalled
    from dployr.cli.logs import _show
    from dployr.cli.output import print_json
    from dployr.errors import DployrError
    from dployr.logs.values import LogLine

    async with options.client() as client:
        record = await client.call("POST", client.service(name, "/runs"))
        number = record["id"]
        if record["status"] != "running":  # it never started
            raise DployrError(f"run {number} of {name} {record['status']}: {record['message']}")
        if not options.json:
            click.echo(f"run {number} of {name} started")
        first = record.get("first_cursor")
        end = f"run {number} "
        ended = False

        async def follow() -> None:
            nonlocal ended
            cursor = None if first is None else first - 1
            async with client.follow(name, cursor=cursor) as feed:
                async for message in feed:
                    if not isinstance(message, LogLine):
                        continue
                    line = message.line
                    about_run = message.stream == "system" and line.startswith("run ")
                    if about_run and not line.startswith(end):
                        continue  # dployr's line about another run of the job
                    if not options.json:
                        _show(message, False)
                    word = line[len(end) :].split(":", 1)[0] if about_run else ""
                    if word in ("succeeded", "failed", "stopped"):
                        ended = True
                        return

        if await until_signalled(follow):
            return  # Ctrl-C: the run goes on
        if not ended:
            raise DployrError(f"the log feed of {name} ended before run {number} did")
        recent = await client.call("GET", client.service(name, "/runs"), params={"limit": 100})
        result = next((r for r in recent if r["id"] == number), record)
        if options.json:
            print_json(result)
        if result["status"] != "succeeded":
            raise DployrError(f"run {number} of {name} {result['status']}: {result['message']}")


async def show_run_logs(options: Options, name: str, run_id: int) -> None:
    """``dployr logs NAME --run ID``: every line of one run, oldest first."""
    from dployr.cli.client import decode_all
    from dployr.cli.logs import _show
    from dployr.logs.values import LogLine

    async with options.client() as client:
        path = client.service(name, f"/runs/{run_id}/logs")
        after = 0
        while True:
            page = await client.call("GET", path, params={"after": after, "limit": 1000})
            lines = decode_all(page["lines"], LogLine)
            for line in lines:
                _show(line, options.json)
            if len(lines) < 1000:
                return
            after = lines[-1].cursor
