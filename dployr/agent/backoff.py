"""How long an agent waits before dialling the control plane again: pure policy."""

from __future__ import annotations

import random
from typing import Final

FIRST: Final = 0.5
"""Seconds before the first retry (the upper bound: it is jittered over its upper half)."""
QUICK: Final = 12
"""Retries at FIRST before the waits start doubling: about 4.5 s of dialling every
0.25-0.5 s, so an agent whose control plane restarts (or whose channel broke) is back
within half a second of the control plane's start. A refused dial costs the control
plane nothing; it is after these that a control plane away for long is spared."""
CAP: Final = 30.0
"""The longest wait between two attempts."""


def reconnect_delay(
    attempt: int, rng: random.Random, *, first: float = FIRST, cap: float = CAP, quick: int = QUICK
) -> float:
    """The wait before attempt ``attempt`` (0 for the first retry): ``first`` for the
    first ``quick`` attempts, then exponential, capped, and jittered over its upper half,
    so that agents cut off together do not all dial back at the same instant ("equal
    jitter")."""
    ceiling = min(cap, first * 2.0 ** min(max(attempt - quick + 1, 0), 32))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
