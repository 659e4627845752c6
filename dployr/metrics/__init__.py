"""Metrics values, and the pure rules of their history: minute buckets, retention, resolution.

A **sample** is one reading of a service's process tree (:class:`ServiceSample`) or of the
whole machine (:class:`InstanceSample`), taken every few seconds (:mod:`.samples`). History
keeps every sample for an hour and one bucket per minute for 7 days (:mod:`.history`). CPU
accounting between rounds and the timing of rounds are in :mod:`.sampling`.

Pure values and functions, used by the engine's sampler, the store and the gateway alike:
no I/O, no trio, no psutil, no sqlite3 (an import contract in pyproject.toml holds this).
"""

from __future__ import annotations

from dployr.metrics.history import (
    MINUTE,
    MINUTE_RETENTION,
    RAW_RETENTION,
    Bucket,
    InstancePoint,
    MetricPoint,
    Resolution,
    choose_resolution,
    instance_buckets,
    merge_into,
    minute_horizon,
    minute_of,
    raw_horizon,
    service_buckets,
)
from dployr.metrics.samples import (
    INSTANCE_FIELDS,
    SERVICE_FIELDS,
    InstanceSample,
    InvalidSample,
    Sample,
    ServiceSample,
    instance_values,
    service_values,
)
from dployr.metrics.sampling import (
    cpu_percent,
    cpu_seconds_in_round,
    next_round,
)

__all__ = [
    "INSTANCE_FIELDS",
    "MINUTE",
    "MINUTE_RETENTION",
    "RAW_RETENTION",
    "SERVICE_FIELDS",
    "Bucket",
    "InstancePoint",
    "InstanceSample",
    "InvalidSample",
    "MetricPoint",
    "Resolution",
    "Sample",
    "ServiceSample",
    "choose_resolution",
    "cpu_percent",
    "cpu_seconds_in_round",
    "instance_buckets",
    "instance_values",
    "merge_into",
    "minute_horizon",
    "minute_of",
    "next_round",
    "raw_horizon",
    "service_buckets",
    "service_values",
]
