"""The service engine against supervisord, circus and PM2: the same workloads, one run.

``python -m benchmarks engine`` (or ``make bench BENCH=engine``); ``DPLOYR_BENCH_ENGINE=
logs,restart,services,crashloop`` picks workloads. Peers that are not installed are skipped
with a note; :mod:`benchmarks.engine_peers` says how to install them. Every manager runs
its programs as ``/bin/sh -c <command>``, on this machine, one after the other.

1. **Log pipeline** (best of ROUNDS). Three producers: a Python child (``sys.executable``)
   writing 1,000,000 lines of about 60 bytes with one ``sys.stdout.write`` per line (as a
   chatty service does; Python buffers them into 8 KiB writes); the same lines built first
   and written in 64 KiB writes (the manager's own ceiling); and ``seq 1 5000000``. The
   clock starts when the child is about to write (it notes ``time.time_ns()`` in a file)
   and stops when the last line is stored: for dployr, the timestamp of the last line in
   its history, read through the REST API (the log pump stamps each batch when it reads
   it and writes it to the history in the same step); for a peer, the modification time
   of its log file once it holds every byte. The lines stored are checked (for dployr by
   cursor arithmetic, as the 50 MB history bound drops the oldest). The producer alone,
   into ``cat > /dev/null``, gives the ceiling of each workload.
2. **Restart latency.** Child ``date +%s%N >> starts; exec sleep 100000``: SIGKILL it and
   take the new child's own start time minus the kill time, 50 times, 0.1 s apart, with
   backoff disabled: dployr as an engine instance whose service's restart policy has no
   delay, in a process of its own (:mod:`benchmarks.engine_instance`), the peers
   configured to restart at once. Also the full daemon with its default backoff, whose
   first restart of a service is immediate: DAEMON_RESTARTS services, each killed once.
3. **100 services** of ``sleep 100000``. Time until all 100 are running: for dployr after
   the first deploy (100 POSTs, then until the last process started) and from a cold daemon
   (``dployr up`` on a data dir holding 100 services, from spawn); for a peer, from its
   spawn with 100 programs. Start times come from the kernel (``/proc/<pid>/stat``, 10 ms
   ticks, against ``CLOCK_BOOTTIME``), so polling does not blur them. Then the manager's
   CPU over 30 s idle (psutil ``cpu_times``), its RSS with 100 programs, and the extra RSS
   per program against the same manager cold with 1 program (dployr: also with none, and
   its idle CPU then).
4. **Crash loop.** Child ``date +%s%N >> starts; exit 1`` under each manager's defaults,
   for 20 s from its first start: restarts, the manager's CPU, and its verdict. PM2 is
   also run with no restart limit, as the issue quotes it.

Everything runs in one temporary folder; at the end, any process still working in it (a
program that outlived its manager's stop) is killed and reported.
"""

from __future__ import annotations

import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import psutil

from benchmarks.engine_peers import (
    Circus,
    CrashLoopCircus,
    CrashLoopPm2,
    CrashLoopSupervisord,
    Dployr,
    DployrInstance,
    Manager,
    NotInstalled,
    Pm2,
    Program,
    Supervisord,
    sleepers,
    sweep,
    wait_for,
)

LINES = 1_000_000
ROUNDS = 3
SEQ = 5_000_000
RESTARTS = 50
DAEMON_RESTARTS = 5
SERVICES = 100
IDLE = 30.0
CRASH_LOOP = 20.0
TICK = os.sysconf("SC_CLK_TCK")

PRODUCER = """\
import os, sys, time
mode, n, stamp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
line = "2026-11-26T12:00:00Z INFO GET /api/items/{} 200 in {} ms #{}\\n".format
if mode == "lines":  # one write per line, buffered by Python as a chatty service's are
    with open(stamp, "w") as file:
        file.write(str(time.time_ns()))
    write = sys.stdout.write
    for i in range(n):
        write(line(i % 977, i % 50, i))
    sys.stdout.flush()
else:  # the whole output built first, then written in 64 KiB writes
    data = "".join(line(i % 977, i % 50, i) for i in range(n)).encode()
    view = memoryview(data)
    with open(stamp, "w") as file:
        file.write(str(time.time_ns()))
    written = 0
    while written < len(data):
        written += os.write(1, view[written : written + 65536])
with open(stamp + ".end", "w") as file:
    file.write(str(time.time_ns()))
if len(sys.argv) < 5:
    time.sleep(100000)  # stay up: a manager would restart a program that exits
"""

PeerFactory = Callable[[Path, list[Program]], Manager]
PEERS: list[tuple[str, PeerFactory]] = [
    ("supervisord", Supervisord),
    ("circus", Circus),
    ("PM2", Pm2),
]
CRASH_PEERS: list[tuple[str, PeerFactory]] = [
    ("supervisord", CrashLoopSupervisord),
    ("circus", CrashLoopCircus),
    ("PM2", CrashLoopPm2),
    ("PM2, no restart limit", Pm2),
]


def producer_output(n: int) -> bytes:
    """What PRODUCER writes for ``n`` lines."""
    return "".join(
        f"2026-11-26T12:00:00Z INFO GET /api/items/{i % 977} 200 in {i % 50} ms #{i}\n"
        for i in range(n)
    ).encode()


def seq_output(n: int) -> bytes:
    return "".join(f"{i}\n" for i in range(1, n + 1)).encode()


def boot_now() -> float:
    """Seconds since boot, the clock of the kernel's process start times."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def started(pid: int) -> float:
    """When process ``pid`` started, in seconds since boot (10 ms ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        stat = file.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[19]) / TICK


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def stamps(path: Path) -> list[int]:
    """The nanosecond timestamps a child appended to ``path``, one per start."""
    try:
        return [int(line) for line in path.read_text().split()]
    except FileNotFoundError:
        return []


def attempt(label: str, run: Callable[[], Any]) -> Any:
    """Run one peer's workload; a peer that is not installed is skipped with a note."""
    try:
        return run()
    except NotInstalled as error:
        print(f"  {label}: skipped ({error})")
        return None


# -- 1. log pipeline ---------------------------------------------------------------------


@attrs.frozen
class LogWorkload:
    """A producer of log lines, and what it writes."""

    label: str
    command: str
    """For a manager: writes the time it starts writing (ns) to the stamp file, then the
    lines, then stays up."""
    alone: str
    """The producer on its own into ``cat > /dev/null``: also stamps when it is done."""
    expected: bytes
    last: str
    """Its last line."""

    @property
    def lines(self) -> int:
        return self.expected.count(b"\n")


def producers(folder: Path, stamp: Path) -> list[LogWorkload]:
    """The log workloads; each stamps ``stamp`` (ns) when it starts writing."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "producer.py"
    script.write_text(PRODUCER)
    output = producer_output(LINES)
    last = output[-80:].decode().rstrip("\n").rsplit("\n", 1)[-1]
    python = f"{sys.executable} {script}"
    return [
        LogWorkload(
            f"python, {LINES:,} lines, a write per line",
            f"exec {python} lines {LINES} {stamp}",
            f"{python} lines {LINES} {stamp} exit | cat > /dev/null",
            output,
            last,
        ),
        LogWorkload(
            f"python, {LINES:,} lines, 64 KiB writes",
            f"exec {python} chunks {LINES} {stamp}",
            f"{python} chunks {LINES} {stamp} exit | cat > /dev/null",
            output,
            last,
        ),
        LogWorkload(
            f"seq 1 {SEQ}",
            f"date +%s%N > {stamp}; seq 1 {SEQ}; exec sleep 100000",
            f"date +%s%N > {stamp}; seq 1 {SEQ} | cat > /dev/null; date +%s%N > {stamp}.end",
            seq_output(SEQ),
            str(SEQ),
        ),
    ]


def log_alone(workload: LogWorkload, stamp: Path) -> float:
    """Lines per second of the producer into a pipe that is only drained: its ceiling."""
    subprocess.run(["/bin/sh", "-c", workload.alone], check=True)
    ended = int(stamp.with_name(stamp.name + ".end").read_text())
    return workload.lines / ((ended - int(stamp.read_text())) / 1e9)


def log_peer(factory: PeerFactory, folder: Path, workload: LogWorkload, stamp: Path) -> float:
    """Lines per second through a peer into its log file."""
    folder.mkdir(parents=True)
    expected = workload.expected
    program = Program("logs", workload.command, folder, restart=False, logs=folder)
    manager = factory(folder / "manager", [program])
    try:
        out = program.out()
        wait_for(
            lambda: out.exists() and out.stat().st_size >= len(expected),
            300,
            "the log file",
            interval=0.05,
        )
        ended = out.stat().st_mtime_ns
        data = out.read_bytes()
    finally:
        manager.stop()
    lines = data.count(b"\n")
    if data != expected:
        print(f"    ! the log file has {len(data)} bytes in {lines} lines, not what was written")
    return lines / ((ended - int(stamp.read_text())) / 1e9)


def log_dployr(folder: Path, workload: LogWorkload, stamp: Path) -> float:
    """Lines per second through dployr's log pump into its history."""
    command, lines, last = workload.command, workload.lines, workload.last
    folder.mkdir(parents=True)
    source = folder / "source"
    source.mkdir()
    daemon = Dployr(folder / "data")
    try:
        daemon.deploy(Program("logs", command, source), source)

        def last_line() -> dict[str, Any] | None:
            page = daemon.logs("logs", tail=1, streams="stdout")
            return page["lines"][0] if page["lines"] and page["lines"][0]["line"] == last else None

        line = wait_for(last_line, 300, "the last line in the history", interval=0.05)
        # The history is bounded (50 MB), so the oldest lines may be gone: check that the
        # lines kept run on without a hole from the oldest one to the last.
        oldest = daemon.logs("logs", after=0, limit=1, streams="stdout")["lines"][0]
        system = daemon.logs("logs", tail=100, streams="system")["lines"]
    finally:
        daemon.stop()
    between = sum(1 for s in system if oldest["cursor"] < s["cursor"] < line["cursor"])
    held = line["cursor"] - oldest["cursor"] - between
    expected = lines - 1 - _index(oldest["line"])
    if held != expected:
        print(f"    ! the history holds {held} lines after the oldest one kept, not {expected}")
    stored = lines
    return float(stored / (line["ts"] - int(stamp.read_text()) / 1e9))


def _index(line: str) -> int:
    """Which line of its output a producer's line is (0 for the first)."""
    return int(line.rsplit("#", 1)[1]) if "#" in line else int(line) - 1


def log_pipeline(root: Path) -> dict[str, dict[str, float]]:
    print(
        "engine.logs: lines/s from the child's first write until its last line is stored "
        f"(best of {ROUNDS})"
    )
    results: dict[str, dict[str, float]] = {}
    stamp = root / "started"
    for index, workload in enumerate(producers(root, stamp)):
        label = workload.label
        results[label] = {}
        runs: list[tuple[str, Callable[[Path], float]]] = [
            ("the producer alone, into cat > /dev/null", lambda _, w=workload: log_alone(w, stamp)),
            ("dployr", lambda d, w=workload: log_dployr(d, w, stamp)),
        ]
        runs += [
            (name, lambda d, f=factory, w=workload: log_peer(f, d, w, stamp))
            for name, factory in PEERS
        ]
        for name, run in runs:
            rates = []
            for round_ in range(ROUNDS):
                folder = root / f"{index}-{name.split()[0]}-{round_}"
                rate = attempt(name, lambda r=run, d=folder: r(d))
                if rate is None:
                    break
                rates.append(rate)
            if rates:
                results[label][name] = max(rates)
                spread = ", ".join(f"{r / 1e6:.2f}" for r in rates)
                print(f"  {label}: {name} {max(rates):,.0f} lines/s (runs: {spread} M)")
    return results


# -- 2. restart latency ------------------------------------------------------------------


def restart_latencies(manager: Manager, starts: Path, count: int, settle: float) -> list[float]:
    """Milliseconds from SIGKILL to the new child's own start, ``count`` times."""
    wait_for(lambda: sleepers(manager.pid), 60, "the first start", interval=0.01)
    latencies = []
    for _ in range(count):
        time.sleep(settle)
        [pid] = wait_for(lambda: sleepers(manager.pid), 30, "one child", interval=0.01)
        before = len(stamps(starts))
        killed = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda b=before: len(stamps(starts)) > b, 30, "the restart", interval=0.001)
        latencies.append((stamps(starts)[-1] - killed) / 1e6)
        wait_for(
            lambda p=pid: (found := sleepers(manager.pid)) and p not in found,
            30,
            "the new child",
            interval=0.01,
        )
    return latencies


def percentiles(latencies: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(latencies, n=20, method="inclusive")
    return statistics.median(latencies), cuts[18]


def restart_latency(root: Path) -> dict[str, tuple[float, float]]:
    print(f"engine.restart: SIGKILL -> new child's start, {RESTARTS} restarts, no backoff")
    results: dict[str, tuple[float, float]] = {}

    def child(folder: Path) -> tuple[Program, Path]:
        folder.mkdir(parents=True)
        starts = folder / "starts"
        command = f"date +%s%N >> {starts}; exec sleep 100000"
        return Program("restart", command, folder, restart=True), starts

    def report(name: str, latencies: list[float]) -> None:
        p50, p95 = percentiles(latencies)
        results[name] = (p50, p95)
        print(
            f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms "
            f"(min {min(latencies):.1f}, max {max(latencies):.1f})"
        )

    program, starts = child(root / "dployr")
    source = root / "dployr" / "source"
    source.mkdir()
    instance = DployrInstance(root / "dployr" / "data", program, source)
    try:
        report("dployr", restart_latencies(instance, starts, RESTARTS, 0.1))
    finally:
        instance.stop()
    for name, factory in PEERS:
        folder = root / name

        def run(f: PeerFactory = factory, d: Path = folder, n: str = name) -> None:
            program, starts = child(d)
            manager = f(d / "manager", [program])
            try:
                report(n, restart_latencies(manager, starts, RESTARTS, 0.1))
            finally:
                manager.stop()

        attempt(name, run)

    results["dployr daemon"] = daemon_restarts(root / "daemon")
    return results


def daemon_restarts(root: Path) -> tuple[float, float]:
    """The full daemon with its default backoff, whose first restart is immediate.

    DAEMON_RESTARTS services, each killed once, 3 s after they all started.
    """
    source = root / "source"
    source.mkdir(parents=True)
    daemon = Dployr(root / "data")
    latencies = []
    try:
        files = []
        for index in range(DAEMON_RESTARTS):
            starts = root / f"starts-{index}"
            command = f"date +%s%N >> {starts}; exec sleep 100000"
            daemon.deploy(Program(f"r{index}", command, root), source)
            files.append(starts)
        wait_for(lambda: len(sleepers(daemon.pid)) == DAEMON_RESTARTS, 60, "the services")
        # Each deploy ends once its release has stayed up its minimum uptime: until then
        # the service is deploying, with no pid to kill.
        wait_for(
            lambda: all(
                daemon.service(f"r{i}")["status"] == "running" for i in range(DAEMON_RESTARTS)
            ),
            60,
            "the services running",
        )
        time.sleep(3)
        for index, starts in enumerate(files):
            pid = daemon.service(f"r{index}")["pid"]
            killed = time.time_ns()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda f=starts: len(stamps(f)) > 1, 30, "the restart", interval=0.001)
            latencies.append((stamps(starts)[-1] - killed) / 1e6)
            time.sleep(0.2)
    finally:
        daemon.stop()
    median = statistics.median(latencies)
    print(
        f"  dployr daemon (default backoff, first restart), {DAEMON_RESTARTS} services killed "
        f"once: median {median:.1f} ms, max {max(latencies):.1f} ms"
    )
    return median, max(latencies)


# -- 3. 100 services ---------------------------------------------------------------------


def all_started(pid: int, count: int, since: float, timeout: float = 120) -> float:
    """Seconds from ``since`` (boot clock) until the last of ``count`` sleepers started."""
    found = wait_for(lambda: len(s := sleepers(pid)) >= count and s, timeout, f"{count} children")
    return max(started(child) for child in found) - since


def run_times(pid: int) -> tuple[frozenset[str], int]:
    """The threads of ``pid`` and the nanoseconds they have run (their ``schedstat``s)."""
    tids = frozenset(os.listdir(f"/proc/{pid}/task"))
    total = 0
    for tid in tids:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as file:
            total += int(file.read().split()[0])
    return tids, total


def idle_cpu(pid: int) -> float:
    """Percent of a core ``pid`` used over IDLE seconds.

    Counted in nanoseconds from the threads' ``schedstat``: the user and system times of
    ``/proc/<pid>/stat`` come in 10 ms ticks, so over 30 s they can only say 0.033 %,
    0.067 %, 0.1 %... If a thread ended meanwhile (its time is then no longer in any
    ``schedstat``), or the ticks say more, the ticks are the figure.
    """
    tids, ran = run_times(pid)
    ticks = cpu_seconds(pid)
    time.sleep(IDLE)
    tids_after, ran_after = run_times(pid)
    ticked = cpu_seconds(pid) - ticks
    precise = (ran_after - ran) / 1e9
    if tids_after != tids or ticked > precise + 2 / TICK:
        return ticked / IDLE * 100
    return precise / IDLE * 100


def sleep_programs(folder: Path, count: int) -> list[Program]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Program(f"s{i}", "sleep 100000", folder) for i in range(count)]


def small_dployr(root: Path, source: Path) -> dict[str, float]:
    """dployr's RSS with no service (fresh) and with 1 (cold start)."""
    figures: dict[str, float] = {}
    one = root / "one"
    daemon = Dployr(one)
    try:
        daemon.services()
        time.sleep(3)
        daemon.services()
        figures["rss0"] = rss_mb(daemon.pid)
        figures["cpu0"] = idle_cpu(daemon.pid)
        daemon.deploy(sleep_programs(root, 1)[0], source)
        all_started(daemon.pid, 1, 0)
        # Stopped before its deploy is over (the release's minimum uptime), the service
        # would not come back: the deploy would be recorded interrupted.
        wait_for(
            lambda: all(s["status"] == "running" for s in daemon.services()),
            60,
            "the service running",
            interval=0.1,
        )
    finally:
        daemon.stop()
    since = boot_now()
    daemon = Dployr(one)
    try:
        all_started(daemon.pid, 1, since)
        daemon.services()
        time.sleep(3)
        daemon.services()
        figures["rss1"] = rss_mb(daemon.pid)
    finally:
        daemon.stop()
    return figures


def hundred_dployr(root: Path) -> dict[str, float]:
    source = root / "source"
    source.mkdir(parents=True)
    figures = small_dployr(root, source)
    many = root / "many"
    daemon = Dployr(many)
    try:
        programs = sleep_programs(root, SERVICES)
        since = boot_now()
        for program in programs:
            daemon.deploy(program, source)
        figures["requests"] = boot_now() - since
        figures["first"] = all_started(daemon.pid, SERVICES, since)
        wait_for(
            lambda: all(s["status"] == "running" for s in daemon.services()),
            60,
            "every service running",
            interval=0.1,
        )
    finally:
        daemon.stop()
    since = boot_now()
    daemon = Dployr(many)
    try:
        figures["cold"] = all_started(daemon.pid, SERVICES, since)
        figures["api"] = daemon.api_up_at - daemon.started_at
        statuses = {s["status"] for s in daemon.services()}
        if statuses != {"running"}:
            print(f"    ! after a cold start the services are {statuses}")
        time.sleep(2)
        figures["cpu"] = idle_cpu(daemon.pid)
        # Restarts while idle (none are expected: nothing crashed).
        figures["restarts"] = sum(s["restarts"] for s in daemon.services())
        figures["rss100"] = rss_mb(daemon.pid)
    finally:
        daemon.stop()
    return figures


def hundred_peer(factory: PeerFactory, root: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    manager = factory(root / "one", sleep_programs(root, 1))
    try:
        all_started(manager.pid, 1, 0)
        time.sleep(3)
        figures["rss1"] = rss_mb(manager.pid)
    finally:
        manager.stop()
    programs = sleep_programs(root, SERVICES)
    since = boot_now()
    manager = factory(root / "many", programs)
    try:
        figures["cold"] = all_started(manager.pid, SERVICES, since)
        time.sleep(2)
        figures["cpu"] = idle_cpu(manager.pid)
        figures["rss100"] = rss_mb(manager.pid)
    finally:
        manager.stop()
    return figures


def hundred_services(root: Path) -> dict[str, dict[str, float]]:
    print(f"engine.services: {SERVICES} services of `sleep 100000`")
    results: dict[str, dict[str, float]] = {}

    def report(name: str, f: dict[str, float]) -> None:
        results[name] = f
        per = (f["rss100"] - f["rss1"]) / (SERVICES - 1) * 1024
        f["per"] = per
        text = f"  {name}: all running {f['cold']:.2f} s from a cold start"
        if "first" in f:
            text += (
                f" (API up after {f['api']:.2f} s); after the first deploy {f['first']:.2f} s"
                f" ({SERVICES} deploy requests took {f['requests']:.2f} s)"
            )
        print(text)
        rss0 = f" ({f['rss0']:.1f} MB with none)" if "rss0" in f else ""
        if "cpu0" in f:
            print(f"  {name}: idle CPU {f['cpu0']:.3f} % of a core over {IDLE:g} s with no service")
        print(
            f"  {name}: idle CPU {f['cpu']:.3f} % of a core over {IDLE:g} s; "
            f"RSS {f['rss100']:.1f} MB with {SERVICES}, {f['rss1']:.1f} MB with 1{rss0}; "
            f"{per:.0f} KB per extra service"
        )
        if f.get("restarts"):
            print(f"    ! {f['restarts']:.0f} restarts of idle services during the idle window")

    report("dployr", hundred_dployr(root / "dployr"))
    for name, factory in PEERS:
        figures = attempt(name, lambda f=factory, n=name: hundred_peer(f, root / n))
        if figures is not None:
            report(name, figures)
    return results


# -- 4. crash loop -----------------------------------------------------------------------


def crash_window(manager: Manager, starts: Path) -> tuple[int, float, str]:
    """Restarts and manager CPU in the CRASH_LOOP seconds after the first start; the verdict."""
    first = wait_for(lambda: stamps(starts), 60, "the first start", interval=0.002)[0]
    cpu = cpu_seconds(manager.pid)
    time.sleep(max(0.0, first / 1e9 + CRASH_LOOP - time.time()))
    cpu = cpu_seconds(manager.pid) - cpu
    window = [s for s in stamps(starts) if s - first <= CRASH_LOOP * 1e9]
    return len(window) - 1, cpu / CRASH_LOOP * 100, manager.state("crash")


def crash_loop(root: Path) -> dict[str, tuple[int, float, str]]:
    print(f"engine.crashloop: a child that exits at once, {CRASH_LOOP:g} s, default settings")
    results: dict[str, tuple[int, float, str]] = {}

    def child(folder: Path) -> tuple[Program, Path]:
        folder.mkdir(parents=True)
        starts = folder / "starts"
        return Program("crash", f"date +%s%N >> {starts}; exit 1", folder), starts

    def report(name: str, figures: tuple[int, float, str]) -> None:
        results[name] = figures
        restarts, cpu, state = figures
        print(f"  {name}: {restarts} restarts, {cpu:.2f} % CPU; end state: {state}")

    program, starts = child(root / "dployr")
    source = root / "dployr" / "source"
    source.mkdir()
    daemon = Dployr(root / "dployr" / "data")
    try:
        daemon.services()
        daemon.deploy(program, source)
        report("dployr", crash_window(daemon, starts))
        info = daemon.service("crash")
        first = stamps(starts)[0] / 1e9
        print(f"  dployr: {info['status']} {info['since'] - first:.1f} s after the first start")
    finally:
        daemon.stop()
    for name, factory in CRASH_PEERS:

        def run(f: PeerFactory = factory, n: str = name) -> None:
            folder = root / n.replace(",", "").replace(" ", "-")
            program, starts = child(folder)
            manager = f(folder / "manager", [program])
            try:
                report(n, crash_window(manager, starts))
            finally:
                manager.stop()

        attempt(name, run)
    return results


WORKLOADS: dict[str, Callable[[Path], object]] = {
    "logs": log_pipeline,
    "restart": restart_latency,
    "services": hundred_services,
    "crashloop": crash_loop,
}


def main() -> None:
    """Run every workload, or those named in ``DPLOYR_BENCH_ENGINE`` (comma-separated)."""
    chosen = os.environ.get("DPLOYR_BENCH_ENGINE", ",".join(WORKLOADS)).split(",")
    with tempfile.TemporaryDirectory(prefix="dployr-bench-engine-") as directory:
        root = Path(directory)
        try:
            for name in chosen:
                WORKLOADS[name](root / name)
        finally:
            left = collections.Counter("/".join(cwd.split("/")[:2]) for cwd in sweep(root))
            for where, count in sorted(left.items()):
                print(f"  ! {count} processes outlived their manager ({where}): killed")


if __name__ == "__main__":
    main()
