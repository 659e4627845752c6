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
  its program was exec'd (the kernel's own time of the ``execve``, from its process
  events connector: :mod:`benchmarks.proc_events`, as root; the run's pid is in its
  "started" line), and when its process printed the time, read back from the run's lines
  (``GET /services/{name}/runs/{n}/logs``). Between the last two is the program's own
  start-up (``date``'s dynamic loading and ``main``), 100 of them at once on the cores.

Targets: idle CPU ≤ 0.1 %, start skew p99 ≤ 50 ms.
"""

from __future__ import annotations

import functools
import math
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import trio

from benchmarks.api import start_daemon
from benchmarks.proc_events import ExecWatch
from dployr.engine.os import launcher

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
        watch: ExecWatch | None = ExecWatch()
        try:
            assert watch is not None
            watch.open()
        except OSError as error:  # not root, or no connector in this kernel
            print(f"  (no exec times: the kernel's process events are not readable: {error})")
            watch = None
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
                figures = await skews(http, boundary, watch)
        finally:
            if watch is not None:
                watch.close()
            process.terminate()
            with trio.fail_after(60):
                await process.wait()
    show(idle, loads, figures)


async def skews(
    http: httpx.AsyncClient, boundary: float, watch: ExecWatch | None
) -> tuple[tuple[str, list[float]], ...]:
    """Every scheduled run's start skews, from its record, its lines and the kernel."""
    started: list[float] = []
    recorded: list[float] = []
    spawned: list[float] = []
    execd: list[float] = []
    last = boundary + (MINUTES - 1) * 60
    for index in range(JOBS):
        name = f"job{index:03d}"
        runs = (await http.get(f"/services/{name}/runs?limit=100")).json()
        for record in runs:
            due = record["scheduled_at"]
            if record["trigger"] != "schedule" or due is None or not boundary <= due <= last:
                continue
            if record["status"] != "succeeded":
                raise RuntimeError(f"{name} run {record['id']}: {record}")
            recorded.append(record["started_at"] - due)
            path = f"/services/{name}/runs/{record['id']}/logs"
            lines = (await http.get(path)).json()["lines"]
            printed = [x["line"] for x in lines if x["stream"] == "stdout"]
            started.append(float(printed[0]) - due)
            said = f"run {record['id']} started"
            line = next(x for x in lines if x["line"].startswith(said))
            spawned.append(line["ts"] - due)
            if watch is not None:
                pid = re.search(r"\(pid (\d+)", line["line"])
                at = watch.last_exec(int(pid[1]), due - 1.5, due + 5) if pid else None
                if at is None:
                    raise RuntimeError(f"{name} run {record['id']}: no exec of it seen")
                execd.append(at - due)
    return (
        ("run recorded", recorded),
        ("spawned", spawned),
        *((("program exec'd", execd),) if execd else ()),
        ("process started", started),
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


def floor(rounds: int = 3) -> None:
    """The same start without dployr: JOBS shells held as dployr holds a run (the same
    script: a barrier on fd 3, then a line on stdin), spawned a second ahead and let go
    by one close at a due time; when each program was exec'd (the kernel's time) and
    printed its clock. What JOBS programs starting at one instant cost this machine, with
    no daemon and no cgroups: the least the start skew can be here."""
    watch = ExecWatch()
    try:
        watch.open()
    except OSError as error:
        print(f"  (no floor: the kernel's process events are not readable: {error})")
        return
    execd: list[float] = []
    printed: list[float] = []
    hold = launcher._HOLD.format(name="DPLOYR_RUN")  # the very script dployr holds runs in
    try:
        for _ in range(rounds):
            barrier_read, barrier_write = os.pipe()
            runs = []
            for index in range(JOBS):
                gate_read, gate_write = os.pipe()
                os.write(gate_write, f"{index}\n".encode())  # its line, written ahead
                os.close(gate_write)
                runs.append(
                    subprocess.Popen(
                        ["/bin/sh", "-c", hold, "sh", "date", "+%s.%N"],
                        stdin=gate_read,
                        stdout=subprocess.PIPE,
                        pass_fds=(barrier_read, 3),  # 3: kept once the dup2 made it
                        preexec_fn=functools.partial(os.dup2, barrier_read, 3),  # noqa: PLW1509
                        start_new_session=True,
                    )
                )
                os.close(gate_read)
            os.close(barrier_read)
            due = math.floor(time.time()) + 2.0
            time.sleep(max(0.0, due - time.time()))
            os.close(barrier_write)  # let them all go
            outputs = [process.communicate(timeout=30)[0] for process in runs]
            time.sleep(1.0)  # the watch's thread reads the kernel's events meanwhile
            for process, out in zip(runs, outputs, strict=True):
                printed.append(float(out) - due)
                at = watch.last_exec(process.pid, due - 1.5, due + 5)
                if at is None:
                    raise RuntimeError(f"no exec of {process.pid} seen")
                execd.append(at - due)
    finally:
        watch.close()
    print(f"  without dployr, {JOBS} held runs let go by one close, {rounds} rounds:")
    for label, values in (("program exec'd", execd), ("process started", printed)):
        ms = [1000 * value for value in values]
        print(
            f"    {label}: p50 {statistics.median(ms):.1f} ms, "
            f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
        )


def main() -> None:
    """Run the benchmark and print its figures."""
    print("scheduled jobs (issue 15):")
    trio.run(run)
    floor()


if __name__ == "__main__":
    main()
