"""The pure rules of sampling: CPU accounting between rounds, and when the next round is due.

Pure functions: no I/O, no trio.
"""

from __future__ import annotations

import math

# -- CPU accounting ----------------------------------------------------------------------------


def cpu_seconds_in_round(
    previous: float | None, current: float, *, born_in_round: bool
) -> float | None:
    """The CPU seconds a process used since the previous round, or None if unknown.

    ``previous`` is its CPU time at the previous round if it was seen then; a process first
    seen now used all of its CPU time within the round if it was born after the previous
    round, and an unknown amount otherwise (it only becomes the baseline of the next round).
    """
    if previous is not None:
        # CPU time never decreases; a smaller reading means a different process.
        return max(0.0, current - previous)
    if born_in_round:
        return current
    return None


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU seconds used over a span of wall-clock seconds, in percent of one core."""
    if wall_seconds <= 0:
        return 0.0
    return 100.0 * cpu_seconds / wall_seconds


# -- timing ------------------------------------------------------------------------------------


def next_round(previous: float, now: float, interval: float) -> float:
    """When the round after the one due at ``previous`` is due, seen at ``now``.

    Rounds keep their phase (``previous + k * interval``); rounds that a slow round made
    late are skipped rather than run back to back, so a stall never turns into a burst.
    """
    if not interval > 0:
        raise ValueError(f"the interval must be more than 0 s, not {interval!r}")
    late = max(0.0, now - previous)
    steps = math.floor(late / interval) + 1
    # The division may round across a whole number: correct it by a step either way.
    while previous + steps * interval <= now:
        steps += 1
    while steps > 1 and previous + (steps - 1) * interval > now:
        steps -= 1
    return previous + steps * interval
