"""Proxy, feeds and zero-downtime deploys (issue 5): a real ``dployr up`` on loopback.

``python -m benchmarks proxy`` (or ``make bench BENCH=proxy``);
``DPLOYR_BENCH_PROXY=proxy,fanout,redeploys`` picks workloads. Services are deployed
through the REST API from git repositories holding the apps of
:mod:`benchmarks.proxy_apps`; ``wrk`` (Debian's ``apt-get install wrk``) and ``curl`` load
them.

1. **Proxy.** Requests/s and p99 latency through the service's public port (the daemon's
   proxy) against the app's private port (its ``$PORT``, read from
   ``/proc/<pid>/environ`` of the pid the API reports), with ``wrk -t1 -c16 -d10s``, with
   keep-alive and with a new connection per request (``-H 'Connection: close'``), for (a) a
   Quart app served by Hypercorn and (b) a minimal asyncio responder (the proxy's own
   ceiling). Direct and proxied runs alternate, ROUNDS each; the best of each is kept.
   Then bytes/s of a 100 MB download (``curl``, from the minimal responder, which sends it
   with ``sendfile``), through the proxy and direct. The daemon's CPU (psutil) is noted
   for each proxied run. Targets: (a) >= 95 % of direct, (b) >= 80 %, p99 added <= 2 ms.
2. **Fan-out.** A service printing 10,000 timestamped lines a second; SUBSCRIBERS
   WebSocket subscribers of its log feed (in CLIENT_PROCESSES processes of
   :mod:`benchmarks.proxy_raw_client`, lean raw-socket clients, for ``batch=1``; of
   :mod:`benchmarks.proxy_feed_client`, trio-websocket, for both modes) record receive
   time minus the line's timestamp for FANOUT_SECONDS after a warm-up: p99 delay (target
   <= 50 ms), lines delivered, gaps, and the daemon's CPU. Also with 1 and 10
   subscribers, and with none (the pump alone).
3. **Redeploys under load.** Two ``wrk`` runs hammer the public port of the Quart app
   (``health_check: /health``) — one with keep-alive, one with a new connection per
   request — while it is redeployed REDEPLOYS times, each after a new commit, waiting for
   each deployment to succeed (polling its record). Counted: non-2xx answers and socket
   errors (target 0).

The machine is shared: before each measurement the harness waits (up to QUIET_WAIT s) for
the 1-minute load average to fall to LOAD_LIMIT, and prints the load it started at.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import psutil

from benchmarks import proxy_ws_cost
from benchmarks.engine_peers import Dployr, sweep, wait_for
from benchmarks.proxy_apps import FAST_APP, LOGGER_APP, QUART_APP
from benchmarks.proxy_relays import NginxStream

CONNECTIONS = 16
DURATION = 10
ROUNDS = 3
DOWNLOADS = 5
SUBSCRIBERS = 100
CLIENT_PROCESSES = 4
FANOUT_WARMUP = 3.0
FANOUT_SECONDS = 10.0
REDEPLOYS = 10
LOAD_LIMIT = 1.5
QUIET_WAIT = 30.0
DEPLOY_TIMEOUT = 120.0

PYTHON = sys.executable
HYPERCORN = f"exec {PYTHON} -m hypercorn --bind 127.0.0.1:$PORT app:app"
HYPERCORN_FD = f"exec {PYTHON} -m hypercorn --bind fd://3 app:app"
FAST = f"exec {PYTHON} app.py"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Benchmark",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Benchmark",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


# -- the machine -------------------------------------------------------------------------


def load_average() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def quiet() -> float:
    """Wait (up to QUIET_WAIT s) for the 1-minute load to fall to LOAD_LIMIT; return it."""
    deadline = time.monotonic() + QUIET_WAIT
    while (load := load_average()) > LOAD_LIMIT and time.monotonic() < deadline:
        time.sleep(2)
    return load


def _our_cpu() -> float:
    """CPU seconds of this process and every process below it, reaped ones included."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _busy_cpu() -> float:
    """CPU seconds processes have used since boot (user and system time, as per process).

    Interrupt time is left out: loopback traffic is mostly handled there, and it is not
    charged to the process that caused it.
    """
    times = psutil.cpu_times()
    return times.user + times.nice + times.system


@attrs.frozen
class Conditions:
    """How busy the machine was around one measurement."""

    load: float
    """The 1-minute load average when it started."""
    others: float
    """CPU % (of one core) used by processes outside this benchmark while it ran."""

    def __str__(self) -> str:
        return f"load {self.load:.2f}, others {self.others:.0f} % CPU"


class Background:
    """Waits for a quiet machine, then notes what other processes use until ``stop()``."""

    def __init__(self) -> None:
        self.load = quiet()
        self.started = time.monotonic()
        self.busy = _busy_cpu()
        self.ours = _our_cpu()

    def stop(self) -> Conditions:
        elapsed = time.monotonic() - self.started
        others = (_busy_cpu() - self.busy) - (_our_cpu() - self.ours)
        return Conditions(self.load, max(others, 0.0) / elapsed * 100)


class CpuMeter:
    """CPU % (of one core) used by one process between its making and ``percent()``."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.started = time.monotonic()
        self.before = self._seconds()

    def _seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def seconds(self) -> float:
        """CPU seconds used since the meter was made."""
        return self._seconds() - self.before

    def percent(self) -> float:
        return self.seconds() / (time.monotonic() - self.started) * 100


# -- git repositories and the daemon ---------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
    )


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    """Write ``files`` into ``repo`` (made if new) and commit them."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def free_port() -> int:
    """A TCP port nothing listens on now (for a service's public port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def deploy(daemon: Dployr, name: str, body: dict[str, Any]) -> float:
    """Deploy ``name`` with ``body``; wait until the deployment succeeded; its seconds."""
    reply = daemon.api.post(f"/services/{name}/deploy", json=body)
    reply.raise_for_status()
    deployment = reply.json()["id"]

    def finished() -> dict[str, Any] | None:
        for record in daemon.api.get(f"/services/{name}/deployments").json():
            if record["id"] == deployment and record["finished_at"] is not None:
                return record  # type: ignore[no-any-return]
        return None

    # A benchmark's set-up, not a test: a bounded poll of the deployment's record.
    record = wait_for(finished, DEPLOY_TIMEOUT, f"deployment {deployment} of {name}", 0.05)
    if record["status"] != "succeeded":
        raise RuntimeError(f"deployment {deployment} of {name} failed: {record['error']}")
    return float(record["finished_at"] - record["created_at"])


def private_port(daemon: Dployr, name: str) -> tuple[int, int]:
    """The running release's pid and private port (its ``PORT``)."""
    pid = daemon.service(name)["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    port = next(int(item[5:]) for item in environ if item.startswith(b"PORT="))
    return pid, port


def wait_listening(port: int) -> None:
    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(accepts, 30, f"port {port}", 0.05)


# -- wrk ---------------------------------------------------------------------------------


@attrs.frozen
class WrkResult:
    """What one wrk run measured."""

    rate: float
    """Requests per second."""
    p99_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    conditions: Conditions | None = None

    @property
    def failed(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    def brief(self) -> str:
        return f"{self.rate:,.0f}/{self.p99_ms:.2f} ms ({self.conditions})"


def wrk_command(url: str, *, close: bool, connections: int, duration: float) -> list[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if close:
        command += ["-H", "Connection: close"]
    return [*command, url]


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(text: str) -> WrkResult:
    """The figures in wrk's report (``--latency``)."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    requests = re.search(r"(\d+) requests in", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", text)
    latency = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b", text)
    if rate is None or requests is None or p99 is None or latency is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        rate=float(rate.group(1)),
        p99_ms=_ms(*p99.groups()),
        max_ms=_ms(*latency.groups()),
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=(
            dict(
                zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
            )
            if errors
            else {}
        ),
    )


def wrk(url: str, *, close: bool) -> WrkResult:
    """One wrk run of DURATION s against ``url``, once the machine is quiet."""
    command = wrk_command(url, close=close, connections=CONNECTIONS, duration=DURATION)
    background = Background()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return attrs.evolve(parse_wrk(done.stdout), conditions=background.stop())


# -- 1. the proxy ----------------------------------------------------------------------

DIRECT = "direct to $PORT"
DPLOYR = "dployr proxy"
HANDOFF = "listen-fds handoff"
NGINX = "nginx stream"


@attrs.frozen
class Route:
    """One way to reach the app: its URL, and the relay process in the way (if any)."""

    url: str
    relay: int | None = None
    """The pid whose CPU is the relay's cost (the daemon for dployr's proxy)."""


@attrs.frozen
class App:
    """One app, and the ways to reach it."""

    label: str
    target: float
    """The share of the direct rate the proxy should keep."""
    paths: dict[str, Route]


def compare(app: App) -> None:
    """Alternate wrk runs over every path, both connection modes; print the figures.

    A relay's CPU per request (its CPU seconds over wrk's requests) is printed too: unlike
    the rates, it hardly moves with what else the machine is doing.
    """
    for close in (False, True):
        mode = "new connection per request" if close else "keep-alive"
        runs: dict[str, list[WrkResult]] = {path: [] for path in app.paths}
        costs: dict[str, list[float]] = {path: [] for path in app.paths}
        for _ in range(ROUNDS):
            for path, way in app.paths.items():
                meter = CpuMeter(way.relay) if way.relay is not None else None
                result = wrk(way.url, close=close)
                runs[path].append(result)
                if meter is not None:
                    costs[path].append(meter.seconds() / result.requests * 1e6)
        best = {path: max(results, key=lambda r: r.rate) for path, results in runs.items()}
        direct, proxy = best[DIRECT], best[DPLOYR]
        ratio = proxy.rate / direct.rate
        added = proxy.p99_ms - direct.p99_ms
        met = ratio >= app.target and added <= 2.0
        print(
            f"  {app.label}, {mode}: proxy {proxy.rate:,.0f} req/s p99 {proxy.p99_ms:.2f} ms vs"
            f" direct {direct.rate:,.0f} req/s p99 {direct.p99_ms:.2f} ms: {ratio:.0%} of"
            f" direct, p99 {added:+.2f} ms (target >= {app.target:.0%}, <= +2 ms:"
            f" {'met' if met else 'NOT met'})"
        )
        for path, results in runs.items():
            ratio = best[path].rate / direct.rate
            cost = f"{statistics.median(costs[path]):4.0f} µs" if costs[path] else "    -  "
            print(
                f"    {path:<20} best {best[path].rate:>8,.0f} req/s ({ratio:>4.0%}) "
                f"p99 {best[path].p99_ms:6.2f} ms, relay CPU {cost} a request; runs: "
                + "; ".join(result.brief() for result in results)
            )
            for result in results:
                if result.failed:
                    print(f"      ! {result.failed} failed requests: {result}")


def download(url: str) -> tuple[float, Conditions]:
    """Bytes/s of one 100 MiB download of ``url`` by curl (to /dev/null)."""
    background = Background()
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}", url],
        capture_output=True,
        text=True,
        check=True,
    )
    conditions = background.stop()
    size, speed = done.stdout.split()
    if int(float(size)) != 100 * 2**20:
        raise RuntimeError(f"downloaded {size} bytes from {url}, not 100 MiB")
    return float(speed), conditions


def downloads(app: App) -> None:
    """DOWNLOADS downloads of 100 MiB over every path, alternating; print the medians.

    The rates spread widely from run to run (by where the scheduler puts curl, the app and
    the relay on two cores), hence medians; the relay's CPU per GiB moves much less.
    """
    speeds: dict[str, list[tuple[float, Conditions]]] = {path: [] for path in app.paths}
    costs: dict[str, list[float]] = {path: [] for path in app.paths}
    for _ in range(DOWNLOADS):
        for path, way in app.paths.items():
            meter = CpuMeter(way.relay) if way.relay is not None else None
            speeds[path].append(download(f"{way.url}big"))
            if meter is not None:
                costs[path].append(meter.seconds() / (100 / 1024))
    median = {path: statistics.median(speed for speed, _ in runs) for path, runs in speeds.items()}
    direct, proxy = median[DIRECT], median[DPLOYR]
    print(
        f"  100 MiB download (curl, from the minimal responder's sendfile, median of"
        f" {DOWNLOADS}): proxy {proxy / 1e6:,.0f} MB/s vs direct {direct / 1e6:,.0f} MB/s:"
        f" {proxy / direct:.0%} of direct"
    )
    for path, runs in speeds.items():
        cost = f"{statistics.median(costs[path]):.2f} s" if costs[path] else "  -   "
        share = median[path] / direct
        print(
            f"    {path:<20} median {median[path] / 1e6:>6,.0f} MB/s ({share:>4.0%}),"
            f" relay CPU {cost} a GiB; runs: "
            + "; ".join(f"{speed / 1e6:,.0f} ({conditions})" for speed, conditions in runs)
        )


class References:
    """The reference relay (:class:`benchmarks.proxy_relays.NginxStream`) in front of
    private ports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stops: list[Callable[[], None]] = []

    def nginx(self, target: int) -> Route | None:
        port = free_port()
        try:
            nginx = NginxStream(self.folder / f"nginx-{port}", port, target)
        except FileNotFoundError as missing:
            print(f"  (no nginx reference: {missing})")
            return None
        self.stops.append(nginx.stop)
        wait_listening(port)
        worker = psutil.Process(nginx.process.pid).children()[0].pid
        return Route(f"http://127.0.0.1:{port}/", worker)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


def deploy_pair(
    daemon: Dployr, name: str, repo: Path, *, run_cmd: str, fd_cmd: str, health: str | None
) -> tuple[str, str, int]:
    """Deploy ``name`` behind the proxy and ``name-fd`` with listen-fds.

    Returns the URLs of the public ports of both, and the first one's private port.
    """
    urls = []
    for service, command, listen_fds in ((name, run_cmd, False), (f"{name}-fd", fd_cmd, True)):
        public = free_port()
        body: dict[str, Any] = {"remote": {"url": str(repo)}, "run_cmd": command, "port": public}
        if health is not None:
            body["health_check"] = health
        if listen_fds:
            body["listen_fds"] = True
        deploy(daemon, service, body)
        wait_listening(public)
        urls.append(f"http://127.0.0.1:{public}")
    _, private = private_port(daemon, name)
    wait_listening(private)
    return urls[0], urls[1], private


def proxy_workload(root: Path) -> None:
    print("proxy: through the service's public port vs straight to the app's private port")
    tool = " ".join(wrk_command("URL", close=False, connections=CONNECTIONS, duration=DURATION))
    print(
        f"  ({tool}; every path {ROUNDS} times, alternating; best of each. Besides dployr's"
        " proxy: the same app deployed with listen-fds, and nginx's stream module in front"
        " of its private port: benchmarks/proxy_relays.py)"
    )
    daemon = Dployr(root / "data")
    references = References(root)
    try:
        commit(root / "quart", {"app.py": QUART_APP}, "Quart app")
        commit(root / "fast", {"app.py": FAST_APP, ".gitignore": "big.bin*\n"}, "responder")
        apps = []
        for label, name, run_cmd, fd_cmd, health, target in (
            ("(a) Quart + Hypercorn", "quart", HYPERCORN, HYPERCORN_FD, "/health", 0.95),
            ("(b) minimal asyncio responder", "fast", FAST, FAST, None, 0.80),
        ):
            proxied, handed, private = deploy_pair(
                daemon, name, root / name, run_cmd=run_cmd, fd_cmd=fd_cmd, health=health
            )
            paths = {
                DIRECT: Route(f"http://127.0.0.1:{private}/"),
                DPLOYR: Route(f"{proxied}/", daemon.pid),
                HANDOFF: Route(f"{handed}/"),
            }
            nginx = references.nginx(private)
            if nginx is not None:
                paths[NGINX] = nginx
            apps.append(App(label, target, paths))
        for app in apps:
            compare(app)
        downloads(apps[1])
    finally:
        references.stop()
        daemon.stop()


# -- 2. fan-out --------------------------------------------------------------------------


def percentile(histogram: collections.Counter[int], fraction: float) -> float:
    """The ``fraction`` quantile (ms) of a histogram of 0.1 ms buckets."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket / 10
    return max(histogram) / 10


def subscribe(
    url: str, subscribers: int, daemon_pid: int, module: str = "proxy_feed_client"
) -> dict[str, Any]:
    """SUBSCRIBERS feed clients in up to CLIENT_PROCESSES processes; their merged figures.

    ``module``: the module of :mod:`benchmarks` that subscribes (trio-websocket, or the
    raw-socket :mod:`benchmarks.proxy_raw_client`).
    """
    processes = min(CLIENT_PROCESSES, subscribers)
    shares = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    background = Background()
    clients = [
        subprocess.Popen(
            [
                PYTHON,
                "-m",
                f"benchmarks.{module}",
                url,
                str(share),
                str(FANOUT_WARMUP),
                str(FANOUT_SECONDS),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for share in shares
    ]
    for client in clients:
        assert client.stdout is not None
        if client.stdout.readline().strip() != "connected":
            raise RuntimeError("a feed client did not connect")
    time.sleep(FANOUT_WARMUP)
    meter = CpuMeter(daemon_pid)
    rss = []
    for _ in range(int(FANOUT_SECONDS)):
        time.sleep(1)
        rss.append(psutil.Process(daemon_pid).memory_info().rss)
    daemon_cpu = meter.percent()
    histogram: collections.Counter[int] = collections.Counter()
    merged = {"lines": 0, "gaps": 0, "skipped": 0, "cpu_seconds": 0.0}
    for client in clients:
        out, _ = client.communicate(timeout=120)
        report = json.loads(out.strip().splitlines()[-1])
        for key in merged:
            merged[key] += report[key]
        histogram.update({int(k): v for k, v in report["delays"].items()})
    return {
        **merged,
        "conditions": background.stop(),
        "daemon_cpu": daemon_cpu,
        "daemon_rss": max(rss),
        "p50": percentile(histogram, 0.50),
        "p99": percentile(histogram, 0.99),
        "max": max(histogram) / 10 if histogram else float("nan"),
    }


def fanout_workload(root: Path) -> None:
    print("fan-out: log feed subscribers while a service logs 10,000 lines/s")
    daemon = Dployr(root / "data")
    try:
        commit(root / "logger", {"app.py": LOGGER_APP}, "logger")
        deploy(
            daemon,
            "logger",
            {"remote": {"url": str(root / "logger")}, "run_cmd": f"exec {PYTHON} app.py"},
        )
        token = (root / "data" / "admin-token").read_text().strip()
        http = json.loads((root / "data" / "daemon.json").read_text())["url"]
        ws = http.replace("http://", "ws://")
        url = f"{ws}/api/v1/services/logger/logs/stream?token={token}"
        time.sleep(FANOUT_WARMUP)
        background = Background()
        meter = CpuMeter(daemon.pid)
        time.sleep(FANOUT_SECONDS)
        print(
            f"  no subscriber (the log pump alone): daemon CPU {meter.percent():.0f} % "
            f"({background.stop()})"
        )
        expected = 10_000 * FANOUT_SECONDS
        raw, websocket = "proxy_raw_client", "proxy_feed_client"
        runs = [(n, "batch=1", f"{url}&batch=1", raw) for n in (1, 10, SUBSCRIBERS)]
        runs.append((SUBSCRIBERS, "batch=1, trio-websocket clients", f"{url}&batch=1", websocket))
        per_line = f"{url}&batch=0"
        runs += [(n, "a message per line, trio-websocket", per_line, websocket) for n in (1, 10)]
        for count, mode, feed, client in runs:
            figures = subscribe(feed, count, daemon.pid, client)
            share = figures["lines"] / (expected * count)
            print(
                f"  {count} subscribers, {mode}: delay p50 {figures['p50']:,.1f} ms, "
                f"p99 {figures['p99']:,.1f} ms, max {figures['max']:,.1f} ms"
                + (" (target p99 <= 50 ms)" if count == SUBSCRIBERS else "")
                + f"; {figures['lines']:,} lines delivered in {FANOUT_SECONDS:g} s "
                f"({share:.0%} of {expected * count:,.0f}), {figures['gaps']:,} gaps "
                f"skipping {figures['skipped']:,} lines; daemon CPU "
                f"{figures['daemon_cpu']:.0f} %, RSS {figures['daemon_rss'] / 2**20:.0f} MB; "
                f"clients' CPU {figures['cpu_seconds'] / FANOUT_SECONDS * 100:.0f} % "
                f"({figures['conditions']})"
            )
    finally:
        daemon.stop()
    load = quiet()
    costs = proxy_ws_cost.measure()
    print(
        "  the daemon's WebSocket stack alone (QuartTrio on Hypercorn, benchmarks/"
        f"proxy_ws_cost.py; load {load:.2f}): CPU per line sent to one subscriber:"
    )
    rate = 10_000 * SUBSCRIBERS
    for cost in costs:
        lines = int(cost["lines"])
        per_line = float(cost["per_message_us"]) / lines
        encoded = "encoded once, sent as is" if cost["shared"] else "encoded per send"
        print(
            f"    {lines:>3} lines a message, {encoded}: {per_line:5.2f} µs a line "
            f"({float(cost['per_message_us']):.0f} µs a message) -> {SUBSCRIBERS} subscribers"
            f" x 10,000 lines/s need {rate * per_line / 1e6:.2f} cores"
        )


# -- 3. redeploys under load -----------------------------------------------------------


def answer(url: str) -> str | None:
    """What ``url`` answers now, on a new connection (None if it fails)."""
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return None


class VersionWatch:
    """Notes when new connections to a URL first get each answer (polled every 20 ms)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            text = answer(self.url)
            if text is not None:
                self.first_seen.setdefault(text, time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def redeploys(daemon: Dployr, repo: Path, name: str, body: dict[str, Any], label: str) -> None:
    """REDEPLOYS redeploys of ``name`` while two wrk runs load its public port.

    Each waits for its deployment record to say it succeeded and for new connections to
    reach the new version. Also noted: when new connections first reached it, counted from
    the POST (a watcher polls with a new connection every 20 ms).
    """
    deploy(daemon, name, body)
    url = f"http://127.0.0.1:{body['port']}/"
    wait_for(lambda: answer(url) == "hello v1", 60, "the first release", 0.05)
    background = Background()
    loaders = {
        mode: subprocess.Popen(
            wrk_command(url, close=close, connections=4, duration=3600),
            stdout=subprocess.PIPE,
            text=True,
        )
        for mode, close in (("keep-alive", False), ("new connection per request", True))
    }
    watch = VersionWatch(url)
    deploys, switches = [], []
    started = time.monotonic()
    try:
        time.sleep(1)
        for version in range(2, REDEPLOYS + 2):
            commit(repo, {"VERSION": f"v{version}\n"}, f"v{version}")
            posted = time.monotonic()
            deploys.append(deploy(daemon, name, body))
            text = f"hello v{version}"
            wait_for(lambda: text in watch.first_seen, 60, text, 0.02)  # noqa: B023
            switches.append(watch.first_seen[text] - posted)
        time.sleep(1)
    finally:
        watch.stop()
        for loader in loaders.values():
            loader.send_signal(signal.SIGINT)  # wrk prints its figures on SIGINT
    elapsed = time.monotonic() - started
    results = {}
    for mode, loader in loaders.items():
        out, _ = loader.communicate(timeout=60)
        results[mode] = parse_wrk(out)
    print(
        f"  {label}: {REDEPLOYS} redeploys in {elapsed:.0f} s; POST to new connections"
        f" reaching the new release {min(switches):.1f} to {max(switches):.1f} s (median"
        f" {statistics.median(switches):.1f}); POST to the deployment's end {min(deploys):.1f}"
        f" to {max(deploys):.1f} s ({background.stop()})"
    )
    for mode, result in results.items():
        errors = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items()) or "none"
        print(
            f"    wrk -c4, {mode}: {result.requests:,} requests, {result.non_2xx} non-2xx, "
            f"socket errors: {errors}; p99 {result.p99_ms:.1f} ms, max {result.max_ms:,.0f} ms"
            f" (target 0 failed: {'met' if not result.failed else 'NOT met'})"
        )


def redeploy_workload(root: Path) -> None:
    print(f"redeploys: {REDEPLOYS} redeploys of the Quart app while wrk loads its public port")
    daemon = Dployr(root / "data")
    try:
        for name, run_cmd, label in (
            ("quart", HYPERCORN, "through the proxy"),
            ("quart-fd", HYPERCORN_FD, "with listen-fds (Hypercorn --bind fd://3)"),
        ):
            repo = root / name
            commit(repo, {"app.py": QUART_APP, "VERSION": "v1\n"}, "v1")
            body: dict[str, Any] = {
                "remote": {"url": str(repo)},
                "run_cmd": run_cmd,
                "port": free_port(),
                "health_check": "/health",
            }
            if run_cmd == HYPERCORN_FD:
                body["listen_fds"] = True
            redeploys(daemon, repo, name, body, label)
    finally:
        daemon.stop()


WORKLOADS: dict[str, Callable[[Path], None]] = {
    "proxy": proxy_workload,
    "fanout": fanout_workload,
    "redeploys": redeploy_workload,
}


def main() -> None:
    """Run every workload, or those named in ``DPLOYR_BENCH_PROXY`` (comma-separated)."""
    if shutil.which("wrk") is None or shutil.which("curl") is None:
        raise SystemExit("the proxy benchmark needs wrk and curl (apt-get install wrk curl)")
    chosen = os.environ.get("DPLOYR_BENCH_PROXY", ",".join(WORKLOADS)).split(",")
    with tempfile.TemporaryDirectory(prefix="dployr-bench-proxy-") as directory:
        root = Path(directory)
        try:
            for name in chosen:
                (root / name).mkdir()
                WORKLOADS[name](root / name)
        finally:
            left = sweep(root)
            if left:
                print(f"  ! {len(left)} processes outlived the daemon: killed")


if __name__ == "__main__":
    main()
