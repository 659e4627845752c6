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
LATEST = 253402300799.0
"""The last second of year 9999 (Unix time): later times are refused."""


def parse_since(text: str, now: float) -> float:
    """The Unix time ``text`` means (a duration back from ``now``, RFC 3339, or Unix time).

    A duration longer than the time since 1970 means 1970; a time before 1970 is taken as
    1970 too, and one after year 9999 is refused. Raises SpecError for anything else.
    """
    value = text.strip()
    shown = value if len(value) <= 40 else value[:40] + "…"
    if _UNIX.fullmatch(value):
        moment = float(value)
        if moment > LATEST:
            raise SpecError(f"invalid time {shown!r}: a Unix time after year 9999")
        return moment
    match = _DURATION.fullmatch(value)
    if match:
        return max(0.0, now - float(match.group(1)) * _UNITS[match.group(2)])
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SpecError(
            f"invalid time {shown!r}: use a duration such as 10m, 2h, 1d, or an RFC 3339 time "
            "such as 2026-11-26T09:30:00Z"
        ) from None
    try:
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # a time without a zone is local time
        return max(0.0, parsed.timestamp())
    except (OverflowError, OSError, ValueError):  # near year 1 or 9999 in local time
        return 0.0 if parsed.year < 1970 else LATEST
