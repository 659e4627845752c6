"""Metrics samples: one reading of a service's process tree, or of the whole machine.

Pure values: no I/O, no trio.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from dployr.errors import SpecError
from dployr.models import check_name


class InvalidSample(SpecError):
    """A metric value that cannot be true (negative, not a number)."""


def _finite(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSample(f"{attribute.name} must be a finite number, not {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _finite(_, attribute, value)
    if value < 0:
        raise InvalidSample(f"{attribute.name} must be 0 or more, not {value!r}")


def _count(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSample(f"{attribute.name} must be a whole number, 0 or more, not {value!r}")


def _service(_: object, __: object, value: str) -> None:
    check_name(value)


def _load(_: object, __: object, value: tuple[float, float, float]) -> None:
    if not isinstance(value, tuple) or len(value) != 3:
        raise InvalidSample(f"load must be three averages (1, 5, 15 minutes), not {value!r}")
    for average in value:
        if isinstance(average, bool) or not isinstance(average, int | float):
            raise InvalidSample(f"load averages must be numbers, not {average!r}")
        if not (math.isfinite(average) and average >= 0):
            raise InvalidSample(f"load averages must be 0 or more, not {average!r}")


# -- samples ---------------------------------------------------------------------------------


@attrs.frozen
class ServiceSample:
    """One reading of a service: the sums over every process of its live releases."""

    service: str = attrs.field(validator=_service)
    ts: float = attrs.field(validator=_finite)
    """Wall-clock seconds (Unix time) of the reading."""
    cpu_percent: float = attrs.field(validator=_non_negative)
    """CPU used since the previous reading, in percent of one core (200.0: two cores busy)."""
    memory_rss_bytes: int = attrs.field(validator=_count)
    """Resident memory, summed over the processes (shared pages count in each)."""
    processes: int = attrs.field(validator=_count)
    threads: int = attrs.field(validator=_count)
    open_fds: int = attrs.field(validator=_count)


@attrs.frozen
class InstanceSample:
    """One reading of the whole machine."""

    ts: float = attrs.field(validator=_finite)
    """Wall-clock seconds (Unix time) of the reading."""
    cpu_percent: float = attrs.field(validator=_non_negative)
    """CPU used since the previous reading, in percent of the whole machine (0 to 100)."""
    memory_used_bytes: int = attrs.field(validator=_count)
    """Memory in use: the total less what is available (as ``free``'s "available")."""
    memory_total_bytes: int = attrs.field(validator=_count)
    load: tuple[float, float, float] = attrs.field(validator=_load)
    """The load averages over 1, 5 and 15 minutes."""
    cpu_count: int = attrs.field(default=1, validator=_count)
    """Logical CPUs: a service at ``cpu_count * 100`` % uses the whole machine."""


Sample = ServiceSample | InstanceSample
"""What the sampler publishes: each round, one InstanceSample then one ServiceSample per
service."""


def service_values(sample: ServiceSample) -> tuple[float, ...]:
    """The aggregated fields of a service sample, in :data:`SERVICE_FIELDS` order."""
    return (
        sample.cpu_percent,
        sample.memory_rss_bytes,
        sample.processes,
        sample.threads,
        sample.open_fds,
    )


def instance_values(sample: InstanceSample) -> tuple[float, ...]:
    """The aggregated fields of an instance sample, in :data:`INSTANCE_FIELDS` order."""
    return (
        sample.cpu_percent,
        sample.memory_used_bytes,
        sample.memory_total_bytes,
        *sample.load,
    )


SERVICE_FIELDS: Final = ("cpu", "rss", "processes", "threads", "fds")
"""The short names of :func:`service_values`, as the store's columns use them."""
INSTANCE_FIELDS: Final = ("cpu", "mem_used", "mem_total", "load1", "load5", "load15")
"""The short names of :func:`instance_values`, as the store's columns use them."""
