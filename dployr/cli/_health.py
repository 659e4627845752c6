"""The Watchdog options shared by ``deploy`` and ``settings``: ``--health-*``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import asyncclick as click

F = TypeVar("F", bound=Callable[..., Any])

# (option, field in the settings' health object, click type, help)
_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--health-kind", "kind", click.Choice(["http", "tcp", "command"]), "How to check."),
    ("--health-command", "command", str, "A command that exits 0 when healthy."),
    ("--health-interval", "interval", float, "Seconds between checks [10]."),
    ("--health-timeout", "timeout", float, "Seconds a check may take [5]."),
    ("--health-failures", "failures", int, "Failures in a row before degraded [3]."),
    ("--health-successes", "successes", int, "Successes in a row before healthy [1]."),
    (
        "--health-start-period",
        "start_period",
        float,
        "Seconds after a start when failures do not count.",
    ),
    (
        "--health-restart-after",
        "restart_after",
        int,
        "Restart after this many failures in a row.",
    ),
    ("--health-webhook", "webhook", str, "A URL that gets a JSON POST at each health change."),
)


def health_options(command: F) -> F:
    """Add the ``--health-*`` options to a command."""
    for flag, _, kind, text in reversed(_OPTIONS):
        command = click.option(flag, type=kind, help=text)(command)
    return command


def pop_health(flags: dict[str, Any]) -> dict[str, Any]:
    """Take the given ``--health-*`` values out of ``flags``, as health-object fields."""
    changes = {}
    for flag, field, _, _ in _OPTIONS:
        value = flags.pop(flag.removeprefix("--").replace("-", "_"), None)
        if value is not None:
            changes[field] = value
    return changes
