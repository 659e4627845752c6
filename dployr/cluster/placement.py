"""Where a new service goes when its deploy names no instance: a pure rule.

A service keeps the instance it has. A new one goes to the control plane's own instance,
unless that one takes no services (``dployr up --no-local-services``): then to the least
loaded connected instance, by :func:`least_loaded`.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs


@attrs.frozen
class Load:
    """What the control plane knows of a connected instance's load."""

    name: str
    services: int
    """The services placed on it."""
    memory_used: float | None = None
    """The share of its machine's memory in use (0 to 1), from its last sample; None if
    it sent none yet."""
    cpu_percent: float | None = None
    """Its machine's CPU use (0 to 100), from its last sample."""

    @property
    def key(self) -> tuple[int, float, float, str]:
        """The order of preference: fewest services, then the lowest share of memory in
        use, then the lowest CPU use, then the name (an unknown reading counts as full)."""
        memory = 1.0 if self.memory_used is None else self.memory_used
        cpu = 100.0 if self.cpu_percent is None else self.cpu_percent
        return (self.services, memory, cpu, self.name)


def least_loaded(loads: Iterable[Load]) -> str | None:
    """The name of the least loaded instance (:attr:`Load.key`), or None if there is none."""
    best = min(loads, key=lambda load: load.key, default=None)
    return None if best is None else best.name


def memory_share(used: int | None, total: int | None) -> float | None:
    """``used`` of ``total`` bytes as a share (0 to 1), or None if either is unknown."""
    if used is None or not total:
        return None
    return min(1.0, max(0.0, used / total))
