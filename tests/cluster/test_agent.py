"""A real ``dployr agent`` joins a real control plane, and a service deployed to it with
``--instance`` runs on its machine while the control plane's CLI shows it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.cli.conftest import WAIT, Daemon, clean_env, free_port
from tests.helpers import PYTHON, UP_ARGS, pids_of_service, web_repo

pytestmark = pytest.mark.slow


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = await Daemon.start(tmp_path / "plane")
    try:
        yield daemon
    finally:
        code, _ = await daemon.stop()
        assert code == 0


async def start_agent(plane: Daemon, token: str, data_dir: Path) -> trio.Process:
    """``dployr agent --join`` as a subprocess; returned once it is connected."""
    log = (data_dir.parent / f"{data_dir.name}.stderr").open("ab")
    process = await trio.lowlevel.open_process(
        [PYTHON, "-m", "dployr", "agent", "--join", plane.url, "--token", token,
         "--data-dir", str(data_dir), "--service-host", "127.0.0.1", *UP_ARGS],
        stdout=subprocess.PIPE,
        stderr=log,
        env=clean_env(),
    )  # fmt: skip
    log.close()
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(WAIT):
        while b"connected to the control plane" not in seen:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"the agent ended: {seen.decode()}"
            seen += chunk
    return process


async def stop_agent(process: trio.Process) -> int:
    """SIGTERM the agent (it stops its services) and wait for it."""
    assert process.stdout is not None
    process.terminate()
    with trio.fail_after(WAIT):
        while await process.stdout.receive_some(4096):
            pass
        code = await process.wait()
    await process.stdout.aclose()
    return code


async def test_a_service_deployed_to_an_agent_runs_there(plane: Daemon, tmp_path: Path) -> None:
    added = await plane.cli("instances", "add", "east")
    assert added.code == 0, added
    agent = await start_agent(plane, added.out.strip(), tmp_path / "east")
    try:
        east = json.loads(await plane.ok("instance", "east", "--json"))
        assert east["state"] == "connected"
        assert east["address"]

        port = free_port()
        repo = web_repo(tmp_path / "repo")
        deployed = await plane.ok(
            "deploy", "--name", "api", "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
            "--port", str(port), "--min-uptime", "0.3", "--instance", "east",
        )  # fmt: skip
        assert "api is running" in deployed, deployed

        # It runs on the agent's instance, answers on its port, and the list says where.
        assert pids_of_service("api", east["id"])
        async with httpx.AsyncClient(timeout=WAIT) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/")).text.startswith("hello v1")
        (row,) = json.loads(await plane.ok("list", "--json"))
        assert (row["name"], row["instance"], row["status"]) == ("api", "east", "running")
        table = (await plane.ok("list")).splitlines()
        assert table[0].split()[:4] == ["NAME", "STATUS", "HEALTH", "INSTANCE"]
        assert table[1].split()[:4] == ["api", "running", "unknown", "east"]
        status = json.loads(await plane.ok("service", "status", "api", "--json"))
        assert status["instance"] == "east"
        shown = await plane.ok("instances")
        assert "instance east (" in shown
        assert "api" in shown

        # Removed, it is revoked at once: the control plane no longer shows it or its
        # services (which run on, on that machine, until its agent stops them).
        assert await plane.ok("instances", "remove", "east") == "removed the instance east\n"
        assert json.loads(await plane.ok("list", "--json")) == []
        assert [i["name"] for i in json.loads(await plane.ok("instances", "--json"))] == ["local"]
        assert "no service named 'api'" in (await plane.cli("get", "api")).one_line_error()
    finally:
        assert await stop_agent(agent) == 0
