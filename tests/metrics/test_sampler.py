"""The sampler actor on the autojump clock, with a fake probe: rounds, topic, latest, store.

The OS is not involved here (tests/metrics/test_probe.py reads real processes), so the
interval is trio time and the tests take no real time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from dployr.engine.metrics import CHILD_ID, MetricsSampler, Round
from dployr.errors import SpecError
from dployr.metrics import InstanceSample, MetricPoint, Sample, ServiceSample
from dployr.store import Cipher, Store
from dployr.supervision import ChildRestarting, ChildTerminated, Supervisor, Topic
from tests.metrics.strategies import T0
from tests.store.conftest import Clock, make_settings

GUARD = 3600.0
"""A guard on waits, in trio time (the autojump clock makes it free)."""


class FakeProbe:
    """Answers each round at once (or after ``slow[n]`` s), with values that say the round."""

    def __init__(self, slow: Mapping[int, float] | None = None) -> None:
        self.calls: list[float] = []
        self.slow = dict(slow or {})
        self.closed = 0

    def close(self) -> None:
        self.closed += 1

    async def sample(self, groups: Mapping[str, Sequence[int]]) -> Round:
        n = len(self.calls)
        self.calls.append(trio.current_time())
        await trio.sleep(self.slow.get(n, 0.0))
        ts = T0 + trio.current_time()
        return Round(
            InstanceSample(ts, float(n), 1000, 2000, (0.5, 0.25, 0.125), cpu_count=2),
            tuple(
                ServiceSample(name, ts, float(n), 100 * len(pgids), len(pgids), n, n)
                for name, pgids in groups.items()
            ),
        )


async def next_batch(subscription: object) -> list[Sample]:
    with trio.fail_after(GUARD):
        batch = await subscription.receive()  # type: ignore[attr-defined]
    assert isinstance(batch, list), batch
    return batch


async def test_rounds_come_every_interval_after_an_unpublished_baseline(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    probe = FakeProbe()
    sampler = MetricsSampler(lambda: {"web": [10], "api": [20, 21]}, interval=5.0, probe=probe)
    with sampler.samples.subscribe() as subscription:
        start = trio.current_time()
        await nursery.start(sampler.run)
        batches = [await next_batch(subscription) for _ in range(3)]
    assert probe.calls == [start, start + 5, start + 10, start + 15]
    for n, batch in enumerate(batches, start=1):  # round 0 was the baseline
        instance, web, api = batch
        assert isinstance(instance, InstanceSample)
        assert instance.cpu_percent == n
        assert isinstance(web, ServiceSample)
        assert isinstance(api, ServiceSample)
        assert (web.service, web.processes, api.service, api.processes) == ("web", 1, "api", 2)
        assert web.ts == api.ts == instance.ts == T0 + start + 5 * n
    assert sampler.statistics().rounds == 3
    assert probe.closed == 0


async def test_a_stopped_sampler_closes_its_probe(autojump_clock: trio.testing.MockClock) -> None:
    probe = FakeProbe()
    sampler = MetricsSampler(lambda: {"web": [10]}, interval=5.0, probe=probe)
    async with trio.open_nursery() as nursery:
        await nursery.start(sampler.run)
        await trio.sleep(12)
        nursery.cancel_scope.cancel()
    assert (len(probe.calls), probe.closed) == (3, 1)


async def test_latest_follows_the_services_of_the_last_round(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    groups: dict[str, list[int]] = {"web": [10], "idle": []}
    sampler = MetricsSampler(lambda: groups, interval=5.0, probe=FakeProbe())
    assert sampler.latest("web") is None
    assert sampler.latest_instance() is None
    with sampler.samples.subscribe() as subscription:
        await nursery.start(sampler.run)
        await next_batch(subscription)
        web = sampler.latest("web")
        assert web is not None
        assert web.cpu_percent == 1.0
        idle = sampler.latest("idle")
        assert idle is not None
        assert idle.processes == 0
        instance = sampler.latest_instance()
        assert instance is not None
        assert instance.ts == web.ts
        assert sampler.latest_services() == [idle, web]

        del groups["web"]  # stopped, or deleted
        await next_batch(subscription)
    assert sampler.latest("web") is None
    assert sampler.latest("idle") is not None
    assert sampler.statistics().services == 1


async def test_a_slow_round_skips_the_rounds_it_made_late(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    probe = FakeProbe(slow={2: 12.0})  # the second published round takes 12 s
    sampler = MetricsSampler(dict, interval=5.0, probe=probe)
    with sampler.samples.subscribe() as subscription:
        start = trio.current_time()
        await nursery.start(sampler.run)
        for _ in range(3):
            await next_batch(subscription)
    # Due at 10, done at 22: the rounds due at 15 and 20 are skipped, the phase is kept.
    assert [call - start for call in probe.calls] == [0, 5, 10, 25]


async def test_each_round_is_recorded_in_the_store(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    clock = Clock(T0 + 3600)
    with Store.open(tmp_path / "dployr.db", cipher=Cipher.generate(), clock=clock) as store:
        store.create_service("web", make_settings())
        sampler = MetricsSampler(lambda: {"web": [10]}, store, interval=5.0, probe=FakeProbe())
        published: list[ServiceSample] = []
        with sampler.samples.subscribe() as subscription:
            await nursery.start(sampler.run)
            for _ in range(2):
                batch = await next_batch(subscription)
                published += [s for s in batch if isinstance(s, ServiceSample)]
        points = store.metrics("web", since=T0)
        assert points == [MetricPoint.of_sample(sample) for sample in published]
        assert len(store.instance_metrics(since=T0)) == 2


@pytest.mark.parametrize("interval", [0, -5, math.nan, math.inf, True, "5"])
def test_a_bad_interval_is_refused(interval: object) -> None:
    with pytest.raises(SpecError, match="interval"):
        MetricsSampler(dict, interval=interval)  # type: ignore[arg-type]


async def test_the_child_spec_runs_the_sampler_under_its_own_supervisor(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    events: Topic[object] = Topic("events")
    instance = Supervisor("local", [], events=events)
    await nursery.start(instance.run)
    sampler = MetricsSampler(lambda: {"web": [10]}, interval=5.0, probe=FakeProbe())
    with sampler.samples.subscribe() as subscription:
        await instance.start_child(sampler.child_spec())
        assert instance.which_children() == [CHILD_ID]
        await next_batch(subscription)
    await instance.terminate_child(CHILD_ID)
    assert instance.which_children() == []  # a temporary child is forgotten once stopped


class BrokenProbe:
    """A probe that cannot read the OS."""

    async def sample(self, groups: Mapping[str, Sequence[int]]) -> Round:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("cannot read /proc")

    def close(self) -> None:
        pass


async def test_a_crashing_sampler_is_given_up_on_without_touching_its_siblings(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    events: Topic[object] = Topic("events")
    reports: list[object] = []
    with events.subscribe() as subscription:
        instance = Supervisor("local", [], events=events)
        await nursery.start(instance.run)
        sampler = MetricsSampler(dict, interval=5.0, probe=BrokenProbe())
        await instance.start_child(sampler.child_spec())  # started: it fails only after
        with trio.fail_after(GUARD):
            while CHILD_ID in instance.which_children():
                entry = await subscription.receive()
                reports += entry if isinstance(entry, list) else []
    # Its own supervisor restarted it, then gave up; the instance supervisor carries on.
    restarts = [r for r in reports if isinstance(r, ChildRestarting)]
    assert restarts
    assert all(r.child.id == "sampler" for r in restarts)
    (ended,) = [r for r in reports if isinstance(r, ChildTerminated) and r.child.id == CHILD_ID]
    assert ended.supervisor == ("local",)
    assert ended.reason.abnormal
    stats = instance.statistics()
    assert (stats.children, stats.restarts) == ((), 0)
