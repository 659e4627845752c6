"""Hypothesis strategies for metrics samples."""

from __future__ import annotations

from hypothesis import strategies as st

from dployr.metrics import InstanceSample, ServiceSample

T0 = 1_699_999_980.0
"""A realistic Unix time, on a minute boundary (November 2023)."""

times = st.floats(T0 - 300, T0 + 900, allow_nan=False, allow_infinity=False)
"""Sample times over a quarter of an hour or so: a dozen minutes and their boundaries."""
boundary_times = st.integers(-5, 15).map(lambda k: T0 + 60 * k)

service_samples = st.builds(
    ServiceSample,
    service=st.sampled_from(["web", "api", "worker"]),
    ts=times | boundary_times,
    cpu_percent=st.floats(0, 1600, allow_nan=False, allow_infinity=False),
    memory_rss_bytes=st.integers(0, 2**40),
    processes=st.integers(0, 10_000),
    threads=st.integers(0, 100_000),
    open_fds=st.integers(0, 1_000_000),
)

instance_samples = st.builds(
    InstanceSample,
    ts=times | boundary_times,
    cpu_percent=st.floats(0, 100, allow_nan=False),
    memory_used_bytes=st.integers(0, 2**40),
    memory_total_bytes=st.integers(2**30, 2**41),
    load=st.tuples(*[st.floats(0, 512, allow_nan=False)] * 3),
    cpu_count=st.integers(1, 256),
)


def unique_times(samples: list[ServiceSample]) -> list[ServiceSample]:
    """Keep the first sample of each (service, time): the store's key."""
    seen: set[tuple[str, float]] = set()
    kept = []
    for sample in samples:
        key = (sample.service, sample.ts)
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept
