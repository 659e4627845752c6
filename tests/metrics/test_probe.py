"""The sampler against real processes: CPU, memory, trees, dead members, new members."""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Callable

import attrs
import psutil
import trio

from dployr.engine.metrics import MetricsSampler, ProcessProbe, group_members
from dployr.metrics import ServiceSample
from tests.metrics.conftest import ALLOCATE, BURN, IDLE, SPAWNER, WAIT, Spawn, tree

MIB = 2**20


async def collect(
    sampler: MetricsSampler, enough: Callable[[dict[str, list[ServiceSample]]], bool]
) -> dict[str, list[ServiceSample]]:
    """The samples the sampler publishes, by service, until there are ``enough``."""
    seen: dict[str, list[ServiceSample]] = {}
    with trio.fail_after(WAIT), sampler.samples.subscribe() as subscription:
        while not enough(seen):
            batch = await subscription.receive()
            assert isinstance(batch, list), batch  # no gap: we read as fast as it samples
            for sample in batch:
                if isinstance(sample, ServiceSample):
                    seen.setdefault(sample.service, []).append(sample)
    return seen


def hot(service: str) -> Callable[[dict[str, list[ServiceSample]]], bool]:
    """Enough once ``service`` has a sample of at least half a core."""
    return lambda seen: any(s.cpu_percent >= 50 for s in seen.get(service, []))


async def test_a_cpu_burner_shows_high_cpu_and_an_idle_child_near_zero(
    spawn: Spawn, nursery: trio.Nursery
) -> None:
    burner, idle = await spawn(BURN), await spawn(IDLE)
    await burner.ready()
    await idle.ready()
    groups = {"burner": [burner.pgid], "idle": [idle.pgid]}
    sampler = MetricsSampler(lambda: groups, interval=0.2)
    await nursery.start(sampler.run)

    seen = await collect(sampler, lambda seen: hot("burner")(seen) and len(seen["idle"]) >= 3)
    assert {s.processes for s in seen["burner"]} == {1}
    # The idle child has only slept since before the sampler's baseline.
    assert [s.cpu_percent for s in seen["idle"]] == [0.0] * len(seen["idle"])
    instance = sampler.latest_instance()
    assert instance is not None
    assert instance.cpu_percent > 0
    assert instance.memory_total_bytes == psutil.virtual_memory().total
    assert sampler.latest("burner") == seen["burner"][-1]


async def test_a_process_tree_is_summed_with_its_reparented_grandchild(spawn: Spawn) -> None:
    leader = await spawn(tree())
    child, grandchild = await leader.ready()
    assert psutil.Process(grandchild).ppid() != leader.pgid  # reparented out of the tree
    assert os.getpgid(grandchild) == leader.pgid  # but still in the group
    pids = [leader.pgid, child, grandchild]
    assert sorted(group_members([leader.pgid])[leader.pgid]) == sorted(pids)

    probe = ProcessProbe()
    await probe.sample({"web": [leader.pgid]})
    processes = [psutil.Process(pid) for pid in pids]
    # The tree's threads may open or close a file while it is sampled: bound the count by
    # what it held just before and just after.
    fds_before = sum(p.num_fds() for p in processes)
    (sample,) = (await probe.sample({"web": [leader.pgid]})).services
    fds_after = sum(p.num_fds() for p in processes)
    assert sample.service == "web"
    assert sample.processes == 3
    assert sample.threads == 1 + 4 + 1
    assert min(fds_before, fds_after) <= sample.open_fds <= max(fds_before, fds_after)
    rss = sum(p.memory_info().rss for p in processes)
    assert abs(sample.memory_rss_bytes - rss) <= 0.05 * rss
    assert probe.tracked == 3


async def test_a_reparented_grandchild_burning_cpu_counts_for_its_service(
    spawn: Spawn, nursery: trio.Nursery
) -> None:
    leader = await spawn(tree(burn=True))
    await leader.ready()
    sampler = MetricsSampler(lambda: {"web": [leader.pgid]}, interval=0.2)
    await nursery.start(sampler.run)
    seen = await collect(sampler, hot("web"))
    assert {s.processes for s in seen["web"]} == {3}


async def test_resident_memory_of_a_child_that_allocates_100_mb(spawn: Spawn) -> None:
    big, small = await spawn(ALLOCATE), await spawn(IDLE)
    await big.ready()
    await small.ready()
    round_ = await ProcessProbe().sample({"big": [big.pgid], "small": [small.pgid]})
    sizes = {sample.service: sample.memory_rss_bytes for sample in round_.services}
    assert sizes["big"] >= 100 * MIB
    assert sizes["small"] < 50 * MIB
    assert sizes["big"] - sizes["small"] >= 95 * MIB


async def test_dead_processes_are_dropped(spawn: Spawn) -> None:
    leader = await spawn(tree())
    await leader.ready()
    probe = ProcessProbe()
    groups = {"web": [leader.pgid]}
    (sample,) = (await probe.sample(groups)).services
    assert (sample.processes, probe.tracked) == (3, 3)

    await leader.send("kill")
    assert await leader.line() == "killed"  # the child is dead and reaped
    (sample,) = (await probe.sample(groups)).services
    assert (sample.processes, sample.threads, probe.tracked) == (2, 2, 2)

    await leader.kill()  # the whole group, grandchild included
    (sample,) = (await probe.sample(groups)).services
    assert sample == ServiceSample("web", sample.ts, 0.0, 0, 0, 0, 0)
    assert probe.tracked == 0
    assert (await probe.sample({})).services == ()


def open_stat_files() -> collections.Counter[int]:
    """How many times this test process holds /proc/<pid>/stat open, by pid."""
    pids: collections.Counter[int] = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed already
            continue
        if match := re.fullmatch(r"/proc/(\d+)/stat", target):
            pids[int(match[1])] += 1
    return pids


def stat_files(among: set[int]) -> set[int]:
    """The pids of ``among`` whose /proc/<pid>/stat this test process holds open."""
    return set(open_stat_files()) & among


async def test_a_group_named_twice_in_a_round_keeps_one_file(spawn: Spawn) -> None:
    idle = await spawn(IDLE)
    await idle.ready()
    probe = ProcessProbe()
    groups = {"web": [idle.pgid], "alias": [idle.pgid]}
    for _ in range(3):
        web, alias = (await probe.sample(groups)).services
        assert (web.processes, alias.processes) == (1, 1)
    assert (probe.open_files, open_stat_files()[idle.pgid]) == (1, 1)
    probe.close()
    assert open_stat_files()[idle.pgid] == 0


async def test_stat_files_stay_open_for_live_members_only(spawn: Spawn) -> None:
    leader = await spawn(tree())
    child, grandchild = await leader.ready()
    tree_ = {leader.pgid, child, grandchild}
    probe = ProcessProbe()
    groups = {"web": [leader.pgid]}
    await probe.sample(groups)
    assert stat_files(tree_) == {leader.pgid, child, grandchild}
    assert probe.open_files == 3

    await leader.send("kill")
    assert await leader.line() == "killed"
    (sample,) = (await probe.sample(groups)).services
    assert sample.processes == 2
    assert stat_files(tree_) == {leader.pgid, grandchild}

    await probe.sample({})  # the service is no longer sampled
    assert (stat_files(tree_), probe.open_files, probe.tracked) == (set(), 0, 0)
    await probe.sample(groups)
    assert stat_files(tree_) == {leader.pgid, grandchild}
    probe.close()
    assert (stat_files(tree_), probe.open_files, probe.tracked) == (set(), 0, 0)


async def test_members_over_the_file_budget_are_read_by_path(spawn: Spawn) -> None:
    leader = await spawn(tree())
    await leader.ready()
    groups = {"web": [leader.pgid]}
    kept, budgeted = ProcessProbe(), ProcessProbe(max_files=1)
    for probe in (kept, budgeted):
        await probe.sample(groups)
    ((full,), (thrifty,)) = [(await p.sample(groups)).services for p in (kept, budgeted)]
    assert (budgeted.open_files, budgeted.tracked, kept.open_files) == (1, 3, 3)
    assert attrs.evolve(thrifty, ts=full.ts, cpu_percent=0, memory_rss_bytes=0) == attrs.evolve(
        full, cpu_percent=0, memory_rss_bytes=0
    )
    assert thrifty.processes == 3
    kept.close()
    budgeted.close()


async def test_the_groups_of_two_releases_are_summed(spawn: Spawn) -> None:
    old, new = await spawn(IDLE), await spawn(IDLE)
    await old.ready()
    await new.ready()
    probe = ProcessProbe()
    round_ = await probe.sample({"web": [old.pgid, new.pgid], "old": [old.pgid]})
    web, alone = round_.services
    assert (web.service, web.processes, alone.service, alone.processes) == ("web", 2, "old", 1)
    assert round_.instance.ts == web.ts == alone.ts


async def test_a_process_born_between_rounds_counts_all_its_cpu(spawn: Spawn) -> None:
    leader = await spawn(SPAWNER)
    await leader.ready()
    probe = ProcessProbe()
    groups = {"web": [leader.pgid]}
    before = time.monotonic()
    await probe.sample(groups)  # the baseline: the leader only
    await leader.send("spawn")
    assert await leader.line() == "burnt"  # a new member used 0.5 s of CPU, then idles
    (sample,) = (await probe.sample(groups)).services
    elapsed = time.monotonic() - before
    assert sample.processes == 2
    # psutil's cpu_percent() would say 0 for a process it meets for the first time.
    assert sample.cpu_percent >= 0.9 * 100 * 0.5 / elapsed
