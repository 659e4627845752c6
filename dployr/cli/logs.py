"""``dployr logs NAME [-f] [-n N] [--since T] [--build]``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option
from dployr.cli.output import json_text, visible

if TYPE_CHECKING:
    from dployr.cli.client import Client
    from dployr.logs.values import LogLine


def _show(line: LogLine, as_json: bool, release: bool = False) -> None:
    if as_json:  # JSON Lines: one object a line, so a follow can be piped as it comes
        click.echo(json_text(line, indent=None))
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
    marker = {"stdout": " ", "stderr": "!", "build": "B", "system": "#"}.get(line.stream, "?")
    text = visible(line.line)  # a service's output is shown, never obeyed by the terminal
    if release:  # which deployment's process wrote it
        deployment = line.deployment
        tag = f"#{deployment}" if deployment is not None else "-"
        click.echo(f"{stamp} {tag:>4} {marker} {text}")
    else:
        click.echo(f"{stamp} {marker} {text}")


async def _why_no_build_output(client: Client, name: str) -> str:
    """Say why ``--build`` found nothing: no deploy yet, no build command, or no output."""
    latest = await client.deployments(name, limit=1)
    if not latest:
        return f"no build output: {name} has not been deployed yet"
    number = latest[0].id
    if not latest[0].settings.build_cmd:
        return f"no build output: deployment {number} has no build command"
    return f"no build output in the history (the build of deployment {number} printed nothing)"


@click.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "--tail", "-n", type=click.IntRange(0, 10_000), help="The last N lines [default: 100]."
)
@click.option("--since", help="Lines from a time on: 10m, 2h, 1d, or an RFC 3339 time.")
@click.option("--build", is_flag=True, help="Build output only.")
@click.option(
    "--release", "-r", is_flag=True, help="Show the deployment each line belongs to (#3)."
)
@click.option("--run", "run_id", type=click.IntRange(1), help="One run of a job: its lines only.")
@json_option
@click.pass_obj
async def logs(
    options: Options,
    name: str,
    follow: bool,
    tail: int | None,
    since: str | None,
    build: bool,
    release: bool,
    run_id: int | None,
) -> None:
    """Print a service's logs: its output, build output and dployr's own events.

    Markers: ' ' stdout, '!' stderr, 'B' build, '#' dployr. With --release, each line
    shows the deployment whose process (or deploy) wrote it, as #3. With --json, one JSON
    object a line (it always carries "deployment"). With --run ID, the lines of one run of a
    job (its output and dployr's lines about it).
    """
    from dployr.cli._runtime import until_signalled
    from dployr.cli.output import plural
    from dployr.errors import DployrError
    from dployr.protocol import Gap
    from dployr.timeparse import parse_since

    if run_id is not None:  # a job's run: dployr/cli/jobs.py
        from dployr.cli.jobs import show_run_logs

        if follow or build or since is not None or tail is not None:
            raise click.UsageError("--run shows one run's lines: it takes no other option")
        await show_run_logs(options, name, run_id)
        return
    start = None if since is None else parse_since(since, time.time())
    async with options.client() as client:
        if start is not None:
            page = await client.logs(name, since=start, limit=10_000, build=build)
        else:
            page = await client.logs(name, tail=100 if tail is None else tail, build=build)
        lines: Sequence[LogLine] = page.lines
        if since is not None and tail is not None:
            lines = lines[-tail:] if tail else []
        for line in lines:
            _show(line, options.json, release)
        if build and not lines and not options.json:
            click.echo(await _why_no_build_output(client, name))
        if not follow:
            return
        cursor = page.last_cursor if not lines else lines[-1].cursor
        cursor = max(cursor, page.last_cursor)

        async def stream() -> None:
            async with client.follow(name, cursor=cursor) as feed:
                async for message in feed:
                    if isinstance(message, Gap):
                        click.echo(
                            f"... {plural(message.last - message.first + 1, 'line')} skipped "
                            f"(cursors {message.first}-{message.last}): read them with --since",
                            err=True,
                        )
                    elif not build or message.stream == "build":
                        _show(message, options.json, release)

        if not await until_signalled(stream):  # the feed ended without a Ctrl-C
            raise DployrError(f"the log feed of {name} ended: the daemon closed it (stopped?)")
