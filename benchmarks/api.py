"""The daemon, API and CLI (issue 4): ``GET /api/v1/services`` with 100 services, and
the wall time of ``dployr service status`` from the shell.

A real ``dployr up`` on a temporary data dir, 100 workers (``sleep``) deployed from a
local folder, then:

* the list endpoint under load from a local client: ``wrk`` when it is installed (Debian's
  ``apt-get install wrk``), else a Python client on trio with the same connection count;
* the same endpoint served by the gateway alone, over an instance handle that answers
  at once with 100 services: what the HTTP stack (Hypercorn, Quart, auth, JSON) allows,
  apart from the cost of building the list in the engine;
* ``dployr service status`` as a shell runs it: ``hyperfine`` when installed, else
  repeated runs timed here.

Targets: ≥ 2,000 requests/s with p99 ≤ 20 ms, and ≤ 300 ms per ``service status``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from dployr.gateway.server import Gateway
from dployr.models import Health, ServiceStatus
from dployr.protocol.messages import ServiceInfo
from dployr.store.access_store import AccessStore
from dployr.store.store import Store

SERVICES = 100
CONNECTIONS = 16
DURATION = 10
STATUS_RUNS = 30


async def start_daemon(data: Path) -> tuple[trio.Process, str]:
    """``dployr up`` on ``data``; the process and its URL once it is up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "dployr",
            "up",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--service-host",
            "127.0.0.1",
            "--shared-user",  # as root, a service user could not reach this interpreter
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(30):
        while b"\n" not in seen:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"dployr up exited: {seen!r}")
            seen += chunk
    url = seen.decode().split(" is up: ", 1)[1].split()[0]
    return process, url


async def deploy_workers(http: httpx.AsyncClient, folder: Path) -> None:
    """Deploy SERVICES sleeping workers and wait until every one runs."""
    body = {"remote": {"url": str(folder)}, "run_cmd": "exec sleep 3600"}
    limiter = trio.CapacityLimiter(8)

    async def one(index: int) -> None:
        async with limiter:
            response = await http.post(f"/services/w{index:03d}/deploy", json=body)
            response.raise_for_status()

    async with trio.open_nursery() as nursery:
        for index in range(SERVICES):
            nursery.start_soon(one, index)
    with trio.fail_after(120):
        while True:  # a benchmark set-up, not a test: polling the list is fine here
            services = (await http.get("/services")).json()
            running = sum(s["status"] == "running" for s in services)
            if running == SERVICES:
                return
            await trio.sleep(0.2)


class InstantHandle:
    """An instance handle whose list of services is ready-made: the gateway's own cost."""

    instance_name = "local"
    generation = 0  # nothing ever changes: the gateway may reuse its encoded answer

    def __init__(self) -> None:
        now = time.time()
        self.services = tuple(
            ServiceInfo(
                name=f"w{i:03d}",
                instance="local",
                status=ServiceStatus.RUNNING,
                health=Health.UNKNOWN,
                pid=10_000 + i,
                port=None,
                restarts=0,
                deployment=i,
                description="",
                deploying=None,
                since=now,
                message="",
                created_at=now,
                last_deploy_at=now,
            )
            for i in range(SERVICES)
        )

    async def request(self, query: object) -> object:
        return self.services


async def gateway_alone() -> tuple[float, float, str]:
    """Requests/s and p99 of ``GET /api/v1/services`` from the gateway over InstantHandle."""
    with tempfile.TemporaryDirectory() as data, Store.open(Path(data) / "dployr.db") as store:
        token = store.create_token("benchmark")  # the gateway checks tokens in the store
        gateway = Gateway(InstantHandle(), AccessStore(store), "127.0.0.1", 0)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            url = await nursery.start(gateway.run, None)
            result = await load(url, token)
            nursery.cancel_scope.cancel()
    return result


async def load(url: str, token: str) -> tuple[float, float, str]:
    """Requests/s, p99 (ms) and the tool, for ``GET /api/v1/services`` on ``url``."""
    if shutil.which("wrk"):
        rate, p99 = await trio.to_thread.run_sync(with_wrk, url, token)
        return rate, p99, f"wrk -t2 -c{CONNECTIONS} -d{DURATION}s"
    rate, p99 = await with_python(url, token)
    return rate, p99, f"Python client, {CONNECTIONS} connections, {DURATION} s"


def with_wrk(url: str, token: str) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) measured by wrk."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    done = subprocess.run(
        [
            wrk,
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{DURATION}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            f"{url}/api/v1/services",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", done.stdout).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if non_2xx:
        raise RuntimeError(f"wrk saw {non_2xx.group(1)} failed responses")
    return rate, p99


async def with_python(url: str, token: str) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) from a Python client with CONNECTIONS connections."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:
        deadline = time.perf_counter() + DURATION

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await http.get("/api/v1/services")
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(CONNECTIONS):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(len(latencies) * 0.99)] * 1000


def status_wall_time(env: dict[str, str]) -> tuple[float, float, str]:
    """Median and min wall time (ms) of ``dployr service status w000`` and the tool used."""
    dployr = str(Path(sys.executable).with_name("dployr"))
    command = [dployr, "service", "status", "w000"]
    hyperfine = shutil.which("hyperfine")
    if hyperfine is not None:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [
                    hyperfine,
                    "-N",
                    "-w",
                    "3",
                    "-r",
                    str(STATUS_RUNS),
                    "--export-json",
                    out.name,
                    " ".join(command),
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            times = json.loads(Path(out.name).read_text())["results"][0]["times"]
        tool = "hyperfine"
    else:
        times = []
        for _ in range(STATUS_RUNS):
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        tool = "repeated runs"
    return statistics.median(times) * 1000, min(times) * 1000, tool


async def run() -> None:
    with tempfile.TemporaryDirectory(prefix="dployr-bench-") as tmp:
        data, folder = Path(tmp) / "data", Path(tmp) / "worker"
        folder.mkdir()
        (folder / "README").write_text("a worker that sleeps\n")
        process, url = await start_daemon(data)
        try:
            token = (data / "admin-token").read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                base_url=url + "/api/v1", headers=headers, timeout=60
            ) as http:
                started = time.perf_counter()
                await deploy_workers(http, folder)
                print(
                    f"  {SERVICES} workers deployed and running in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                size = len((await http.get("/services")).content)
            rate, p99, tool = await load(url, token)
            print(
                f"  GET /api/v1/services ({SERVICES} services, {size:,} bytes), {tool}: "
                f"{rate:,.0f} requests/s, p99 {p99:.1f} ms "
                f"(target >= 2,000 req/s, p99 <= 20 ms)"
            )
            rate, p99, tool = await gateway_alone()
            print(
                f"  the same from the gateway alone (a handle that answers at once), {tool}: "
                f"{rate:,.0f} requests/s, p99 {p99:.1f} ms"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
            env["DPLOYR_HOME"] = str(data)
            median, fastest, how = await trio.to_thread.run_sync(status_wall_time, env)
            print(
                f"  dployr service status ({how}, {STATUS_RUNS} runs): median {median:.0f} ms,"
                f" min {fastest:.0f} ms (target <= 300 ms)"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(120):
                await process.wait()


def main() -> None:
    """Run the benchmark and print its figures."""
    print("daemon, API and CLI (issue 4):")
    trio.run(run)


if __name__ == "__main__":
    main()
