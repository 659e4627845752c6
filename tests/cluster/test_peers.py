"""Two control planes (``dployr up --database``) on one real PostgreSQL, a real agent
connected to both: either serves the API for the agent's services, and killing the leader
(``kill -9``) lets the other lead without the agent's service restarting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.agent.conftest import AgentProcess
from tests.cli.conftest import WAIT, Daemon, clean_env, free_port, run_cli
from tests.helpers import PYTHON, Output, pids_of_service, web_repo
from tests.pg import postgres, postgres_url

__all__ = ["postgres", "postgres_url"]  # fixtures, used by name

pytestmark = pytest.mark.slow

LEADS = "leads the cluster"
TAKEOVER = 10.0
"""Seconds another control plane may take to lead once the leader was killed (it takes
well under one: the database ends the dead leader's session, and its lock, at once)."""


async def kill(process: trio.Process) -> None:
    """SIGKILL a control plane, if it runs, and wait for it."""
    if process.returncode is None:
        process.kill()
    with trio.fail_after(WAIT):
        await process.wait()
    if process.stdout is not None:
        await process.stdout.aclose()


async def test_two_control_planes_serve_one_agent_and_the_leader_can_die(
    postgres_url: str, tmp_path: Path
) -> None:
    a = await Daemon.start(tmp_path / "a", "--database", postgres_url)
    assert a.process.stdout is not None
    a_out = Output(a.process.stdout)
    agent: AgentProcess | None = None
    b: Daemon | None = None
    try:
        await a_out.wait_for(LEADS)
        added = await a.cli("instances", "add", "east")
        assert added.code == 0, added
        agent = await AgentProcess.start(
            tmp_path / "east", "--join", a.url, "--token", added.out.strip()
        )
        await agent.wait_for(f"connected to the control plane {a.url} ")

        # A second control plane on the database: it waits its turn to lead, and the
        # agent, told of it by A, keeps a channel to it too.
        b = await Daemon.start(tmp_path / "b", "--database", postgres_url)
        assert b.process.stdout is not None
        b_out = Output(b.process.stdout)
        await agent.wait_for(f"connected to the control plane {b.url} ")
        assert LEADS not in b_out.text

        # Placed and deployed through A; B knows where it runs and lists it as running.
        port = free_port()
        repo = web_repo(tmp_path / "repo")
        deployed = await a.ok(
            "deploy", "--name", "api", "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
            "--port", str(port), "--min-uptime", "0.3", "--instance", "east",
        )  # fmt: skip
        assert "api is running" in deployed, deployed
        (row,) = json.loads(await b.ok("list", "--json"))
        assert (row["name"], row["instance"], row["status"], row["stale"]) == (
            "api",
            "east",
            "running",
            False,
        )
        east = json.loads(await b.ok("instance", "east", "--json"))
        assert east["state"] == "connected"
        [pid] = pids_of_service("api", east["id"])

        # The leader dies without a word: B leads within seconds, and serves on.
        a.process.kill()
        with trio.fail_after(TAKEOVER):
            await b_out.wait_for(LEADS)
        (row,) = json.loads(await b.ok("list", "--json"))
        assert (row["status"], row["stale"], row["pid"]) == ("running", False, pid)
        logs = await b.ok("logs", "api")
        assert "version v1" in logs, logs  # the service's own output, from the agent
        assert pids_of_service("api", east["id"]) == [pid]  # never restarted

        assert "api" in await b.ok("service", "restart", "api")
        status = json.loads(await b.ok("service", "status", "api", "--json"))
        assert status["status"] == "running"
        assert status["pid"] != pid
        assert pids_of_service("api", east["id"]) == [status["pid"]]
    finally:
        if agent is not None:
            await agent.stop()
        await kill(a.process)
        if b is not None:
            code, _ = await b.stop()
            assert code == 0


async def test_an_agent_keeps_one_channel_to_a_control_plane_it_knows_by_two_urls(
    tmp_path: Path,
) -> None:
    # The agent joins at 127.0.0.1; the control plane tells it its URL is localhost:
    # the same control plane (by its id), so it is not dialled a second time (two channels
    # of one instance would replace each other, over and over).
    port = free_port()
    plane = await Daemon.start(
        tmp_path / "plane", "--port", str(port), "--advertise", f"http://localhost:{port}/"
    )
    agent: AgentProcess | None = None
    try:
        added = await plane.cli("instances", "add", "east")
        assert added.code == 0, added
        agent = await AgentProcess.start(
            tmp_path / "east", "--join", plane.url, "--token", added.out.strip()
        )
        await agent.wait_for(f"connected to the control plane {plane.url} ")
        repo = web_repo(tmp_path / "repo")
        deployed = await plane.ok(
            "deploy", "--name", "api", "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
            "--port", str(free_port()), "--min-uptime", "0.3", "--instance", "east",
        )  # fmt: skip
        assert "api is running" in deployed, deployed
        await agent.stop()
        said = agent.output.text
        assert said.count("connected to the control plane") == 1, said
        assert "replaced" not in said, said
    finally:
        if agent is not None:
            await agent.stop()
        code, _ = await plane.stop()
        assert code == 0


async def test_an_agent_started_again_reaches_the_control_planes_it_was_told_of(
    postgres_url: str, tmp_path: Path
) -> None:
    a = await Daemon.start(tmp_path / "a", "--database", postgres_url)
    b = await Daemon.start(tmp_path / "b", "--database", postgres_url)
    agent: AgentProcess | None = None
    try:
        added = await a.cli("instances", "add", "east")
        assert added.code == 0, added
        data_dir = tmp_path / "east"
        agent = await AgentProcess.start(data_dir, "--join", a.url, "--token", added.out.strip())
        await agent.wait_for(f"connected to the control plane {b.url} ")
        await agent.stop()
        kept = json.loads((data_dir / "control-planes.json").read_text())
        assert sorted(kept) == sorted([a.url, b.url])

        # The control plane it joined through is gone for good: started again, the agent
        # finds the other one from what it was told.
        await kill(a.process)
        agent = await AgentProcess.start(data_dir)
        await agent.wait_for(f"connected to the control plane {b.url} ")
        east = json.loads(await b.ok("instance", "east", "--json"))
        assert east["state"] == "connected"
    finally:
        if agent is not None:
            await agent.stop()
        await kill(a.process)
        code, _ = await b.stop()
        assert code == 0


@pytest.mark.parametrize("url", ["ftp://cp-1", "cp-1:7879", "http://", "http://cp-1/?x=1"])
async def test_an_advertised_url_no_agent_could_dial_is_refused(url: str, tmp_path: Path) -> None:
    result = await run_cli(
        "up", "--data-dir", str(tmp_path / "data"), "--advertise", url, env=clean_env()
    )
    assert result.code == 2, result
    assert f"Invalid value for '--advertise': {url!r} is not an http:// or https:// URL" in (
        result.err
    )
    assert "Traceback" not in result.err
    assert not (tmp_path / "data").exists()  # refused before anything was made
