"""Times as users write them: ``10m``, ``2h``, ``1d``, or an RFC 3339 timestamp.

The API also takes a plain Unix time (``1764149400.5``), which is what the CLI sends once
it has read the user's words, so a duration means the same on both sides of the wire.
"""

from __future__ import annotations

import datetime
import re

from dployr.errors import SpecError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNIX = re.compile(r"\d{9,}(?:\.\d+)?")


def parse_duration(text: str, what: str) -> float:
    """Seconds from a duration as users write it: ``5s``, ``500ms``, ``1m``, ``2h``, or ``5``.

    Raises SpecError naming ``what`` (an option or field) for anything else.
    """
    value = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?", value)
    if match is None:
        raise SpecError(f"{what} must be a duration such as 500ms, 5s, 1m or 2h, not {text!r}")
    number = float(match.group(1))
    unit = match.group(2) or "s"
    return number / 1000 if unit == "ms" else number * _UNITS[unit]


def parse_since(text: str, now: float) -> float:
    """The Unix time ``text`` means (a duration back from ``now``, RFC 3339, or Unix time).

    Raises SpecError for anything else.
    """
    value = text.strip()
    if _UNIX.fullmatch(value):
        return float(value)
    match = _DURATION.fullmatch(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(
            f"invalid time {text!r}: use a duration such as 10m, 2h, 1d, or an RFC 3339 time "
            "such as 2026-11-26T09:30:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # a time without a zone is local time
    return parsed.timestamp()
