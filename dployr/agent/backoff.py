"""How long an agent waits before dialling the control plane again: pure policy."""

from __future__ import annotations

import random
from typing import Final

FIRST: Final = 0.5
"""Seconds before the first retry."""
CAP: Final = 30.0
"""The longest wait between two attempts."""


def reconnect_delay(
    attempt: int, rng: random.Random, *, first: float = FIRST, cap: float = CAP
) -> float:
    """The wait before attempt ``attempt`` (0 for the first retry): exponential, capped,
    and jittered over its upper half, so that agents cut off together do not all dial
    back at the same instant ("equal jitter")."""
    ceiling = min(cap, first * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
