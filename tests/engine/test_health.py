"""Watchdog, zero-downtime deploys and restarts, rollback: with real apps and sockets."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from dployr.engine.os import ports
from dployr.models import (
    DeploymentStatus,
    Health,
    HealthKind,
    HealthOptions,
    RestartPolicy,
    ServiceSettings,
    ServiceStatus,
    Source,
)
from dployr.protocol.errors import Error
from dployr.protocol.events import Change, HealthChanged
from dployr.protocol.messages import ListDeployments, ReadLogs, Restart, Rollback
from tests.helpers import PYTHON, commit, make_repo, web_repo

from .conftest import QUICK_START, Engine, start_engine, started_children, web_settings

pytestmark = pytest.mark.slow

FAST = HealthOptions(interval=0.1, timeout=1.0, failures=2, successes=1)


def checked(repo: Path, port: int, **options: object) -> ServiceSettings:
    """The web app with an HTTP health check on /health, probed every 0.1 s."""
    return web_settings(repo, port, health_check="/health", health=attrs.evolve(FAST, **options))


async def test_health_goes_degraded_and_back(engine: Engine, tmp_path: Path) -> None:
    port = ports.allocate()
    deployment = await engine.deploy("web", checked(web_repo(tmp_path / "repo"), port))
    await engine.wait_info("web", lambda info: info.health is Health.HEALTHY)
    release = engine.data_dir / "services" / "web" / "releases" / str(deployment)
    seen: list[Change] = []
    (release / "UNHEALTHY").touch()
    info = await engine.wait_info("web", lambda info: info.health is Health.DEGRADED, seen)
    assert info.status is ServiceStatus.RUNNING  # running and degraded
    assert info.health is Health.DEGRADED
    (release / "UNHEALTHY").unlink()
    await engine.wait_info("web", lambda info: info.health is Health.HEALTHY, seen)
    changes = [(c.previous, c.health) for c in seen if isinstance(c, HealthChanged)]
    assert changes == [(Health.HEALTHY, Health.DEGRADED), (Health.DEGRADED, Health.HEALTHY)]
    system = await engine.handle.request(ReadLogs("web", tail=20, streams=frozenset({"system"})))
    lines = [line.line for line in system.lines]
    assert "health: degraded after 2 failed checks (GET /health: 503)" in lines
    assert lines[-1] == "health: healthy (GET /health: 200)"


@pytest.mark.parametrize("kind", [HealthKind.TCP, HealthKind.COMMAND])
async def test_tcp_and_command_checks(engine: Engine, tmp_path: Path, kind: HealthKind) -> None:
    options = attrs.evolve(FAST, kind=kind, command="test ! -e UNHEALTHY")
    settings = web_settings(web_repo(tmp_path / "repo"), ports.allocate(), health=options)
    deployment = await engine.deploy("web", settings)
    await engine.wait_info("web", lambda info: info.health is Health.HEALTHY)
    if kind is HealthKind.COMMAND:
        release = engine.data_dir / "services" / "web" / "releases" / str(deployment)
        (release / "UNHEALTHY").touch()
        await engine.wait_info("web", lambda info: info.health is Health.DEGRADED)


async def test_restart_after_failures_restarts_the_release(engine: Engine, tmp_path: Path) -> None:
    port = ports.allocate()
    settings = checked(web_repo(tmp_path / "repo"), port, restart_after=3, failures=2)
    settings = attrs.evolve(settings, restart=RestartPolicy(min_uptime=0.5))
    deployment = await engine.deploy("web", settings)
    first = (await engine.status("web")).pid
    release = engine.data_dir / "services" / "web" / "releases" / str(deployment)
    # Only a restart from now on counts (a slow start may have had one during the deploy).
    mark = (await engine.handle.request(ReadLogs("web", tail=0))).last_cursor
    (release / "UNHEALTHY").touch()
    await engine.wait_log("web", "restarting: 3 health checks failed in a row", after=mark)
    (release / "UNHEALTHY").unlink()
    # The new process counts as running once it has stayed up its minimum uptime.
    info = await engine.wait_info(
        "web", lambda info: info.status is ServiceStatus.RUNNING and info.pid != first
    )
    assert info.restarts >= 1


async def test_a_webhook_receives_each_health_change(engine: Engine, tmp_path: Path) -> None:
    received: list[dict[str, object]] = []
    arrived = trio.Event()

    async def receiver(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
        received.append(json.loads(body))
        await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()
        arrived.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, receiver, 0, host="127.0.0.1")
        )
        hook = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hook"
        settings = checked(web_repo(tmp_path / "repo"), ports.allocate(), webhook=hook)
        await engine.deploy("web", settings)
        with trio.fail_after(30):
            await arrived.wait()
        nursery.cancel_scope.cancel()
    assert received[0]["event"] == "health"
    assert received[0]["service"] == "web"
    assert received[0]["instance"] == "local"
    assert received[0]["health"] == "healthy"
    assert set(received[0]) == {"event", "service", "instance", "health", "timestamp", "message"}


async def test_a_deploy_that_never_turns_healthy_fails_and_the_old_release_keeps_serving(
    tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    instance, _ = start_engine(tmp_path / "data", ready_timeout=2.0)
    handle = await nursery.start(instance.run)
    engine = Engine(instance, handle, tmp_path / "data")
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    first = await engine.deploy("web", checked(repo, port))
    pid = (await engine.status("web")).pid
    commit(repo, {"UNHEALTHY": "", "VERSION": "v2\n"})
    second = await engine.deploy("web", checked(repo, port))
    record = instance.store.get_deployment("web", second)
    assert record is not None
    assert record.status is DeploymentStatus.FAILED
    assert record.error == (
        "the new release did not pass its health check within 2 s (GET /health: 503)"
    )
    info = await engine.status("web")
    assert (info.deployment, info.pid, info.status) == (first, pid, ServiceStatus.RUNNING)
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == f"hello v1 {first}"
    assert engine.pids("web") == [pid]  # the candidate is gone
    nursery.cancel_scope.cancel()


async def test_no_request_fails_during_redeploys_and_restarts(
    engine: Engine, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    await engine.deploy("web", checked(repo, port))
    url = f"http://127.0.0.1:{port}/"
    ok = 0
    failures: list[str] = []
    done = False

    async def keep_alive_client() -> None:
        nonlocal ok
        async with httpx.AsyncClient(timeout=10) as client:
            while not done:
                try:
                    response = await client.get(url)
                    assert response.status_code == 200, response.status_code
                    ok += 1
                except (httpx.HTTPError, AssertionError) as error:
                    failures.append(f"keep-alive: {error!r}")

    async def new_connection_client() -> None:
        nonlocal ok
        while not done:
            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await client.get(url, headers={"Connection": "close"})
                    assert response.status_code == 200, response.status_code
                    ok += 1
            except (httpx.HTTPError, AssertionError) as error:
                failures.append(f"new connection: {error!r}")

    async def slow_requests() -> None:
        nonlocal ok
        async with httpx.AsyncClient(timeout=10) as client:
            while not done:
                try:
                    response = await client.get(url + "slow")
                    assert response.status_code == 200
                    ok += 1
                except (httpx.HTTPError, AssertionError) as error:
                    failures.append(f"in flight: {error!r}")

    async with trio.open_nursery() as clients:
        clients.start_soon(keep_alive_client)
        clients.start_soon(new_connection_client)
        clients.start_soon(slow_requests)
        for version in range(2, 12):
            commit(repo, {"VERSION": f"v{version}\n"})
            deployment = await engine.deploy("web", checked(repo, port))
            assert (await engine.status("web")).deployment == deployment
        for _ in range(10):
            before = (await engine.status("web")).pid
            info = await engine.handle.request(Restart("web"))
            assert info.pid != before
        done = True
    assert failures == []
    assert ok > 100


async def test_rollback_switches_to_a_kept_release_without_rebuilding(
    engine: Engine, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = ports.allocate()
    first = await engine.deploy(
        "web",
        checked(
            repo,
            port,
        ),
    )
    commit(repo, {"VERSION": "v2\n"})
    second = await engine.deploy(
        "web",
        checked(
            repo,
            port,
        ),
    )
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == f"hello v2 {second}"

    async def rollback(target: int | None) -> int:
        deployment = await engine.handle.request(Rollback("web", target))
        assert await engine.wait_deployment("web", deployment.id) is DeploymentStatus.SUCCEEDED
        return deployment.id

    # A rollback is a deployment of its own: the third, running the first's release.
    third = await rollback(None)
    assert third == 3
    info = await engine.status("web")
    assert info.deployment == third
    # The app sees its own deployment number; the code is the first's, not rebuilt.
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == f"hello v1 {third}"
    page = await engine.handle.request(ReadLogs("web", tail=20, streams=frozenset({"system"})))
    lines = [line.line for line in page.lines]
    assert "rollback 3 started: back to deployment 1" in lines
    assert not any("building" in line for line in lines if "rollback" in line)
    records = await engine.handle.request(ListDeployments("web"))
    assert [(d.id, d.rollback_of, d.folder, d.status) for d in records] == [
        (3, 1, 1, DeploymentStatus.SUCCEEDED),
        (2, None, 2, DeploymentStatus.SUCCEEDED),
        (1, None, 1, DeploymentStatus.SUCCEEDED),
    ]
    # Rollback again, with no number, undoes the rollback: back to what ran before it.
    assert await rollback(None) == 4
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == "hello v2 4"
    with pytest.raises(Error, match="deployment 4 is already the active one") as refused:
        await engine.handle.request(Rollback("web", 4))
    assert refused.value.code == "conflict"
    with pytest.raises(Error, match="is not a kept successful release") as refused:
        await engine.handle.request(Rollback("web", 999))
    assert refused.value.code == "conflict"
    assert await rollback(first) == 5
    assert (await http.get(f"http://127.0.0.1:{port}/")).text == "hello v1 5"


async def test_a_worker_restart_stops_then_starts(engine: Engine, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"w.py": "import time\ntime.sleep(1e6)\n"})
    await engine.deploy(
        "worker",
        ServiceSettings(source=Source(str(repo)), run_cmd=f"{PYTHON} w.py", restart=QUICK_START),
    )
    before = (await engine.status("worker")).pid
    info = await engine.handle.request(Restart("worker"))
    assert info.status is ServiceStatus.RUNNING
    assert info.pid not in (None, before)


SOCKET_APP = '''\
"""Serves on the listening socket its parent hands over as fd 3 (LISTEN_FDS=1)."""
import http.server, os, signal, socket, threading

assert os.environ["LISTEN_FDS"] == "1"
VERSION = open("VERSION").read().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"fd {VERSION} {os.getpid()}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight


server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=3)
server.server_address = server.socket.getsockname()
# SIGTERM: stop accepting (the next release takes the queue), finish what is in flight.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("serving on the handed-over socket", flush=True)
server.serve_forever()
server.server_close()
'''


async def test_a_handed_over_socket_serves_without_a_proxy_and_restarts_without_loss(
    engine: Engine, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": SOCKET_APP, "VERSION": "v1\n"})
    port = ports.allocate()
    settings = ServiceSettings(
        source=Source(str(repo)),
        run_cmd=f"{PYTHON} app.py",
        port=port,
        listen_fds=True,
        restart=QUICK_START,  # each of the four starts waits this long, under the hammer
    )
    with engine.handle.subscribe_supervision() as events:
        await engine.deploy("fd", settings)
        started = await started_children(events)
    assert "process" in started
    assert not [c for c in started if c.startswith("proxy")]  # nothing between clients and app
    url = f"http://127.0.0.1:{port}/"
    async with httpx.AsyncClient(timeout=10) as client:
        first = (await client.get(url)).text
        assert first.startswith("fd v1 ")
        failures: list[str] = []
        answered: set[str] = set()
        done = False

        async def hammer() -> None:
            while not done:
                try:
                    response = await client.get(url, headers={"Connection": "close"})
                    answered.add(response.text.split()[-1])
                except httpx.HTTPError as error:
                    failures.append(repr(error))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hammer)
            for _ in range(3):
                await engine.handle.request(Restart("fd"))
            done = True
    assert failures == []
    assert len(answered) >= 2  # both the old and the new processes answered
