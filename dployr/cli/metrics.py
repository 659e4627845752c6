"""``dployr metrics NAME [--since 1h]``: a service's CPU and memory over time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.protocol.messages import MetricsPage


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def _show(page: MetricsPage) -> None:
    from dployr.cli.output import clock, plural, table

    points = page.points
    if not points:
        click.echo(f"no metrics for {page.name} in that range (is it running?)")
        return
    minute = page.resolution == "minute"
    rows = []
    for point in points:
        cpu = f"{point.cpu_percent:.1f} %"
        memory = _size(point.memory_rss_bytes)
        if minute:
            cpu += f" (max {point.cpu_percent_max:.1f})"
            memory += f" (max {_size(point.memory_rss_bytes_max)})"
        rows.append([clock(point.ts), cpu, memory, f"{point.processes:g}"])
    table(["time", "cpu", "memory", "processes"], rows)
    last = points[-1]
    kind = "one-minute point" if minute else "point"
    click.echo(
        f"{plural(len(points), kind)}; now {last.cpu_percent:.1f} % "
        f"CPU, {_size(last.memory_rss_bytes)} RSS"
    )


@click.command()
@click.argument("name")
@click.option(
    "--since", default="1h", show_default=True, help="15m, 1h, 24h, 7d or an RFC 3339 time."
)
@json_option
@click.pass_obj
async def metrics(options: Options, name: str, since: str) -> None:
    """Show a service's CPU and memory over time (the whole process tree of its release).

    The last hour comes at full resolution (a sample every 5 s); longer ranges as
    one-minute means and maxima, kept for 7 days.
    """
    from dployr.cli.output import emit

    async with options.client() as client:
        page = await client.metrics(name, since)
    emit(page, options.json, _show)
