"""Metrics: what sampling 100 idle services every 5 s costs the daemon.

100 services, each a process group as a release is: an idle Python process (a listening
socket, four threads) and a ``sleep`` child, so 200 processes. Measured:

1. one round, back to back ROUNDS times: the CPU time of reading it (in the worker thread)
   and of recording it in the store (on the trio thread); and, for comparison, the same
   figures read through ``psutil.Process`` objects (identity check, ``oneshot()``,
   ``cpu_times``, ``memory_info``, ``num_threads``, ``num_fds``);
2. the sampler as the daemon runs it (interval 5 s, a store, one topic subscriber) for
   DURATION seconds: the process's CPU time over that wall time, in percent of one core,
   and how much its resident memory grew;
3. the store at steady state: an hour of samples and 7 days of minutes for the 100
   services (72,000 and 1,008,000 rows), the cost of recording one round with its pruning
   as the clock moves on, and the size of the database file.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs
import psutil
import trio

from dployr.engine.metrics import MetricsSampler, ProcessProbe, group_members
from dployr.metrics import (
    MINUTE,
    MINUTE_RETENTION,
    RAW_RETENTION,
    minute_of,
)
from dployr.models import ServiceSettings, Source
from dployr.store import Cipher, Store

SERVICES = 100
ROUNDS = 50
INTERVAL = 5.0
DURATION = float(os.environ.get("METRICS_BENCH_SECONDS", "60"))
LIFETIME = 900

SERVICE = f"""
import socket, subprocess, threading, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
for _ in range(3):
    threading.Thread(target=time.sleep, args=({LIFETIME},), daemon=True).start()
subprocess.Popen(["sleep", "{LIFETIME}"])
print("ready", flush=True)
time.sleep({LIFETIME})
"""


@contextmanager
def idle_services() -> Iterator[dict[str, list[int]]]:
    """SERVICES idle process groups: service name -> [pgid]."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, start_new_session=True
        )
        for _ in range(SERVICES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == b"ready\n"
        yield {f"svc-{i}": [p.pid] for i, p in enumerate(processes)}
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def open_store(folder: Path, names: list[str], clock: Callable[[], float] = time.time) -> Store:
    store = Store.open(folder / "dployr.db", cipher=Cipher.generate(), clock=clock)
    settings = ServiceSettings(source=Source("/srv/app"), run_cmd="app")
    for name in names:
        if store.get_service(name) is None:
            store.create_service(name, settings)
    return store


def cpu_ms(run: Callable[[], object], rounds: int) -> float:
    """Milliseconds of this thread's CPU time per call of ``run``."""
    start = time.thread_time()
    for _ in range(rounds):
        run()
    return (time.thread_time() - start) / rounds * 1000


def psutil_round(cache: dict[int, psutil.Process], groups: dict[str, list[int]]) -> None:
    """The same readings through psutil.Process objects, kept between rounds."""
    members = group_members(pgid for pgids in groups.values() for pgid in pgids)
    for pids in members.values():
        for pid in pids:
            process = cache.get(pid)
            if process is None or not process.is_running():
                process = cache[pid] = psutil.Process(pid)
            with process.oneshot():
                process.cpu_times()
                process.memory_info()
                process.num_threads()
                process.num_fds()


def one_round(groups: dict[str, list[int]], folder: Path) -> None:
    probe = ProcessProbe()
    round_ = probe.read(groups)
    processes = sum(s.processes for s in round_.services)
    read = cpu_ms(lambda: probe.read(groups), ROUNDS)
    pgids = [pgid for pgids in groups.values() for pgid in pgids]
    scan = cpu_ms(lambda: group_members(pgids), ROUNDS)
    cache: dict[int, psutil.Process] = {}
    psutil_round(cache, groups)
    with_psutil = cpu_ms(lambda: psutil_round(cache, groups), ROUNDS)
    with open_store(folder, list(groups)) as store:
        rounds = [probe.read(groups).samples for _ in range(ROUNDS)]
        write = cpu_ms(lambda: store.record_samples(rounds.pop()), ROUNDS)
    per_round = read + write
    print(
        f"metrics.round: {per_round:.1f} ms CPU per round for {SERVICES} services, "
        f"{processes} processes (read {read:.1f} ms, of which {scan:.1f} ms scan "
        f"{len(os.listdir('/proc'))} /proc entries; record {write:.1f} ms); "
        f"{per_round / INTERVAL / 10:.2f} % of a core at a {INTERVAL:g} s interval"
    )
    print(f"metrics.round: the same reads through psutil.Process: {with_psutil:.1f} ms")


async def run_sampler(groups: dict[str, list[int]], store: Store) -> tuple[float, int, int]:
    """Run the sampler for DURATION s; return its CPU percent, RSS growth and rounds."""
    sampler = MetricsSampler(lambda: groups, store, interval=INTERVAL)
    me = psutil.Process()
    async with trio.open_nursery() as nursery:
        await nursery.start(sampler.run)
        subscription = sampler.samples.subscribe()

        async def drain() -> None:
            async for _ in subscription:
                pass

        nursery.start_soon(drain)
        await trio.sleep(INTERVAL / 2)  # the baseline round is done
        rss_before = me.memory_info().rss
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await trio.sleep(DURATION)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        rss_growth = me.memory_info().rss - rss_before
        nursery.cancel_scope.cancel()
    return 100 * cpu / wall, rss_growth, sampler.statistics().rounds


def in_daemon(groups: dict[str, list[int]], folder: Path) -> None:
    with open_store(folder, list(groups)) as store:
        percent, growth, rounds = trio.run(run_sampler, groups, store)
    print(
        f"metrics.sampler: {percent:.2f} % of a core on average over {DURATION:g} s "
        f"({rounds} rounds, whole process, trio loop and store included); "
        f"resident memory grew {growth / 2**10:.0f} KiB"
    )


def steady_store(folder: Path) -> None:
    """An hour of samples and 7 days of minutes, then rounds recorded as time moves on."""
    names = [f"svc-{i}" for i in range(SERVICES)]
    now = float(minute_of(time.time()))
    clock = [now]
    with open_store(folder, names, clock=lambda: clock[0]):
        pass
    db = sqlite3.connect(folder / "dployr.db", isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO service_samples VALUES (?, ?, 3.5, 50000000, 2, 5, 12)",
        (
            (name, now - RAW_RETENTION + INTERVAL * k)
            for name in names
            for k in range(int(RAW_RETENTION / INTERVAL))
        ),
    )
    minutes = int(MINUTE_RETENTION / MINUTE)
    db.executemany(
        "INSERT INTO service_minutes VALUES (?, ?, 12, 42.0, 7.0, 600000000, 50000000,"
        " 24, 2, 60, 5, 144, 12)",
        ((name, int(now) - MINUTE * (k + 1)) for name in names for k in range(minutes)),
    )
    db.execute("COMMIT")
    db.close()
    with open_store(folder, names, clock=lambda: clock[0]) as store:
        template = ProcessProbe().read({name: [] for name in names}).samples

        def record() -> None:
            clock[0] += INTERVAL
            store.record_samples([attrs.evolve(sample, ts=clock[0]) for sample in template])

        per_round = cpu_ms(record, ROUNDS * 4)
    size = sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("dployr.db"))
    print(
        f"metrics.store: {per_round:.1f} ms CPU per round recorded at steady state "
        f"({SERVICES} services: {SERVICES * int(RAW_RETENTION / INTERVAL):,} samples, "
        f"{SERVICES * minutes:,} minutes kept, pruned each round); "
        f"database {size / 2**20:.0f} MiB"
    )


def main() -> None:
    with idle_services() as groups:
        with tempfile.TemporaryDirectory() as folder:
            one_round(groups, Path(folder))
        with tempfile.TemporaryDirectory() as folder:
            in_daemon(groups, Path(folder))
    with tempfile.TemporaryDirectory() as folder:
        steady_store(Path(folder))


if __name__ == "__main__":
    main()
