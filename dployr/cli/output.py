"""How commands print: plain text for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncclick as click


def print_json(data: Any) -> None:
    """Print data as indented JSON."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON or through ``human``."""
    if as_json:
        print_json(data)
    else:
        human(data)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 service``, ``2 services`` (``words`` when the plural is not ``word + "s"``)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows in aligned columns under upper-case headers."""
    cells = [[str(h).upper() for h in headers]] + [
        ["" if c is None else str(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def ago(ts: float | None, now: float | None = None) -> str:
    """ "5m ago" for a Unix time."""
    if not ts:
        return "-"
    seconds = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def clock(ts: float | None) -> str:
    """A local date and time for a Unix time."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def service_lines(info: dict[str, Any]) -> None:
    """A service's status in a few lines."""
    status = info["status"]
    health = info.get("health", "unknown")
    click.echo(f"{info['name']}: {status} ({health})")
    fields = [
        ("instance", info.get("instance")),
        ("pid", info.get("pid") or "-"),
        ("port", info.get("port") or "-"),
        ("restarts", info.get("restarts", 0)),
        ("deployment", info.get("deployment") or "-"),
        ("since", f"{clock(info.get('since'))} ({ago(info.get('since'))})"),
    ]
    if info.get("deploying"):
        fields.append(("deploying", info["deploying"]))
    if info.get("message"):
        fields.append(("last event", info["message"]))
    if info.get("description"):
        fields.append(("description", info["description"]))
    for key, value in fields:
        click.echo(f"  {key:<12}{value}")


def services_table(services: Sequence[dict[str, Any]]) -> None:
    """Services as a table."""
    if not services:
        click.echo("no services yet: deploy one with `dployr deploy`")
        return
    table(
        [
            "name",
            "status",
            "health",
            "instance",
            "port",
            "pid",
            "restarts",
            "deployment",
            "deployed",
        ],
        [
            [
                s["name"],
                s["status"],
                s["health"],
                s["instance"],
                s.get("port") or "-",
                s.get("pid") or "-",
                s.get("restarts", 0),
                s.get("deployment") or "-",
                ago(s.get("last_deploy_at")),
            ]
            for s in services
        ],
    )


def stderr(text: str) -> None:
    """A line on stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
