"""A cluster on this machine for the cluster benchmarks: one control plane, N agents.

The control plane is ``python -m dployr up`` on a data dir and a fixed port (an agent
keeps the URL it joined, so a restarted control plane must come back on the same one);
each agent is ``python -m dployr agent`` on a data dir of its own, joined with a token
from ``POST /api/v1/instances``. Everything is driven as a user would: the REST API,
and the CLI where a figure is about the CLI.

With ``DPLOYR_BENCH_PROFILE`` set, each run of the control plane is profiled (cProfile,
written beside its data dir when it stops; keep the folder with ``DPLOYR_BENCH_KEEP``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import psutil

from benchmarks.engine_peers import descendants, wait_for

PYTHON = sys.executable
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _terminate(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ControlPlane:
    """``dployr up`` on ``data_dir`` and ``port``, reached through its REST API."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        endpoint = data_dir / "daemon.json"
        endpoint.unlink(missing_ok=True)
        out = open(data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - kept by Popen
        self.started_at = time.monotonic()
        """Just before the process was spawned (``time.monotonic()``)."""
        profile: tuple[str, ...] = ()
        if os.environ.get("DPLOYR_BENCH_PROFILE"):  # each run's profile: plane.<time>.prof
            output = data_dir.with_suffix(f".{time.time():.0f}.prof")
            profile = ("-m", "cProfile", "-o", str(output))
        self.process = subprocess.Popen(
            [
                *(PYTHON, *profile, "-m", "dployr", "up", "--data-dir", str(data_dir)),
                *("--host", "127.0.0.1", "--port", str(port), "--service-host", "127.0.0.1"),
                "--shared-user",  # as root, a service user could not reach this interpreter
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        wait_for(
            lambda: endpoint.exists() or self.process.poll() is not None,
            START_TIMEOUT,
            "the control plane to start",
            interval=0.005,
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"dployr up exited with {self.process.returncode}")
        self.api_up_at = time.monotonic()
        self.token = (data_dir / "admin-token").read_text().strip()
        self.api = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def env(self) -> dict[str, str]:
        """The environment a user's CLI runs with to reach this control plane."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
        return clean | {"DPLOYR_HOME": str(self.data_dir)}

    def get(self, path: str, **query: Any) -> Any:
        reply = self.api.get(path, params=query)
        reply.raise_for_status()
        return reply.json()

    def post(self, path: str, body: object = None) -> Any:
        reply = self.api.post(path, json=body)
        if reply.is_error:
            raise RuntimeError(f"POST {path}: {reply.status_code} {reply.text}")
        return reply.json()

    def join_token(self, name: str) -> str:
        return str(self.post("/instances", {"name": name})["token"])

    def deploy(self, name: str, body: dict[str, Any]) -> Any:
        return self.post(f"/services/{name}/deploy", body)

    def services(self) -> list[dict[str, Any]]:
        return self.get("/services")  # type: ignore[no-any-return]

    def instances(self) -> list[dict[str, Any]]:
        return self.get("/instances")  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.api.close()
        _terminate(self.process)


class Agent:
    """``dployr agent`` on a data dir of its own (joined on its first start)."""

    def __init__(self, name: str, data_dir: Path, *args: str) -> None:
        self.name = name
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        out = open(data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - kept by Popen
        self.process = subprocess.Popen(
            [
                *(PYTHON, "-m", "dployr", "agent", "--data-dir", str(data_dir)),
                *("--service-host", "127.0.0.1", "--shared-user", *args),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")},
        )
        out.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        _terminate(self.process)


@attrs.define
class Cluster:
    """A control plane and its agents, all on this machine."""

    root: Path
    port: int = attrs.field(factory=free_port)
    plane: ControlPlane | None = None
    agents: list[Agent] = attrs.field(factory=list)

    def start_plane(self) -> ControlPlane:
        self.plane = ControlPlane(self.root / "plane", self.port)
        return self.plane

    def stop_plane(self) -> None:
        if self.plane is not None:
            self.plane.stop()
            self.plane = None

    def add_agents(self, count: int) -> None:
        """Join ``count`` agents (``a01``, ``a02``...) and wait until all are connected."""
        assert self.plane is not None
        start = len(self.agents)
        for number in range(start + 1, start + count + 1):
            name = f"a{number:02d}"
            token = self.plane.join_token(name)
            self.agents.append(
                Agent(name, self.root / name, "--join", self.plane.url, "--token", token)
            )
        self.wait_connected()

    def wait_connected(self, timeout: float = 120) -> None:
        assert self.plane is not None
        plane = self.plane
        wanted = {agent.name for agent in self.agents}
        wait_for(
            lambda: wanted <= connected(plane.instances()), timeout, "the agents", interval=0.1
        )

    def stop(self) -> None:
        """Stop the agents (their services with them), then the control plane."""
        for agent in self.agents:
            if agent.process.poll() is None:
                agent.process.send_signal(signal.SIGTERM)
        for agent in self.agents:
            _terminate(agent.process)
        self.stop_plane()


def connected(instances: list[dict[str, Any]]) -> set[str]:
    """The names of the connected instances in a ``GET /instances`` answer."""
    return {i["name"] for i in instances if i["state"] == "connected"}


@contextlib.contextmanager
def cluster(root: Path) -> Iterator[Cluster]:
    """A cluster with its control plane started; everything stopped at the end."""
    made = Cluster(root)
    try:
        made.start_plane()
        yield made
    finally:
        made.stop()


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder for a run, deleted after it; kept (and named) when
    ``DPLOYR_BENCH_KEEP`` is set, to read the control plane's and agents' logs after."""
    if os.environ.get("DPLOYR_BENCH_KEEP"):
        kept = Path(tempfile.mkdtemp(prefix=prefix))
        print(f"  (keeping {kept}: the control plane's log is plane.log, each agent's a01.log...)")
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def deploy_many(
    plane: ControlPlane, bodies: dict[str, dict[str, Any]], *, parallel: int = 8
) -> None:
    """Deploy every service (name -> deploy body), ``parallel`` requests at a time."""
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(plane.deploy, name, body) for name, body in bodies.items()]:
            future.result()


def wait_all_running(plane: ControlPlane, count: int, timeout: float = 600) -> None:
    """Until ``count`` services run and are known (not stale)."""

    def done() -> bool:
        services = plane.services()
        return len(services) >= count and all(known_running(s) for s in services)

    wait_for(done, timeout, f"{count} services to run", interval=0.5)


def known_running(service: dict[str, Any]) -> bool:
    """A service row that its instance has answered for (not stale) and that runs."""
    return service["status"] == "running" and not service.get("stale", False)


def service_pids(agents: list[Agent]) -> dict[int, str]:
    """Every process below the agents: pid -> its command line."""
    found = {}
    for agent in agents:
        for pid in descendants(agent.pid):
            with contextlib.suppress(OSError):
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return found


def sleepers_below(agents: list[Agent], argument: str) -> dict[int, int]:
    """The ``sleep <argument>`` processes below the agents: pid -> start time (ticks)."""
    wanted = f"sleep\0{argument}\0"
    found = {}
    for pid, cmdline in service_pids(agents).items():
        if cmdline == wanted:
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_bytes()
                found[pid] = int(stat[stat.rindex(b")") + 2 :].split()[19])
    return found


def idle_cpu(pid: int, seconds: float) -> float:
    """Percent of one core ``pid``'s threads ran over ``seconds`` (their ``schedstat``)."""

    def ran() -> int:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as file:
                total += int(file.read().split()[0])
        return total

    before = ran()
    time.sleep(seconds)
    return (ran() - before) / 1e9 / seconds * 100


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def load() -> str:
    """The machine's load averages, for the printed conditions of a run."""
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} (1 / 5 min)"


def others_cpu(run: Callable[[], Any]) -> tuple[Any, float]:
    """``run()``'s value, and the CPU % (of the whole machine) used meanwhile by processes
    that are not this one or below it: what the other users of the machine took."""
    me = psutil.Process()

    def ours() -> float:
        total = 0.0
        for process in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = process.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def busy() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system)

    started, busy_before, ours_before = time.monotonic(), busy(), ours()
    value = run()
    elapsed = time.monotonic() - started
    others = (busy() - busy_before) - (ours() - ours_before)
    return value, max(others, 0.0) / elapsed / (psutil.cpu_count() or 1) * 100


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def dump(path: Path, data: object) -> None:
    path.write_text(json.dumps(data))
