"""How commands print: plain text for people, ``--json`` for scripts.

Text that a service or a user wrote (log lines, build output, descriptions, variables, error
messages) passes through :func:`visible` before it reaches the terminal, on a TTY and off
it: every control character is shown as text (``ESC`` as ``^[``, ``BEL`` as ``^G``, the C1
control CSI, U+009B, as ``\\x9b``), so that no escape sequence (OSC, CSI, DCS, APC, PM), carriage
return, backspace or bidirectional override can retitle, clear, rewrite or reorder what the
operator sees. dployr prints no colours of its own; if it ever does, they are added around
text that has already been made visible.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncclick as click

if TYPE_CHECKING:
    from dployr.protocol.messages import ServiceInfo


def _caret(code: int) -> str:
    return "^" + chr(code ^ 0x40)  # ESC -> ^[, BEL -> ^G, DEL -> ^?


_VISIBLE: dict[int, str] = {
    **{code: _caret(code) for code in range(0x20) if chr(code) != "\t"},
    0x7F: _caret(0x7F),
    **{code: f"\\x{code:02x}" for code in range(0x80, 0xA0)},
    # Bidirectional overrides and isolates reorder what follows them on screen.
    **{code: f"\\u{code:04x}" for code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029)},
    **{code: f"\\u{code:04x}" for code in range(0x202A, 0x202F)},
    **{code: f"\\u{code:04x}" for code in range(0x2066, 0x206A)},
}
"""What :func:`visible` shows in place of each character a terminal would act on."""

_JSON_UNSAFE: dict[int, str] = {
    code: f"\\u{code:04x}"
    for code in (0x7F, *range(0x80, 0xA0), *(c for c in _VISIBLE if c > 0xFF))
}
"""Characters ``json.dumps`` leaves raw (it escapes only U+0000-U+001F) that a terminal acts
on: written as JSON escapes instead, so the document means the same and stays harmless."""


def visible(text: str) -> str:
    """``text`` with every control character shown as text, safe to print on a terminal.

    Tabs are kept; a line break is shown as ``^J``, so one value stays on one line.
    """
    return text.translate(_VISIBLE)


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """``data`` (plain data, or values) as JSON that is also safe to print on a terminal
    (same meaning, same value): a value is written as the daemon sent it."""
    from dployr import serde

    data = serde.unstructure(data)
    separators = None if indent is not None else (",", ":")
    text = json.dumps(data, indent=indent, ensure_ascii=False, separators=separators)
    return text.translate(_JSON_UNSAFE)


def print_json(data: Any) -> None:
    """Print data as indented JSON."""
    click.echo(json_text(data))


T = TypeVar("T")


def emit(data: T, as_json: bool, human: Callable[[T], None]) -> None:
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
        ["" if c is None else visible(str(c)) for c in r] for r in rows
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


def status_words(info: ServiceInfo, *, short: bool = False) -> str:
    """The status, with what it is about: ``deploying (deployment 3 serves)``,
    ``restarting in 4 s``."""
    status = info.status.value
    if status == "deploying" and info.pid and info.deployment:
        serving = info.deployment if short else f"deployment {info.deployment}"
        return f"{status} ({serving} serves)"
    if status == "restarting" and info.message.startswith("restarting in "):
        return info.message
    return status


def service_lines(info: ServiceInfo) -> None:
    """A service's status in a few lines."""
    status = status_words(info)
    click.echo(visible(f"{info.name}: {status} ({info.health.value})"))
    fields: list[tuple[str, object]] = [
        ("instance", info.instance),
        ("pid", info.pid or "-"),
        ("port", info.port or "-"),
        ("restarts", info.restarts),
        ("deployment", info.deployment or "-"),
        ("since", f"{clock(info.since)} ({ago(info.since)})"),
    ]
    if info.deploying:
        fields.append(("deploying", info.deploying))
    if info.message:
        fields.append(("last event", info.message))
    if info.description:
        fields.append(("description", info.description))
    for key, value in fields:
        click.echo(f"  {key:<12}{visible(str(value))}")


def services_table(services: Sequence[ServiceInfo]) -> None:
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
                s.name,
                status_words(s, short=True),
                s.health.value,
                f"{s.instance} (away)" if s.stale else s.instance,
                s.port or "-",
                s.pid or "-",
                s.restarts,
                s.deployment or "-",
                ago(s.last_deploy_at),
            ]
            for s in services
        ],
    )


def stderr(text: str) -> None:
    """A line on stderr, its control characters made visible."""
    sys.stderr.write(visible(text) + "\n")
    sys.stderr.flush()
