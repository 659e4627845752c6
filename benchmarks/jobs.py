"""Scheduled jobs (issue 15): 100 jobs due every minute on a real daemon.

A real ``dployr up`` on a temporary data dir, 100 jobs deployed from one local folder,
each scheduled ``* * * * *`` with a run command that prints the time it started
(``date +%s.%N``: the process's own clock, after the fork and the exec). Then, over
``MINUTES`` minute boundaries:

* **idle CPU between runs**: the daemon's CPU time (user + system, psutil) over the 30 s
  from 15 s to 45 s after a boundary, when no run is due or running, as a percentage
  of one core;
* **start skew**: for every scheduled run, minus its due time: the start its record
  holds ("run recorded": the run is recorded before it can start, its start time when
  it is let go), when dployr let it go (the "run N started" line: its process was
  spawned ahead and held; with every run due then, it is let go by one close), and when
  its process printed the time, read back from the run's lines
  (``GET /services/{name}/runs/{n}/logs``).

Targets: idle CPU ≤ 0.1 %, start skew p99 ≤ 50 ms.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import trio

from benchmarks.api import start_daemon

JOBS = 100
MINUTES = 3
IDLE_FROM, IDLE_TO = 15.0, 45.0


async def deploy_jobs(http: httpx.AsyncClient, folder: Path) -> None:
    """Deploy JOBS jobs due every minute and wait until every one is scheduled."""
    body = {
        "remote": {"url": str(folder)},
        "run_cmd": "date +%s.%N",
        "type": "job",
        "job": {"schedule": "* * * * *"},
    }
    limiter = trio.CapacityLimiter(8)

    async def one(index: int) -> None:
        async with limiter:
            response = await http.post(f"/services/job{index:03d}/deploy", json=body)
            response.raise_for_status()

    async with trio.open_nursery() as nursery:
        for index in range(JOBS):
            nursery.start_soon(one, index)
    with trio.fail_after(180):
        while True:  # a benchmark set-up, not a test: polling the list is fine here
            services = (await http.get("/services")).json()
            if sum(s["deployment"] == 1 and s["deploying"] is None for s in services) == JOBS:
                return
            await trio.sleep(0.5)


async def until(t: float) -> None:
    await trio.sleep(max(0.0, t - time.time()))


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)  # its own: a run's process is not its child's


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def run() -> None:
    with tempfile.TemporaryDirectory(prefix="dployr-bench-jobs-") as root_name:
        root = Path(root_name)
        folder = root / "job"
        folder.mkdir()
        (folder / "README").write_text("a job that prints when it started\n")
        process, url = await start_daemon(root / "data")
        token = (root / "data" / "admin-token").read_text().strip()
        daemon = psutil.Process(process.pid)
        try:
            async with httpx.AsyncClient(
                base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as http:
                await deploy_jobs(http, folder)
                deployed = time.time()
                idle: list[float] = []
                loads: list[float] = []
                boundary = (math.floor(deployed / 60) + 1) * 60
                for minute in range(MINUTES):
                    start = boundary + minute * 60
                    await until(start + IDLE_FROM)
                    before, t0 = cpu_seconds(daemon), time.monotonic()
                    await until(start + IDLE_TO)
                    used, span = cpu_seconds(daemon) - before, time.monotonic() - t0
                    idle.append(100 * used / span)
                    loads.append(os.getloadavg()[0])
                await until(boundary + MINUTES * 60 + 5)
                started: list[float] = []
                recorded: list[float] = []
                spawned: list[float] = []
                for index in range(JOBS):
                    name = f"job{index:03d}"
                    runs = (await http.get(f"/services/{name}/runs?limit=100")).json()
                    for record in runs:
                        due = record["scheduled_at"]
                        last = boundary + (MINUTES - 1) * 60
                        if (
                            record["trigger"] != "schedule"
                            or due is None
                            or not boundary <= due <= last
                        ):
                            continue
                        if record["status"] != "succeeded":
                            raise RuntimeError(f"{name} run {record['id']}: {record}")
                        recorded.append(record["started_at"] - due)
                        path = f"/services/{name}/runs/{record['id']}/logs"
                        lines = (await http.get(path)).json()["lines"]
                        printed = [x["line"] for x in lines if x["stream"] == "stdout"]
                        started.append(float(printed[0]) - due)
                        said = f"run {record['id']} started"
                        spawned.append(
                            next(x["ts"] for x in lines if x["line"].startswith(said)) - due
                        )
        finally:
            process.terminate()
            with trio.fail_after(60):
                await process.wait()
    show(
        idle,
        loads,
        (("run recorded", recorded), ("spawned", spawned), ("process started", started)),
    )


def show(
    idle: list[float], loads: list[float], figures: tuple[tuple[str, list[float]], ...]
) -> None:
    """Print the figures."""
    expected = JOBS * MINUTES
    print(
        f"  {JOBS} jobs every minute, {MINUTES} minutes: {len(figures[-1][1])} of {expected} runs"
    )
    print(
        "  idle CPU between runs (15-45 s after each boundary): "
        + ", ".join(f"{value:.3f} %" for value in idle)
        + " (target ≤ 0.1 %)"
    )
    print(
        "  load average (1 min), 45 s after each boundary: " + ", ".join(f"{x:.1f}" for x in loads)
    )
    for label, values in figures:
        ms = [1000 * value for value in values]
        print(
            f"  start skew, {label}: p50 {statistics.median(ms):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms (target p99 ≤ 50 ms)"
        )


def main() -> None:
    """Run the benchmark and print its figures."""
    print("scheduled jobs (issue 15):")
    trio.run(run)


if __name__ == "__main__":
    main()
