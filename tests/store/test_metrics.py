"""Metrics history: samples for an hour, minute buckets for 7 days, by service and instance."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dployr.metrics import (
    MINUTE_RETENTION,
    RAW_RETENTION,
    InstancePoint,
    InstanceSample,
    MetricPoint,
    Resolution,
    ServiceSample,
    minute_of,
    service_buckets,
)
from dployr.store import Cipher, Store, UnknownService
from dployr.store.schema import MIGRATIONS, migrate
from tests.metrics.strategies import T0, service_samples, unique_times
from tests.store.conftest import Clock, make_settings

METRIC_TABLES = ("service_samples", "service_minutes")


def sample(
    service: str, ts: float, cpu: float = 10.0, rss: int = 1000, n: int = 1
) -> ServiceSample:
    return ServiceSample(service, ts, cpu, rss, n, 2 * n, 3 * n)


def machine(ts: float, cpu: float = 50.0, used: int = 4 * 2**30) -> InstanceSample:
    return InstanceSample(ts, cpu, used, 16 * 2**30, (1.0, 0.5, 0.25), cpu_count=4)


@pytest.fixture
def web(store: Store) -> str:
    store.create_service("web", make_settings())
    store.create_service("api", make_settings())
    return "web"


def test_a_round_round_trips_as_raw_points(store: Store, clock: Clock, web: str) -> None:
    now = clock.now
    round_ = [machine(now), sample("web", now, 12.5, 2048, 2), sample("api", now, 1.0)]
    assert store.record_samples(round_) == 3
    assert store.metrics("web", since=now - 60) == [MetricPoint.of_sample(round_[1])]
    assert store.metrics("api", since=now - 60) == [MetricPoint.of_sample(round_[2])]
    (point,) = store.instance_metrics(since=now - 60)
    assert point == InstancePoint.of_sample(round_[0])
    assert point.resolution is Resolution.RAW
    assert point.load == (1.0, 0.5, 0.25)


def test_recording_a_sample_twice_counts_it_once(store: Store, clock: Clock, web: str) -> None:
    round_ = [machine(clock.now), sample("web", clock.now, cpu=40.0)]
    assert store.record_samples(round_) == 2
    assert store.record_samples(round_) == 0
    (minute,) = store.metrics("web", since=clock.now - 7200)
    assert (minute.samples, minute.cpu_percent) == (1, 40.0)
    (instance,) = store.instance_metrics(since=clock.now - 7200)
    assert instance.samples == 1


def test_a_sample_twice_in_one_round_counts_once(store: Store, clock: Clock, web: str) -> None:
    first, again = sample("web", clock.now, cpu=40.0), sample("web", clock.now, cpu=90.0)
    assert store.record_samples([first, again]) == 1
    (point,) = store.metrics("web", since=clock.now - 1)
    assert point.cpu_percent == 40.0
    (minute,) = store.metrics("web", since=clock.now - 7200)
    assert (minute.samples, minute.cpu_percent) == (1, 40.0)


def test_samples_of_unknown_services_are_skipped(store: Store, clock: Clock, web: str) -> None:
    assert store.record_samples([sample("gone", clock.now), sample("web", clock.now)]) == 1
    with pytest.raises(UnknownService, match="gone"):
        store.metrics("gone", since=0)


def test_a_range_includes_since_and_excludes_until(store: Store, clock: Clock, web: str) -> None:
    times = [clock.now - 30 + 5 * i for i in range(6)]
    store.record_samples([sample("web", ts) for ts in times])
    points = store.metrics("web", since=times[1], until=times[4])
    assert [p.ts for p in points] == times[1:4]
    assert [p.ts for p in store.metrics("web", since=times[2])] == times[2:]
    assert store.metrics("web", since=times[4], until=times[1]) == []


def test_minutes_hold_means_and_maxima(store: Store, clock: Clock, web: str) -> None:
    start = minute_of(clock.now) - 120  # two whole minutes ago
    rounds = [(start + 5 * i, float(i), 1000 + i) for i in range(24)]  # 12 per minute
    for ts, cpu, rss in rounds:
        store.record_samples([sample("web", ts, cpu, rss), machine(ts, cpu=cpu)])
    first, second = store.metrics("web", since=start, resolution=Resolution.MINUTE)
    assert (first.ts, first.resolution, first.samples) == (start, Resolution.MINUTE, 12)
    assert (first.cpu_percent, first.cpu_percent_max) == (5.5, 11.0)
    assert (first.memory_rss_bytes, first.memory_rss_bytes_max) == (1006, 1011)  # 1005.5
    assert (second.ts, second.samples, second.cpu_percent_max) == (start + 60, 12, 23.0)
    assert (first.processes, first.processes_max, first.threads_max, first.open_fds) == (
        1.0,
        1,
        2,
        3.0,
    )
    minutes = store.instance_metrics(since=start, resolution=Resolution.MINUTE)
    assert [(m.ts, m.samples, m.cpu_percent) for m in minutes] == [
        (start, 12, 5.5),
        (start + 60, 12, 17.5),
    ]
    assert minutes[0].memory_total_bytes == 16 * 2**30


def test_a_range_older_than_an_hour_is_read_in_minutes_throughout(
    store: Store, clock: Clock, web: str
) -> None:
    # One sample recorded two hours ago (now kept in its minute only), two in this minute.
    old = clock.now
    store.record_samples([sample("web", old, cpu=10.0)])
    clock.advance(2 * 3600)
    current = minute_of(clock.now)
    recent = [current + 1, current + 2]
    clock.now = current + 3
    store.record_samples([sample("web", ts, cpu=30.0) for ts in recent])
    points = store.metrics("web", since=old - 1)
    assert [(p.ts, p.resolution, p.samples) for p in points] == [
        (minute_of(old), Resolution.MINUTE, 1),
        (current, Resolution.MINUTE, 2),  # the current minute: what is recorded so far
    ]
    # Raw, from within the hour: every sample; forced raw from earlier: the last hour's.
    assert [p.ts for p in store.metrics("web", since=current)] == recent
    forced = store.metrics("web", since=old - 1, resolution=Resolution.RAW)
    assert [p.ts for p in forced] == recent


def test_a_minute_range_includes_the_minute_of_since(store: Store, clock: Clock, web: str) -> None:
    clock.now = minute_of(clock.now) + 30
    store.record_samples([sample("web", clock.now - 20)])  # in this minute, before `since`
    points = store.metrics("web", since=clock.now - 5, resolution=Resolution.MINUTE)
    assert [p.ts for p in points] == [minute_of(clock.now)]
    assert store.metrics("web", since=0, until=minute_of(clock.now)) == []


def test_samples_are_kept_an_hour_and_minutes_seven_days(
    store: Store, clock: Clock, web: str, db_path: Path
) -> None:
    first = clock.now
    store.record_samples([sample("web", first), machine(first)])
    clock.advance(RAW_RETENTION + 1)
    store.record_samples([sample("web", clock.now), machine(clock.now)])
    raw = store.metrics("web", since=0, resolution=Resolution.RAW)
    assert [p.ts for p in raw] == [clock.now]  # the first sample is gone …
    minutes = store.metrics("web", since=0)
    assert [p.ts for p in minutes] == [minute_of(first), minute_of(clock.now)]  # … not its minute
    assert len(store.instance_metrics(since=0, resolution=Resolution.RAW)) == 1
    assert len(store.instance_metrics(since=0)) == 2

    # The first minute goes once it ended 7 days ago, and not before.
    second = minute_of(first + RAW_RETENTION + 1)
    clock.now = minute_of(first) + 60 + MINUTE_RETENTION - 0.001
    store.record_samples([])
    assert [p.ts for p in store.metrics("web", since=0)] == [minute_of(first), second]
    clock.advance(0.001)
    store.record_samples([])
    assert [p.ts for p in store.metrics("web", since=0)] == [second]
    assert [p.ts for p in store.instance_metrics(since=0)] == [second]
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM service_samples").fetchone() == (0,)


def test_a_sample_older_than_an_hour_is_refused(store: Store, clock: Clock, web: str) -> None:
    late = clock.now - RAW_RETENTION - 1
    assert store.record_samples([sample("web", late), machine(late)]) == 0
    assert store.metrics("web", since=0) == []
    assert store.instance_metrics(since=0) == []


def test_deleting_a_service_deletes_its_metrics(
    store: Store, clock: Clock, web: str, db_path: Path
) -> None:
    store.record_samples([sample("web", clock.now), sample("api", clock.now)])
    store.delete_service("web")
    with pytest.raises(UnknownService):
        store.metrics("web", since=0)
    with sqlite3.connect(db_path) as db:
        for table in METRIC_TABLES:
            rows = db.execute(f"SELECT service FROM {table}").fetchall()
            assert rows == [("api",)], table
    store.create_service("web", make_settings())
    assert store.metrics("web", since=0) == []


def test_bad_ranges_are_refused(store: Store, web: str) -> None:
    with pytest.raises(ValueError, match="since"):
        store.metrics("web", since=float("nan"))
    with pytest.raises(ValueError, match="since"):
        store.metrics("web", since=float("-inf"))
    with pytest.raises(ValueError, match="until"):
        store.instance_metrics(since=0, until="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a metrics sample"):
        store.record_samples(["cpu 5%"])  # type: ignore[list-item]


def test_a_version_1_database_gains_the_metrics_tables(
    db_path: Path, cipher: Cipher, clock: Clock
) -> None:
    connection = sqlite3.connect(db_path, isolation_level=None)
    migrate(connection, db_path, MIGRATIONS[:1])
    connection.close()
    with Store.open(db_path, cipher=cipher, clock=clock) as store:
        store.create_service("web", make_settings())
        assert store.record_samples([sample("web", clock.now)]) == 1
        assert len(store.metrics("web", since=0)) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(service_samples, max_size=50), st.data())
def test_minutes_recorded_round_by_round_equal_the_minutes_of_all_samples(
    samples: list[ServiceSample], data: st.DataObject
) -> None:
    samples = unique_times(samples)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(samples)), max_size=8)))
    rounds = [samples[a:b] for a, b in zip([0, *cuts], [*cuts, len(samples)], strict=True)]
    with tempfile.TemporaryDirectory() as folder:
        clock = Clock(T0 + 1000)  # every sample is within the last hour
        with Store.open(Path(folder) / "dployr.db", cipher=Cipher.generate(), clock=clock) as store:
            for name in ("web", "api", "worker"):
                store.create_service(name, make_settings())
            for one_round in rounds:
                store.record_samples(one_round)
                store.record_samples(one_round[: len(one_round) // 2])  # repeats count once
            expected = service_buckets(samples)
            for name in ("web", "api", "worker"):
                points = store.metrics(name, since=0, resolution=Resolution.MINUTE)
                want = [
                    MetricPoint.of_bucket(bucket)
                    for (service, _), bucket in sorted(expected.items())
                    if service == name
                ]
                assert len(points) == len(want)
                for got, wanted in zip(points, want, strict=True):
                    assert (got.ts, got.samples, got.cpu_percent_max) == (
                        wanted.ts,
                        wanted.samples,
                        wanted.cpu_percent_max,
                    )
                    assert got.memory_rss_bytes_max == wanted.memory_rss_bytes_max
                    assert got.memory_rss_bytes == wanted.memory_rss_bytes
                    assert got.open_fds == pytest.approx(wanted.open_fds)
                    assert got.cpu_percent == pytest.approx(wanted.cpu_percent)
                raw = store.metrics(name, since=0, resolution=Resolution.RAW)
                mine = sorted((s for s in samples if s.service == name), key=lambda s: s.ts)
                assert raw == [MetricPoint.of_sample(s) for s in mine]
