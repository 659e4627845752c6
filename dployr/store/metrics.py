"""The metrics history in SQL: record a round of samples, read a range, forget old data.

The rules (bucket arithmetic, retention, which resolution a range is read in) are the pure
functions of :mod:`dployr.metrics`; this module only applies them to the
tables of schema migration 2. Every function runs inside a transaction the
:class:`~dployr.store.store.Store` opened.

How nothing is counted twice: a sample is added to its minute bucket exactly when its row
is inserted in the samples table, whose key (service and time) refuses a second copy, and a
sample older than the samples table's hour is refused altogether (its row would be gone,
so a second copy could not be detected).
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Iterable
from typing import Final

from dployr.metrics import (
    INSTANCE_FIELDS,
    SERVICE_FIELDS,
    Bucket,
    InstancePoint,
    InstanceSample,
    MetricPoint,
    Resolution,
    Sample,
    ServiceSample,
    choose_resolution,
    instance_buckets,
    instance_values,
    minute_horizon,
    minute_of,
    raw_horizon,
    service_buckets,
    service_values,
)


def _upsert(table: str, keys: tuple[str, ...], fields: tuple[str, ...]) -> str:
    """Add a bucket to its row: counts and sums add up, maxima take the larger."""
    sums = [f"{field}_sum" for field in fields]
    maxima = [f"{field}_max" for field in fields]
    columns = [*keys, "samples", *(c for pair in zip(sums, maxima, strict=True) for c in pair)]
    updates = [
        "samples = samples + excluded.samples",
        *(f"{c} = {c} + excluded.{c}" for c in sums),
        *(f"{c} = max({c}, excluded.{c})" for c in maxima),
    ]
    return (
        f"INSERT INTO {table} ({', '.join(columns)})"
        f" VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"
    )


def _bucket_columns(fields: tuple[str, ...]) -> str:
    return ", ".join(f"{field}_sum, {field}_max" for field in fields)


def _bucket_row(bucket: Bucket) -> tuple[float, ...]:
    """A bucket as the values of a minute row, from ``minute`` on."""
    pairs = zip(bucket.sums, bucket.maxima, strict=True)
    return (bucket.minute, bucket.count, *itertools.chain.from_iterable(pairs))


def _bucket_of(row: sqlite3.Row) -> Bucket:
    """A minute row (``minute, samples``, then each field's sum and max) as a bucket."""
    values = tuple(row)
    return Bucket(values[0], values[1], values[2::2], values[3::2])


_SERVICE_UPSERT: Final = _upsert("service_minutes", ("service", "minute"), SERVICE_FIELDS)
_INSTANCE_UPSERT: Final = _upsert("instance_minutes", ("minute",), INSTANCE_FIELDS)
_SERVICE_INSERT: Final = (
    "INSERT INTO service_samples (service, ts, cpu, rss, processes, threads, fds)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _new_service_samples(
    db: sqlite3.Connection, samples: list[ServiceSample]
) -> list[ServiceSample]:
    """The samples to insert: of services that exist, not recorded yet, each once."""
    names = {row[0] for row in db.execute("SELECT name FROM services")}
    taken: dict[float, set[str]] = {}
    new: list[ServiceSample] = []
    for sample in samples:
        if sample.service not in names:
            continue
        recorded = taken.get(sample.ts)
        if recorded is None:
            rows = db.execute("SELECT service FROM service_samples WHERE ts = ?", (sample.ts,))
            recorded = taken[sample.ts] = {row[0] for row in rows}
        if sample.service not in recorded:
            recorded.add(sample.service)
            new.append(sample)
    return new


_INSTANCE_INSERT: Final = (
    "INSERT INTO instance_samples (ts, cpu, mem_used, mem_total, load1, load5, load15)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ts) DO NOTHING"
)


def record(db: sqlite3.Connection, samples: Iterable[Sample], now: float) -> int:
    """Insert new samples, add them to their minutes, delete what is too old; return the count.

    A sample is skipped if it is already recorded, older than an hour at ``now``, or of a
    service that does not exist (one deleted while its last round was being taken).
    """
    horizon = raw_horizon(now)
    candidates: list[ServiceSample] = []
    instances: list[InstanceSample] = []
    for sample in samples:
        if isinstance(sample, ServiceSample):
            if sample.ts >= horizon:
                candidates.append(sample)
        elif isinstance(sample, InstanceSample):
            if sample.ts < horizon:
                continue
            if db.execute(_INSTANCE_INSERT, (sample.ts, *instance_values(sample))).rowcount:
                instances.append(sample)
        else:
            raise TypeError(f"not a metrics sample: {sample!r}")
    services = _new_service_samples(db, candidates) if candidates else []
    db.executemany(_SERVICE_INSERT, [(s.service, s.ts, *service_values(s)) for s in services])
    db.executemany(
        _SERVICE_UPSERT,
        [
            (service, *_bucket_row(bucket))
            for (service, _), bucket in service_buckets(services).items()
        ],
    )
    db.executemany(
        _INSTANCE_UPSERT, [_bucket_row(bucket) for bucket in instance_buckets(instances).values()]
    )
    prune(db, now)
    return len(services) + len(instances)


def prune(db: sqlite3.Connection, now: float) -> None:
    """Delete samples older than an hour and minutes that ended more than 7 days ago."""
    horizon, minutes = raw_horizon(now), minute_horizon(now)
    db.execute("DELETE FROM service_samples WHERE ts < ?", (horizon,))
    db.execute("DELETE FROM instance_samples WHERE ts < ?", (horizon,))
    db.execute("DELETE FROM service_minutes WHERE minute < ?", (minutes,))
    db.execute("DELETE FROM instance_minutes WHERE minute < ?", (minutes,))


def check_range(since: float, until: float | None) -> None:
    """Refuse a range bound that is not a time."""
    for name, bound in (("since", since), ("until", until)):
        if name == "until" and bound is None:
            continue
        if (
            isinstance(bound, bool)
            or not isinstance(bound, int | float)
            or not math.isfinite(bound)
        ):
            raise ValueError(f"{name} must be a time in Unix seconds, not {bound!r}")


def _raw_bucket(row: sqlite3.Row) -> tuple[float, Bucket]:
    """A sample row (``ts``, then each field) as its time and a bucket of one."""
    ts, *values = tuple(row)
    return ts, Bucket(minute_of(ts), 1, tuple(values), tuple(values))


def _resolution(resolution: Resolution | None, since: float, now: float) -> Resolution:
    return choose_resolution(since, now) if resolution is None else Resolution(resolution)


def _range(column: str, since: float, until: float | None) -> tuple[str, tuple[float, ...]]:
    if until is None:
        return f"{column} >= ?", (since,)
    return f"{column} >= ? AND {column} < ?", (since, until)


def service_points(
    db: sqlite3.Connection,
    service: str,
    *,
    since: float,
    until: float | None,
    resolution: Resolution | None,
    now: float,
) -> list[MetricPoint]:
    """A service's points in ``[since, until)`` (see :meth:`Store.metrics`)."""
    if _resolution(resolution, since, now) is Resolution.RAW:
        where, bounds = _range("ts", since, until)
        rows = db.execute(
            "SELECT ts, cpu, rss, processes, threads, fds FROM service_samples"
            f" WHERE service = ? AND {where} ORDER BY ts",
            (service, *bounds),
        ).fetchall()
        raw = map(_raw_bucket, rows)
        return [MetricPoint.of_bucket(b, ts=ts, resolution=Resolution.RAW) for ts, b in raw]
    where, bounds = _range("minute", minute_of(since), until)
    rows = db.execute(
        f"SELECT minute, samples, {_bucket_columns(SERVICE_FIELDS)} FROM service_minutes"
        f" WHERE service = ? AND {where} ORDER BY minute",
        (service, *bounds),
    ).fetchall()
    return [MetricPoint.of_bucket(_bucket_of(row)) for row in rows]


def instance_points(
    db: sqlite3.Connection,
    *,
    since: float,
    until: float | None,
    resolution: Resolution | None,
    now: float,
) -> list[InstancePoint]:
    """The instance's points in ``[since, until)`` (see :meth:`Store.instance_metrics`)."""
    if _resolution(resolution, since, now) is Resolution.RAW:
        where, bounds = _range("ts", since, until)
        rows = db.execute(
            "SELECT ts, cpu, mem_used, mem_total, load1, load5, load15 FROM instance_samples"
            f" WHERE {where} ORDER BY ts",
            bounds,
        ).fetchall()
        raw = map(_raw_bucket, rows)
        return [InstancePoint.of_bucket(b, ts=ts, resolution=Resolution.RAW) for ts, b in raw]
    where, bounds = _range("minute", minute_of(since), until)
    rows = db.execute(
        f"SELECT minute, samples, {_bucket_columns(INSTANCE_FIELDS)} FROM instance_minutes"
        f" WHERE {where} ORDER BY minute",
        bounds,
    ).fetchall()
    return [InstancePoint.of_bucket(_bucket_of(row)) for row in rows]
