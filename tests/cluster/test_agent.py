"""A real ``dployr agent`` joins a real control plane, and a service deployed to it with
``--instance`` runs on its machine while the control plane's CLI shows it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.agent.conftest import agent
from tests.cli.conftest import WAIT, Daemon, free_port
from tests.helpers import PYTHON, pids_of_service, web_repo

pytestmark = pytest.mark.slow


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Daemon]:
    daemon = await Daemon.start(tmp_path / "plane")
    try:
        yield daemon
    finally:
        code, _ = await daemon.stop()
        assert code == 0


async def test_a_service_deployed_to_an_agent_runs_there(plane: Daemon, tmp_path: Path) -> None:
    added = await plane.cli("instances", "add", "east")
    assert added.code == 0, added
    token = added.out.strip()
    async with agent(tmp_path / "east", "--join", plane.url, "--token", token) as joined:
        await joined.wait_for("connected to the control plane")
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
    assert joined.returncode == 0  # it stopped its services and exited cleanly
