"""The restart policy options shared by ``deploy`` and ``settings``.

``--restart always|on-failure|never``, ``--restart-delay FIRST[,MAX]`` (``1s,30s``),
``--max-restarts N``, ``--restart-window 60s`` and ``--min-uptime 5s``: durations as
elsewhere in the CLI (``500ms``, ``5s``, ``1m``; a bare number is seconds). The options
given change those fields of the stored policy; the others stay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncclick as click

if TYPE_CHECKING:
    from dployr.models import RestartPolicy

F = TypeVar("F", bound=Callable[..., Any])


def _duration(flag: str) -> Callable[[Any, Any, str | None], float | None]:
    def convert(_: Any, __: Any, value: str | None) -> float | None:
        from dployr.timeparse import parse_duration

        return None if value is None else parse_duration(value, flag)

    return convert


def _delays(_: Any, __: Any, value: str | None) -> tuple[float, ...] | None:
    from dployr.errors import DployrError
    from dployr.timeparse import parse_duration

    if value is None:
        return None
    parts = value.split(",")
    if len(parts) > 2:
        raise DployrError(f"--restart-delay must be FIRST or FIRST,MAX (1s,30s), not {value!r}")
    return tuple(parse_duration(part, "--restart-delay") for part in parts)


def restart_options(command: F) -> F:
    """Add the restart policy options to a command."""
    options = (
        click.option(
            "--restart",
            "restart_mode",
            type=click.Choice(["always", "on-failure", "never"]),
            help="When the process is started again after it exits [always].",
        ),
        click.option(
            "--restart-delay",
            callback=_delays,
            metavar="FIRST[,MAX]",
            help="Backoff between restarts: the first is at once, then FIRST, doubling up to "
            "MAX [1s,30s].",
        ),
        click.option(
            "--max-restarts",
            type=click.IntRange(0, 10_000),
            help="More restarts than this within the window and the service is failed [5].",
        ),
        click.option(
            "--restart-window",
            callback=_duration("--restart-window"),
            help="The window that --max-restarts counts in [60s].",
        ),
        click.option(
            "--min-uptime",
            callback=_duration("--min-uptime"),
            help="Up this long, a process counts as started: running again after a restart, "
            "its backoff starts over, a deploy without a health check succeeds [5s].",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def pop_restart(flags: dict[str, Any]) -> dict[str, Any]:
    """Take the given restart options out of ``flags``, as restart-policy fields."""
    changes: dict[str, Any] = {}
    mode = flags.pop("restart_mode", None)
    if mode is not None:
        changes["mode"] = mode
    delays = flags.pop("restart_delay", None)
    if delays is not None:
        changes["delay"] = delays[0]
        if len(delays) > 1:
            changes["max_delay"] = delays[1]
    for flag, field in (
        ("max_restarts", "max_restarts"),
        ("restart_window", "window"),
        ("min_uptime", "min_uptime"),
    ):
        value = flags.pop(flag, None)
        if value is not None:
            changes[field] = value
    return changes


def describe(policy: RestartPolicy) -> str:
    """A restart policy in one line, as ``dployr settings`` shows it."""
    mode = policy.mode.value
    text = {
        "always": "always",
        "on-failure": "on failure (a clean exit stays stopped)",
        "never": "never",
    }[mode]
    if mode != "never":
        text += (
            f"; backoff {policy.delay:g} s doubling to {policy.max_delay:g} s; failed "
            f"after {policy.max_restarts} restarts in {policy.window:g} s"
        )
    return text + f"; counts as started after {policy.min_uptime:g} s up"
