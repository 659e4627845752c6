"""The pure rules of metrics history: minute buckets, retention, resolution, points.

History keeps every sample for :data:`RAW_RETENTION` (an hour) and, for
:data:`MINUTE_RETENTION` (7 days), one :class:`Bucket` per minute: the count, sums and
maxima of the samples that fell in it. Buckets are built incrementally, one round of samples
at a time: merging the buckets of each round gives the buckets of all the samples at once
(:func:`merge_into`; the same counts and maxima, the same sums up to float rounding), so a
minute is complete as soon as its last sample is recorded and is never recomputed.

A query reads one resolution (:func:`choose_resolution`): raw samples when the range
starts within the last hour, minute points otherwise, for the whole range.

Pure values and functions: no I/O, no trio.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Final, TypeVar

import attrs

from dployr.metrics.samples import (
    InstanceSample,
    ServiceSample,
    instance_values,
    service_values,
)

MINUTE: Final = 60
"""The width of a bucket, in seconds."""
RAW_RETENTION: Final = 3600.0
"""Seconds every sample is kept for."""
MINUTE_RETENTION: Final = 7 * 86400.0
"""Seconds the minute buckets are kept for."""


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
