"""Metrics values, and the pure rules of their history: minute buckets, retention, resolution.

A **sample** is one reading of a service's process tree (:class:`ServiceSample`) or of the
whole machine (:class:`InstanceSample`), taken every few seconds. History keeps every
sample for :data:`RAW_RETENTION` (an hour) and, for :data:`MINUTE_RETENTION` (7 days),
one :class:`Bucket` per minute: the count, sums and maxima of the samples that fell in it.
Buckets are built incrementally, one round of samples at a time: merging the buckets of
each round gives the buckets of all the samples at once (:func:`merge_into`; the same
counts and maxima, the same sums up to float rounding), so a minute is complete as soon as
its last sample is recorded and is never recomputed.

A query reads one resolution (:func:`choose_resolution`): raw samples when the range
starts within the last hour, minute points otherwise, for the whole range.

Pure values and functions: no I/O, no trio.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final, TypeVar

import attrs

from dployr.errors import SpecError
from dployr.models import check_name

DEFAULT_INTERVAL: Final = 5.0
"""Seconds between two samples, unless configured otherwise."""
MINUTE: Final = 60
"""The width of a bucket, in seconds."""
RAW_RETENTION: Final = 3600.0
"""Seconds every sample is kept for."""
MINUTE_RETENTION: Final = 7 * 86400.0
"""Seconds the minute buckets are kept for."""


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


# -- minute buckets ----------------------------------------------------------------------------


def minute_of(ts: float) -> int:
    """The start of the minute ``ts`` falls in: ``minute_of(ts) <= ts < minute_of(ts) + 60``."""
    # Float floor division is exact (it is computed through fmod), unlike floor(ts / 60).
    return int(ts // MINUTE) * MINUTE


@attrs.frozen
class Bucket:
    """The samples of one minute, as a count, a sum and a maximum per field."""

    minute: int
    """The start of the minute, in wall-clock seconds; a multiple of :data:`MINUTE`."""
    count: int
    sums: tuple[float, ...]
    maxima: tuple[float, ...]

    @classmethod
    def of(cls, ts: float, values: tuple[float, ...]) -> Bucket:
        """The bucket of one sample."""
        return cls(minute_of(ts), 1, values, values)

    def merge(self, other: Bucket) -> Bucket:
        """The bucket of the samples of both (of the same minute and fields)."""
        if other.minute != self.minute or len(other.sums) != len(self.sums):
            raise ValueError(f"cannot merge the buckets of {self.minute} and {other.minute}")
        return Bucket(
            self.minute,
            self.count + other.count,
            tuple(a + b for a, b in zip(self.sums, other.sums, strict=True)),
            tuple(max(a, b) for a, b in zip(self.maxima, other.maxima, strict=True)),
        )

    def means(self) -> tuple[float, ...]:
        """The mean of each field."""
        return tuple(total / self.count for total in self.sums)


K = TypeVar("K")


def _add(total: MutableMapping[K, Bucket], key: K, bucket: Bucket) -> None:
    known = total.get(key)
    total[key] = bucket if known is None else known.merge(bucket)


def merge_into(total: MutableMapping[K, Bucket], buckets: Mapping[K, Bucket]) -> None:
    """Add one round's buckets to ``total``: what the store's minute upsert does."""
    for key, bucket in buckets.items():
        _add(total, key, bucket)


def service_buckets(samples: Iterable[ServiceSample]) -> dict[tuple[str, int], Bucket]:
    """The buckets of some service samples, by service and minute."""
    buckets: dict[tuple[str, int], Bucket] = {}
    for sample in samples:
        one = Bucket.of(sample.ts, service_values(sample))
        _add(buckets, (sample.service, one.minute), one)
    return buckets


def instance_buckets(samples: Iterable[InstanceSample]) -> dict[int, Bucket]:
    """The buckets of some instance samples, by minute."""
    buckets: dict[int, Bucket] = {}
    for sample in samples:
        one = Bucket.of(sample.ts, instance_values(sample))
        _add(buckets, one.minute, one)
    return buckets


# -- reading history ---------------------------------------------------------------------------


class Resolution(enum.Enum):
    """How finely a range of history is read."""

    RAW = "raw"
    """Every sample (kept for the last hour)."""
    MINUTE = "minute"
    """One point per minute: means and maxima (kept for 7 days)."""


def choose_resolution(since: float, now: float) -> Resolution:
    """Raw samples when the range starts within the last hour; minute points otherwise.

    One answer has one resolution: a range that starts more than an hour ago is read in
    minutes for its whole length, last hour included (the minute buckets cover it too; the
    current minute's bucket holds the samples recorded so far).
    """
    return Resolution.RAW if since >= now - RAW_RETENTION else Resolution.MINUTE


def raw_horizon(now: float) -> float:
    """The oldest sample time kept at ``now``; older samples are deleted or refused."""
    return now - RAW_RETENTION


def minute_horizon(now: float) -> int:
    """The oldest minute kept at ``now``: a minute is kept while it ends within 7 days."""
    return minute_of(now - MINUTE_RETENTION)


@attrs.frozen
class MetricPoint:
    """A point of a service's history: one sample, or the samples of one minute.

    Each field is the mean over the point's samples, and ``*_max`` the maximum; for a raw
    point both are the sample's value.
    """

    ts: float
    """The sample's time, or the start of the minute."""
    resolution: Resolution
    samples: int
    """How many samples the point stands for (1 for a raw point)."""
    cpu_percent: float
    cpu_percent_max: float
    memory_rss_bytes: int
    """The mean, rounded to a byte."""
    memory_rss_bytes_max: int
    processes: float
    processes_max: int
    threads: float
    threads_max: int
    open_fds: float
    open_fds_max: int

    @classmethod
    def of_sample(cls, sample: ServiceSample) -> MetricPoint:
        """A raw point."""
        return cls.of_bucket(
            Bucket(minute_of(sample.ts), 1, service_values(sample), service_values(sample)),
            ts=sample.ts,
            resolution=Resolution.RAW,
        )

    @classmethod
    def of_bucket(
        cls, bucket: Bucket, *, ts: float | None = None, resolution: Resolution = Resolution.MINUTE
    ) -> MetricPoint:
        """A minute point (or, with ``ts`` and ``RAW``, the point of a one-sample bucket)."""
        cpu, rss, processes, threads, fds = bucket.means()
        cpu_max, rss_max, processes_max, threads_max, fds_max = bucket.maxima
        return cls(
            ts=bucket.minute if ts is None else ts,
            resolution=resolution,
            samples=bucket.count,
            cpu_percent=cpu,
            cpu_percent_max=cpu_max,
            memory_rss_bytes=round(rss),
            memory_rss_bytes_max=int(rss_max),
            processes=processes,
            processes_max=int(processes_max),
            threads=threads,
            threads_max=int(threads_max),
            open_fds=fds,
            open_fds_max=int(fds_max),
        )


@attrs.frozen
class InstancePoint:
    """A point of the instance's history: one sample, or the samples of one minute.

    Fields are means over the point's samples, ``*_max`` the maxima.
    """

    ts: float
    """The sample's time, or the start of the minute."""
    resolution: Resolution
    samples: int
    cpu_percent: float
    cpu_percent_max: float
    memory_used_bytes: int
    """The mean, rounded to a byte."""
    memory_used_bytes_max: int
    memory_total_bytes: int
    """The largest total seen (it changes only if memory is hot-plugged)."""
    load: tuple[float, float, float]
    """The means of the 1, 5 and 15 minute load averages."""

    @classmethod
    def of_sample(cls, sample: InstanceSample) -> InstancePoint:
        """A raw point."""
        values = instance_values(sample)
        return cls.of_bucket(
            Bucket(minute_of(sample.ts), 1, values, values),
            ts=sample.ts,
            resolution=Resolution.RAW,
        )

    @classmethod
    def of_bucket(
        cls, bucket: Bucket, *, ts: float | None = None, resolution: Resolution = Resolution.MINUTE
    ) -> InstancePoint:
        """A minute point (or, with ``ts`` and ``RAW``, the point of a one-sample bucket)."""
        cpu, used, _, load1, load5, load15 = bucket.means()
        cpu_max, used_max, total_max, *_ = bucket.maxima
        return cls(
            ts=bucket.minute if ts is None else ts,
            resolution=resolution,
            samples=bucket.count,
            cpu_percent=cpu,
            cpu_percent_max=cpu_max,
            memory_used_bytes=round(used),
            memory_used_bytes_max=int(used_max),
            memory_total_bytes=int(total_max),
            load=(load1, load5, load15),
        )


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


# -- Prometheus --------------------------------------------------------------------------------

_SERVICE_SERIES: Final = (
    ("cpu_percent", "CPU used since the previous sample, in percent of one core."),
    ("memory_rss_bytes", "Resident memory of the service's processes."),
    ("processes", "Processes of the service's live releases."),
    ("threads", "Threads of the service's processes."),
    ("open_fds", "Open file descriptors of the service's processes."),
)
_INSTANCE_SERIES: Final = (
    ("cpu_percent", "CPU used since the previous sample, in percent of the whole machine."),
    ("memory_used_bytes", "Memory in use: the total less what is available."),
    ("memory_total_bytes", "Memory of the machine."),
    ("load1", "Load average over 1 minute."),
    ("load5", "Load average over 5 minutes."),
    ("load15", "Load average over 15 minutes."),
    ("cpus", "Logical CPUs of the machine."),
)


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def prometheus_text(
    instance: str, services: Iterable[ServiceSample], machine: InstanceSample | None
) -> str:
    """The latest samples in Prometheus' text exposition format (version 0.0.4).

    Gauges named ``dployr_service_<field>`` labelled by service and instance, and
    ``dployr_instance_<field>`` labelled by instance; no timestamps (the scrape's own).
    """
    where = _label(instance)
    lines: list[str] = []
    samples = sorted(services, key=lambda sample: sample.service)
    for field, help_text in _SERVICE_SERIES:
        name = f"dployr_service_{field}"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [
            f"{name}{{service={_label(s.service)},instance={where}}} {getattr(s, field)!r}"
            for s in samples
        ]
    if machine is not None:
        values = {
            "cpu_percent": machine.cpu_percent,
            "memory_used_bytes": machine.memory_used_bytes,
            "memory_total_bytes": machine.memory_total_bytes,
            "load1": machine.load[0],
            "load5": machine.load[1],
            "load15": machine.load[2],
            "cpus": machine.cpu_count,
        }
        for field, help_text in _INSTANCE_SERIES:
            name = f"dployr_instance_{field}"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines.append(f"{name}{{instance={where}}} {values[field]!r}")
    return "\n".join(lines) + "\n"
