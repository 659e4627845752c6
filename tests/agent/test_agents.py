"""Agents on the wire, end to end: real ``dployr agent`` processes, each on a data dir of its
own, dialling a control plane; services deployed to them through the hub's RemoteHandle."""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from dployr import __version__
from dployr.cluster.remote import RemoteHandle
from dployr.logs.values import LogLine
from dployr.models import DeploymentStatus, ServiceStatus
from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.events import DeploymentChanged
from dployr.protocol.feed import Gap
from tests.agent.conftest import (
    AWAY_AFTER,
    HEARTBEAT,
    WAIT,
    AgentProcess,
    Partition,
    TlsProxy,
    agent,
    control_plane,
    wait_away,
    wait_connected,
)
from tests.cli.conftest import clean_env, free_port, run_cli, start_up
from tests.engine.conftest import web_settings
from tests.helpers import PYTHON, make_repo, pids_of_service, web_repo, ws_handshake
from tests.tls import self_signed


def member(hub: object, name: str) -> RemoteHandle:
    handle = hub.member(name)  # type: ignore[attr-defined]
    assert handle is not None, f"instance {name} is not connected"
    return handle


async def deploy(remote: RemoteHandle, request: m.Deploy) -> m.ServiceInfo:
    """Deploy through the remote handle and wait until the deployment has ended well."""
    with remote.subscribe_changes() as changes, trio.fail_after(WAIT):
        deployment = await remote.request(request)
        remote.check_service(request.name)  # known as soon as the deploy is answered
        async for entry in changes:
            if isinstance(entry, Gap):
                continue
            for change in entry:
                ours = isinstance(change, DeploymentChanged) and change.deployment == deployment.id
                if ours and change.status.finished:
                    assert change.status is DeploymentStatus.SUCCEEDED, change
                    return await remote.request(m.GetService(request.name))
    raise AssertionError("the changes feed ended")


async def answer(port: int, path: str = "/") -> str:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(f"http://127.0.0.1:{port}{path}")
    response.raise_for_status()
    return response.text


CHATTY_APP = """\
import signal
for number in range(3000):
    print(f"{number:04} " + "x" * 1000)
print("done", flush=True)
signal.pause()
"""


@pytest.mark.slow
async def test_an_agent_joins_once_and_runs_what_the_control_plane_deploys(
    tmp_path: Path,
) -> None:
    repo = web_repo(tmp_path / "repo")
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", cp.url, "--token", token) as a1:
            assert "as instance a1" in await a1.wait_for("joined ")
            await a1.wait_for("connected to the control plane")
            await wait_connected(cp.hub, "a1")

            # The join token is spent; the credential is kept 0600, the token is not.
            kept = a1.data_dir / "agent.json"
            assert stat.S_IMODE(kept.stat().st_mode) == 0o600
            credential = json.loads(kept.read_text())["credential"]
            assert token not in kept.read_text()
            async with httpx.AsyncClient(base_url=cp.url, timeout=WAIT) as http:
                again = await http.post("/api/v1/agent/join", json={"token": token})
                assert again.status_code == 401
                assert "already used" in again.json()["error"]["message"]
                # A credential is no API token: no user route takes it.
                as_user = await http.get(
                    "/api/v1/services", headers={"Authorization": f"Bearer {credential}"}
                )
                assert as_user.status_code == 401
            # An API token is no credential: the agents' channel refuses it.
            refused = await ws_handshake(cp.url, "/api/v1/agent", cp.token)
            assert refused.status_code == 401

            remote = member(cp.hub, "a1")
            port = free_port()
            info = await deploy(remote, m.Deploy("web", web_settings(repo, port)))
            assert (info.instance, info.status) == ("a1", ServiceStatus.RUNNING)
            assert (await answer(port)).startswith("hello v1")
            assert [s.name for s in remote.services()] == ["web"]
            (record,) = [r for r in await cp.state.instances() if r.name == "a1"]
            assert (record.address, record.version) == ("127.0.0.1", __version__)
            assert record.last_seen is not None
            assert record.joined_at is not None
            snapshots = await cp.state.snapshots()
            assert [s["name"] for s in snapshots["a1"][1]] == ["web"]

            # The log, followed from the start: history, then live lines, with neither a
            # gap nor a duplicate at the seam.
            seen: list[LogLine] = []
            follow = remote.follow_logs("web", after=0)
            async with contextlib.aclosing(follow):
                with trio.fail_after(WAIT):
                    first = await anext(follow)
                    assert isinstance(first, list)
                    seen += first
                    await answer(port, "/seam")
                    async for entry in follow:
                        assert not isinstance(entry, Gap)
                        seen += entry
                        if any("request /seam" in line.line for line in entry):
                            break
            assert [line.cursor for line in seen] == list(range(1, len(seen) + 1))
            assert any("listening on" in line.line for line in seen)

            with pytest.raises(Error) as unknown:
                remote.check_service("nope")
            assert unknown.value.code == "not_found"


TICKER_APP = """\
import os
import sys
import time

print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
for tick in range(2000):  # 10,000 lines a second, 10 lines a millisecond, for 2 s
    sys.stdout.write("".join(f"{tick * 10 + n} tick" + chr(10) for n in range(10)))
    sys.stdout.flush()
    time.sleep(0.001)
print("done", flush=True)
time.sleep(3600)
"""


@pytest.mark.slow
async def test_a_remote_log_written_fast_comes_in_few_large_frames(tmp_path: Path) -> None:
    # A service writing in 1 ms ticks: the agent gathers what comes within 10 ms into one
    # frame, instead of one frame per tick, each decoded, queued and relayed on its own by
    # the control plane (whose queue for a reader, counted in frames, overflowed into gaps).
    repo = make_repo(tmp_path / "ticker", {"app.py": TICKER_APP})
    go = tmp_path / "go"
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", cp.url, "--token", token):
            await wait_connected(cp.hub, "a1")
            remote = member(cp.hub, "a1")
            settings = attrs.evolve(web_settings(repo, None), run_cmd=f"{PYTHON} app.py {go}")
            await deploy(remote, m.Deploy("ticker", settings))
            lines: list[LogLine] = []
            frames = 0
            follow = remote.follow_logs("ticker", after=0)
            async with contextlib.aclosing(follow):
                with trio.fail_after(WAIT):
                    async for entry in follow:
                        assert not isinstance(entry, Gap)
                        if any(line.line == "ready" for line in entry):
                            go.touch()
                            continue
                        frames += 1
                        lines += entry
                        if lines[-1].line == "done":
                            break
            assert [line.line for line in lines[:-1]] == [f"{n} tick" for n in range(20_000)]
            assert frames <= 400, f"{frames} frames for 2 s of lines"


@pytest.mark.slow
async def test_an_update_of_samples_alone_rewrites_no_snapshot(tmp_path: Path) -> None:
    # Every agent sends an Update each metrics round (5 s): with 20 agents of 50 services,
    # rewriting each one's last-known services every time was most of an idle control
    # plane's work. Only an Update that changes a service rewrites them; last seen moves.
    repo = web_repo(tmp_path / "repo")
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", cp.url, "--token", token):
            await wait_connected(cp.hub, "a1")
            remote = member(cp.hub, "a1")
            await deploy(remote, m.Deploy("web", web_settings(repo, free_port())))

            async def updates(count: int) -> None:
                with trio.fail_after(WAIT):
                    for _ in range(count):
                        await remote.updated.wait()

            async def recorded() -> tuple[float, float | None]:
                ((at, _),) = (await cp.state.snapshots()).values()
                (record,) = [r for r in await cp.state.instances() if r.name == "a1"]
                return at, record.last_seen

            await updates(2)  # the one after the deploy's has been recorded too
            snapshot_at, seen = await recorded()
            await updates(3)  # metrics rounds: samples, the services unchanged
            assert remote.services()[0].status is ServiceStatus.RUNNING
            later_snapshot_at, later_seen = await recorded()
            assert later_snapshot_at == snapshot_at
            assert seen is not None
            assert later_seen is not None
            assert later_seen > seen


@pytest.mark.slow
async def test_a_killed_agent_is_away_within_the_heartbeat_and_a_revoked_one_is_refused(
    tmp_path: Path,
) -> None:
    async with control_plane(tmp_path / "cp") as cp:
        a1_token, a2_token = await cp.join_token("a1"), await cp.join_token("a2")
        async with (
            agent(tmp_path / "a1", "--join", cp.url, "--token", a1_token) as a1,
            agent(tmp_path / "a2", "--join", cp.url, "--token", a2_token) as a2,
        ):
            await wait_connected(cp.hub, "a1")
            await wait_connected(cp.hub, "a2")

            a1.kill()
            with trio.fail_after(AWAY_AFTER + 2 * HEARTBEAT):
                await wait_away(cp.hub, "a1")
            assert set(cp.hub.connected()) == {"a2"}
            with pytest.raises(Error, match="instance a1 is away"):
                await cp.hub._handles["a1"].request(m.ListServices())

            # Revoked: the open channel is closed within a heartbeat, and every dial
            # after is refused at the door.
            await cp.state.remove_instance("a2")
            with trio.fail_after(AWAY_AFTER + 2 * HEARTBEAT):
                await wait_away(cp.hub, "a2")
            refused = await a2.wait_for("refused this agent (401)")
            assert "unknown or revoked agent credential" in refused
            assert cp.hub.member("a2") is None


SLOW_STOP_APP = """\
import http.server, os, signal, socket, time

def stopping(*_):
    # Tell the test the stop has begun, then take a while to stop.
    with socket.create_connection(("127.0.0.1", int(os.environ["NOTIFY_PORT"]))) as told:
        told.sendall(b"stopping")
    time.sleep(0.5)
    os._exit(0)

signal.signal(signal.SIGTERM, stopping)
print("listening", flush=True)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])),
                                         http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""


@pytest.mark.slow
async def test_a_call_cut_off_by_a_disconnect_runs_exactly_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": SLOW_STOP_APP})
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    notify_port = listeners[0].socket.getsockname()[1]
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", cp.url, "--token", token) as a1:
            await a1.wait_for("connected to the control plane")
            await wait_connected(cp.hub, "a1")
            remote = member(cp.hub, "a1")
            settings = web_settings(repo, free_port())
            env = {"NOTIFY_PORT": str(notify_port)}
            before = await deploy(remote, m.Deploy("slow", settings, env=env))

            restarted: list[m.ServiceInfo] = []

            async def restart() -> None:
                restarted.append(await remote.request(m.Restart("slow")))

            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(restart)
                    told = await listeners[0].accept()  # the agent is carrying it out
                    await told.aclose()
                    cp.hub.drop("a1", "cut off by the test")  # before its Result is back
                    assert "dialling again" in await a1.wait_for("dialling again")
                    await a1.wait_for("connected to the control plane")

            (after,) = restarted
            assert after.status is ServiceStatus.RUNNING
            assert after.pid != before.pid
            page = await remote.request(m.ReadLogs("slow", streams=frozenset({"stdout"})))
            assert [line.line for line in page.lines] == ["listening", "listening"]
    for listener in listeners:
        await listener.aclose()


@pytest.mark.slow
async def test_a_malformed_frame_closes_only_that_agents_channel(tmp_path: Path) -> None:
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", cp.url, "--token", token):
            await wait_connected(cp.hub, "a1")
            async with httpx.AsyncClient(base_url=cp.url, timeout=WAIT) as http:
                joined = await http.post(
                    "/api/v1/agent/join", json={"token": await cp.join_token("bad")}
                )
            credential = joined.json()["credential"]
            url = cp.url.replace("http://", "ws://") + "/api/v1/agent"
            headers = [(b"authorization", f"Bearer {credential}".encode())]
            with trio.fail_after(WAIT):
                # One agent's credential cannot speak for another instance.
                async with open_websocket_url(url, extra_headers=headers) as ws:
                    await ws.send_message(w.encode_frame(w.Hello("a1", "0.0", 1, (), "e1")))
                    with pytest.raises(ConnectionClosed) as impostor:
                        await ws.get_message()
                    assert impostor.value.reason.code == 1008
                    assert "names instance 'a1', the credential 'bad'" in str(
                        impostor.value.reason.reason
                    )
                    await ws._stream.aclose()  # see below
                assert cp.hub.member("a1") is not None
                async with open_websocket_url(url, extra_headers=headers) as ws:
                    hello = w.Hello("bad", "0.0", w.WIRE_VERSION, (), "e1")
                    await ws.send_message(w.encode_frame(hello))
                    assert isinstance(w.decode_frame(await ws.get_message()), w.HelloAck)
                    await wait_connected(cp.hub, "bad")
                    await ws.send_message('{"type": "update", "seq": "many"}')
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.get_message()
                    assert closed.value.reason.code == 1008
                    assert "a malformed frame: a bad update frame" in closed.value.reason.reason
                    # trio-websocket's client leaves its TCP stream to the garbage
                    # collector after a close its server began: close it here.
                    await ws._stream.aclose()
                await wait_away(cp.hub, "bad")
            # The control plane and the other agent's channel go on.
            assert cp.hub.member("a1") is not None
            assert await cp.hub.member("a1").request(m.ListServices()) == ()  # type: ignore[union-attr]


@pytest.mark.slow
async def test_an_agents_services_run_on_untouched_while_its_control_plane_is_killed(
    tmp_path: Path,
) -> None:
    repo = web_repo(tmp_path / "repo")
    cp_dir = tmp_path / "cp"
    port = free_port()
    async with control_plane(cp_dir) as cp:
        cp_port = cp.url.rsplit(":", 1)[1]
        token = await cp.join_token("a1")
        a1 = await AgentProcess.start(tmp_path / "a1", "--join", cp.url, "--token", token)
        try:
            await wait_connected(cp.hub, "a1")
            await deploy(member(cp.hub, "a1"), m.Deploy("web", web_settings(repo, port)))
        except BaseException:
            await a1.stop()
            raise
    try:
        pids = pids_of_service("web")
        assert pids
        await a1.wait_for("connected to the control plane")
        await a1.wait_for("dialling again")  # the first control plane stopped

        # A real `dployr up` on the same data dir and port: the agent dials back in.
        up, _ = await start_up(cp_dir, "--port", cp_port)
        await a1.wait_for("connected to the control plane")
        up.kill()
        await up.wait()
        await a1.wait_for("cannot reach the control plane: all attempts to connect")
        assert pids_of_service("web") == pids
        assert (await answer(port)).startswith("hello v1")

        # While no control plane is up, the service crashes: the agent restarts it alone.
        with pytest.raises(httpx.RemoteProtocolError):
            await answer(port, "/crash")
        assert (await answer(port)).startswith("hello v1")  # the proxy waits for the restart
        restarted = pids_of_service("web")
        assert restarted != pids

        # The control plane, started again, learns the restart from the agent.
        async with control_plane(cp_dir, int(cp_port)) as cp:
            await wait_connected(cp.hub, "a1")
            remote = member(cp.hub, "a1")
            # The agent dials back within half a second: the restarted release may still
            # be starting (its minimum uptime); its Update says when it runs.
            with trio.fail_after(WAIT):
                while True:
                    updated = remote.updated  # taken first: no Update is missed
                    info = await remote.request(m.GetService("web"))
                    if info.status is ServiceStatus.RUNNING:
                        break
                    await updated.wait()
            assert info.restarts == 1
            assert info.pid in restarted
            log = await member(cp.hub, "a1").request(m.ReadLogs("web", tail=50))
            assert any("crashing on request" in line.line for line in log.lines)
        assert pids_of_service("web") == restarted
    finally:
        assert await a1.stop() == 0


async def test_an_agent_is_back_at_once_when_its_control_plane_restarts(tmp_path: Path) -> None:
    # A control plane restarted (an upgrade, a reboot) is down for a few seconds: its agents
    # keep dialling every half second meanwhile, and are back moments after it starts, not
    # after a backoff grown to several seconds.
    cp_dir = tmp_path / "cp"
    async with control_plane(cp_dir) as cp:
        port = int(cp.url.rsplit(":", 1)[1])
        token = await cp.join_token("a1")
        a1 = await AgentProcess.start(tmp_path / "a1", "--join", cp.url, "--token", token)
        try:
            await wait_connected(cp.hub, "a1")
        except BaseException:
            await a1.stop()
            raise
    try:
        await a1.wait_for("the channel to the control plane closed")
        for _ in range(6):  # down for six dials (the sixth used to wait 15-30 s for the next)
            await a1.wait_for("cannot reach the control plane")
        async with control_plane(cp_dir, port) as cp:
            with trio.fail_after(5):
                await wait_connected(cp.hub, "a1")
    finally:
        assert await a1.stop() == 0


@pytest.mark.slow
async def test_a_partition_is_seen_by_both_sides_and_heals_without_a_restart(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = free_port()
    async with control_plane(tmp_path / "cp") as cp:
        partition = Partition(int(cp.url.rsplit(":", 1)[1]))
        await nursery.start(partition.serve)
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", partition.url, "--token", token) as a1:
            await a1.wait_for("connected to the control plane")
            await wait_connected(cp.hub, "a1")
            remote = member(cp.hub, "a1")
            before = await deploy(remote, m.Deploy("web", web_settings(repo, port)))
            follow = remote.follow_logs("web", after=0)
            async with contextlib.aclosing(follow):
                seen = await anext(follow)
                assert isinstance(seen, list)

                partition.cut()  # nothing is closed: only the heartbeat can tell
                with trio.fail_after(AWAY_AFTER + 2 * HEARTBEAT + 1):
                    await wait_away(cp.hub, "a1")
                await a1.wait_for("dialling again")  # the agent saw the silence too
                assert (await answer(port, "/while-cut")).startswith("hello v1")

                partition.heal()
                await a1.wait_for("connected to the control plane")
                await wait_connected(cp.hub, "a1")
                # The follow goes on where it was: what was written meanwhile, then live.
                await answer(port, "/healed")
                with trio.fail_after(WAIT):
                    async for entry in follow:
                        assert not isinstance(entry, Gap)
                        seen += entry
                        if any("request /healed" in line.line for line in entry):
                            break
            assert [line.cursor for line in seen] == list(range(1, len(seen) + 1))
            assert any("request /while-cut" in line.line for line in seen)
            after = await remote.request(m.GetService("web"))
            assert (after.pid, after.restarts, after.deployment) == (
                before.pid,
                before.restarts,
                before.deployment,
            )
    nursery.cancel_scope.cancel()


async def test_an_agent_that_cannot_join_says_why_in_one_line(tmp_path: Path) -> None:
    async def refused(data_dir: str, *args: str) -> str:
        ran = await run_cli(
            "agent", "--shared-user", "--data-dir", str(tmp_path / data_dir), *args, env=clean_env()
        )
        return ran.one_line_error()

    never = await refused("never")
    assert "has not joined a control plane: give --join URL --token TOKEN" in never
    bad_url = await refused("x", "--join", "ftp://cp", "--token", "t")
    assert "not a control plane URL: 'ftp://cp'" in bad_url
    async with control_plane(tmp_path / "cp") as cp:
        wrong = await refused("a1", "--join", cp.url, "--token", "nope")
        assert "the control plane refused the join:" in wrong
        token = await cp.join_token("a1")
        other = await refused("a1", "--join", cp.url, "--token", token, "--name", "a2")
        assert "the join token is instance 'a1''s, not 'a2'" in other
    assert not (tmp_path / "a1" / "agent.json").exists()


@pytest.mark.slow
async def test_an_agent_started_again_needs_no_token_and_brings_its_services_back(
    tmp_path: Path,
) -> None:
    repo = web_repo(tmp_path / "repo")
    port = free_port()
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("a1")
        async with agent(tmp_path / "a1", "--join", cp.url, "--token", token):
            await wait_connected(cp.hub, "a1")
            remote = member(cp.hub, "a1")
            await deploy(remote, m.Deploy("web", web_settings(repo, port)))
            with remote.subscribe_metrics() as samples, trio.fail_after(WAIT):
                async for entry in samples:
                    if not isinstance(entry, Gap) and any(s.service == "web" for s in entry):
                        break
            with trio.fail_after(WAIT):
                while remote.latest_machine() is None:  # the Update after a metrics round
                    await remote.updated.wait()

            # History stays on the agent: a page larger than a frame is read in smaller ones.
            chatty = make_repo(tmp_path / "chatty", {"app.py": CHATTY_APP})
            await deploy(remote, m.Deploy("chatty", web_settings(chatty, None)))
            page = await remote.request(m.ReadLogs("chatty", after=0, limit=5000))
            assert 0 < len(page.lines) < 3000
            assert page.lines[0].cursor == 1
            assert page.last_cursor >= 3000
            rest = await remote.request(m.ReadLogs("chatty", after=page.lines[-1].cursor))
            assert rest.lines[0].cursor == page.lines[-1].cursor + 1
        await wait_away(cp.hub, "a1")

        async with agent(tmp_path / "a1", "--token", token) as again:
            assert "already joined as instance a1" in await again.wait_for("already joined")
            await again.wait_for("connected to the control plane")
            await wait_connected(cp.hub, "a1")
            assert (await answer(port)).startswith("hello v1")
            info = await member(cp.hub, "a1").request(m.GetService("web"))
            assert (info.instance, info.status) == ("a1", ServiceStatus.RUNNING)


@pytest.mark.slow
async def test_an_agent_verifies_a_tls_control_planes_certificate(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    async with control_plane(tmp_path / "cp") as cp:
        proxy = TlsProxy(int(cp.url.rsplit(":", 1)[1]), cert, key)
        await nursery.start(proxy.serve)
        token = await cp.join_token("a1")
        # Not signed by a CA the system trusts: refused, the token not spent.
        untrusted = await run_cli(
            *("agent", "--shared-user", "--data-dir", str(tmp_path / "a1")),
            *("--join", proxy.url, "--token", token),
            env=clean_env(),
        )
        assert "certificate verify failed" in untrusted.one_line_error()

        async with agent(
            tmp_path / "a1", "--join", proxy.url, "--token", token, "--ca", str(cert)
        ) as a1:
            await a1.wait_for("connected to the control plane https://127.0.0.1:")
            await wait_connected(cp.hub, "a1")
            assert await member(cp.hub, "a1").request(m.ListServices()) == ()
        kept = json.loads((tmp_path / "a1" / "agent.json").read_text())
        assert (kept["url"], kept["ca"]) == (proxy.url, str(cert))
    nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_three_agents_run_on_through_a_minute_without_their_control_plane(
    tmp_path: Path,
) -> None:
    """The issue's own case: three agents, each serving a service; the control plane is
    killed -9 and stays down a full minute, during which one service crashes; back, it
    shows every service as it now is, and only the crashed one was restarted."""
    repo = web_repo(tmp_path / "repo")
    cp_dir = tmp_path / "cp"
    ports = {name: free_port() for name in ("a1", "a2", "a3")}
    agents: dict[str, AgentProcess] = {}
    async with control_plane(cp_dir) as cp:
        cp_port = cp.url.rsplit(":", 1)[1]
        try:
            for name in ports:
                token = await cp.join_token(name)
                agents[name] = await AgentProcess.start(
                    tmp_path / name, "--join", cp.url, "--token", token
                )
            for name, port in ports.items():
                await wait_connected(cp.hub, name)
                await deploy(
                    member(cp.hub, name), m.Deploy(f"web-{name}", web_settings(repo, port))
                )
        except BaseException:
            for process in agents.values():
                await process.stop()
            raise
    try:
        for process in agents.values():
            await process.wait_for("connected to the control plane")
            await process.wait_for("dialling again")  # the first control plane stopped
        up, _ = await start_up(cp_dir, "--port", cp_port)
        for process in agents.values():
            await process.wait_for("connected to the control plane")
        up.kill()  # kill -9: nothing says goodbye
        await up.wait()
        pids = {name: pids_of_service(f"web-{name}") for name in ports}
        assert all(pids.values())

        # The minute without a control plane is the scenario itself, not a wait for an event.
        await trio.sleep(20)
        with pytest.raises(httpx.RemoteProtocolError):
            await answer(ports["a2"], "/crash")
        assert (await answer(ports["a2"])).startswith("hello v1")  # a2 restarted it alone
        await trio.sleep(40)
        for port in ports.values():
            assert (await answer(port)).startswith("hello v1")
        assert pids_of_service("web-a1") == pids["a1"]
        assert pids_of_service("web-a3") == pids["a3"]
        restarted = pids_of_service("web-a2")
        assert restarted != pids["a2"]

        async with control_plane(cp_dir, int(cp_port)) as cp:
            for name in ports:
                await wait_connected(cp.hub, name)
            for name in ports:
                info = await member(cp.hub, name).request(m.GetService(f"web-{name}"))
                assert info.status is ServiceStatus.RUNNING
                assert info.restarts == (1 if name == "a2" else 0)
                assert info.pid in (restarted if name == "a2" else pids[name])
        assert {name: pids_of_service(f"web-{name}") for name in ports} == {
            "a1": pids["a1"],
            "a2": restarted,
            "a3": pids["a3"],
        }
    finally:
        for process in agents.values():
            assert await process.stop() == 0
