"""The pure rules of metrics: minute buckets, incremental aggregation, timing, values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dployr import serde
from dployr.metrics import (
    MINUTE,
    MINUTE_RETENTION,
    RAW_RETENTION,
    Bucket,
    InstancePoint,
    InstanceSample,
    InvalidSample,
    MetricPoint,
    Resolution,
    ServiceSample,
    choose_resolution,
    cpu_percent,
    cpu_seconds_in_round,
    instance_buckets,
    merge_into,
    minute_horizon,
    minute_of,
    next_round,
    service_buckets,
    service_values,
)
from dployr.models import InvalidName
from tests.metrics.strategies import T0, instance_samples, service_samples


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


# -- minutes -------------------------------------------------------------------------------


@given(st.floats(-1e12, 1e12, allow_nan=False))
def test_a_time_falls_in_its_minute(ts: float) -> None:
    minute = minute_of(ts)
    assert minute % MINUTE == 0
    assert minute <= ts < minute + MINUTE


@pytest.mark.parametrize(
    ("ts", "minute"),
    [(T0, T0), (T0 + 59.999, T0), (T0 + 60, T0 + 60), (T0 - 0.001, T0 - 60), (0.0, 0)],
)
def test_minute_boundaries(ts: float, minute: float) -> None:
    assert minute_of(ts) == minute


# -- buckets ---------------------------------------------------------------------------------


@given(st.lists(service_samples, max_size=60))
def test_buckets_count_sum_and_max_their_minutes_samples(samples: list[ServiceSample]) -> None:
    buckets = service_buckets(samples)
    assert sum(b.count for b in buckets.values()) == len(samples)
    for (service, minute), bucket in buckets.items():
        assert bucket.minute == minute
        mine = [s for s in samples if s.service == service and minute_of(s.ts) == minute]
        assert bucket.count == len(mine) > 0
        columns = list(zip(*(service_values(s) for s in mine), strict=True))
        for total, maximum, mean, column in zip(
            bucket.sums, bucket.maxima, bucket.means(), columns, strict=True
        ):
            assert close(total, math.fsum(column))
            assert maximum == max(column)
            assert min(column) - 1e-6 <= mean <= max(column) + 1e-6


@given(st.lists(service_samples, max_size=60), st.data())
def test_aggregating_round_by_round_counts_each_sample_once(
    samples: list[ServiceSample], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(samples)), max_size=10)))
    rounds = [samples[a:b] for a, b in zip([0, *cuts], [*cuts, len(samples)], strict=True)]
    total: dict[tuple[str, int], Bucket] = {}
    for one_round in rounds:
        merge_into(total, service_buckets(one_round))
    expected = service_buckets(samples)
    assert total.keys() == expected.keys()
    for key, bucket in total.items():
        want = expected[key]
        assert (bucket.minute, bucket.count, bucket.maxima) == (
            want.minute,
            want.count,
            want.maxima,
        )
        assert all(close(a, b) for a, b in zip(bucket.sums, want.sums, strict=True))


@given(st.lists(instance_samples, max_size=40))
def test_instance_buckets(samples: list[InstanceSample]) -> None:
    buckets = instance_buckets(samples)
    assert sum(b.count for b in buckets.values()) == len(samples)
    for minute, bucket in buckets.items():
        mine = [s for s in samples if minute_of(s.ts) == minute]
        point = InstancePoint.of_bucket(bucket)
        assert point.samples == len(mine)
        assert point.cpu_percent_max == max(s.cpu_percent for s in mine)
        assert point.memory_used_bytes_max == max(s.memory_used_bytes for s in mine)
        assert point.memory_total_bytes == max(s.memory_total_bytes for s in mine)
        assert close(point.load[0], math.fsum(s.load[0] for s in mine) / len(mine))


def test_merging_buckets_of_different_minutes_is_refused() -> None:
    one = Bucket.of(T0, (1.0,))
    with pytest.raises(ValueError, match="cannot merge"):
        one.merge(Bucket.of(T0 + MINUTE, (1.0,)))


def test_a_minute_point_has_means_and_maxima() -> None:
    samples = [
        ServiceSample("web", T0 + 5, 10.0, 100, 1, 2, 10),
        ServiceSample("web", T0 + 10, 30.0, 301, 3, 4, 12),
    ]
    (bucket,) = service_buckets(samples).values()
    assert MetricPoint.of_bucket(bucket) == MetricPoint(
        ts=T0,
        resolution=Resolution.MINUTE,
        samples=2,
        cpu_percent=20.0,
        cpu_percent_max=30.0,
        memory_rss_bytes=200,  # 200.5, rounded to even
        memory_rss_bytes_max=301,
        processes=2.0,
        processes_max=3,
        threads=3.0,
        threads_max=4,
        open_fds=11.0,
        open_fds_max=12,
    )


def test_a_raw_point_is_its_sample() -> None:
    sample = ServiceSample("web", T0 + 5.5, 12.5, 1000, 2, 3, 4)
    point = MetricPoint.of_sample(sample)
    assert (point.ts, point.resolution, point.samples) == (T0 + 5.5, Resolution.RAW, 1)
    assert (point.cpu_percent, point.cpu_percent_max) == (12.5, 12.5)
    assert (point.memory_rss_bytes, point.processes_max, point.open_fds) == (1000, 2, 4.0)


# -- retention and resolution ----------------------------------------------------------------


def test_resolution_is_raw_within_the_last_hour_only() -> None:
    now = T0 + 10_000
    assert choose_resolution(now - 10, now) is Resolution.RAW
    assert choose_resolution(now - RAW_RETENTION, now) is Resolution.RAW
    assert choose_resolution(now - RAW_RETENTION - 0.001, now) is Resolution.MINUTE


@given(st.floats(T0, T0 + 1e7, allow_nan=False))
def test_the_minute_horizon_keeps_every_minute_that_ends_within_seven_days(now: float) -> None:
    horizon = minute_horizon(now)
    assert horizon % MINUTE == 0
    assert horizon <= now - MINUTE_RETENTION < horizon + MINUTE


# -- timing and CPU ----------------------------------------------------------------------------


@given(
    st.floats(0, 1e6, allow_nan=False),
    st.floats(0, 1e4, allow_nan=False),
    st.floats(0.01, 600, allow_nan=False),
)
def test_the_next_round_keeps_the_phase_and_skips_late_rounds(
    previous: float, late: float, interval: float
) -> None:
    now = previous + late
    due = next_round(previous, now, interval)
    assert due > now
    assert due <= now + interval * (1 + 1e-9)
    steps = (due - previous) / interval
    assert math.isclose(steps, round(steps), abs_tol=1e-6)


def test_the_next_round_on_time() -> None:
    assert next_round(10.0, 10.0, 5.0) == 15.0
    assert next_round(10.0, 14.9, 5.0) == 15.0
    assert next_round(10.0, 16.0, 5.0) == 20.0  # the round due at 15 is skipped
    with pytest.raises(ValueError, match="interval"):
        next_round(0.0, 0.0, 0.0)


def test_cpu_seconds_of_a_round() -> None:
    assert cpu_seconds_in_round(1.5, 2.0, born_in_round=False) == 0.5
    assert cpu_seconds_in_round(None, 0.3, born_in_round=True) == 0.3
    assert cpu_seconds_in_round(None, 7.0, born_in_round=False) is None  # a baseline
    assert cpu_seconds_in_round(3.0, 2.0, born_in_round=False) == 0.0
    assert cpu_percent(0.5, 5.0) == 10.0
    assert cpu_percent(2.0, 1.0) == 200.0  # two cores
    assert cpu_percent(1.0, 0.0) == 0.0


# -- values ----------------------------------------------------------------------------------


@given(service_samples)
def test_service_samples_round_trip_through_serde(sample: ServiceSample) -> None:
    assert serde.loads(serde.dumps(sample), ServiceSample) == sample
    point = MetricPoint.of_sample(sample)
    assert serde.loads(serde.dumps(point), MetricPoint) == point


@given(instance_samples)
def test_instance_samples_round_trip_through_serde(sample: InstanceSample) -> None:
    assert serde.loads(serde.dumps(sample), InstanceSample) == sample
    point = InstancePoint.of_sample(sample)
    assert serde.loads(serde.dumps(point), InstancePoint) == point


def test_a_sample_as_json() -> None:
    sample = ServiceSample("web", 1.5, 12.5, 1024, 2, 3, 9)
    assert serde.unstructure(sample) == {
        "service": "web",
        "ts": 1.5,
        "cpu_percent": 12.5,
        "memory_rss_bytes": 1024,
        "processes": 2,
        "threads": 3,
        "open_fds": 9,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"cpu_percent": -1.0},
        {"cpu_percent": math.nan},
        {"ts": math.inf},
        {"memory_rss_bytes": -1},
        {"processes": 1.5},
        {"threads": True},
    ],
)
def test_impossible_service_samples_are_refused(change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "service": "web",
        "ts": T0,
        "cpu_percent": 1.0,
        "memory_rss_bytes": 1,
        "processes": 1,
        "threads": 1,
        "open_fds": 1,
    }
    with pytest.raises(InvalidSample):
        ServiceSample(**{**fields, **change})  # type: ignore[arg-type]


def test_a_sample_needs_a_valid_service_name() -> None:
    with pytest.raises(InvalidName):
        ServiceSample("Not A Name", T0, 0.0, 0, 0, 0, 0)


@pytest.mark.parametrize("load", [(1.0, 2.0), (1.0, -2.0, 3.0), (1.0, math.nan, 1.0)])
def test_impossible_load_is_refused(load: tuple[float, ...]) -> None:
    with pytest.raises(InvalidSample, match="load"):
        InstanceSample(T0, 1.0, 1, 2, load)  # type: ignore[arg-type]
