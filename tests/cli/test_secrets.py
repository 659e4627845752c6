"""Secrets reach the process environment and nothing else: no API answer, no CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Daemon, free_port, http_get, run_all
from tests.helpers import PYTHON

pytestmark = pytest.mark.slow

SECRET = "hunter2-but-longer-9f8e7d"
ROTATED = "rotated-0a1b2c3d4e5f"


async def test_a_secret_reaches_only_the_process(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    outputs = [
        await daemon.ok(
            "deploy",
            "--min-uptime",
            "300ms",
            "--name",
            "my-api",
            "--remote",
            str(web_app),
            "--run-cmd",
            f"{PYTHON} app.py",
            "--port",
            str(port),
            "--env",
            "PLAIN=visible",
            "--secret",
            f"DB_PASSWORD={SECRET}",
        )
    ]
    assert await http_get(port, "/env/DB_PASSWORD") == SECRET
    assert await http_get(port, "/env/PLAIN") == "visible"

    outputs.append(
        await daemon.ok("env", "set", "my-api", f"API_KEY={ROTATED}", "--secret", "--restart")
    )
    assert await http_get(port, "/env/API_KEY") == ROTATED
    listing = await daemon.ok("env", "list", "my-api")
    assert "PLAIN=visible" in listing.splitlines()
    masked = [line for line in listing.splitlines() if line.startswith("DB_PASSWORD=")]
    assert len(masked) == 1
    assert masked[0].endswith("(secret)")
    as_json = json.loads(await daemon.ok("env", "list", "my-api", "--json"))
    secret_vars = {v["key"]: v for v in as_json["vars"] if v["secret"]}
    assert set(secret_vars) == {"API_KEY", "DB_PASSWORD"}

    commands = [
        ["env", "list", "my-api"],
        ["--json", "env", "list", "my-api"],
        ["list", "--json"],
        ["get", "my-api", "--json"],
        ["service", "status", "my-api"],
        ["settings", "my-api", "--json"],
        ["deployments", "my-api", "--json"],
        ["instances", "--json"],
        ["logs", "my-api", "--tail", "1000"],
        ["logs", "my-api", "--json"],
    ]
    for result in await run_all(daemon, commands):
        assert (result.code, result.err) == (0, "")
        outputs.append(result.out)
    outputs.append(await daemon.ok("env", "unset", "my-api", "PLAIN"))
    async with daemon.http() as http:
        for path in (
            "/services",
            "/services/my-api",
            "/services/my-api/env",
            "/services/my-api/settings",
            "/services/my-api/deployments",
            "/services/my-api/logs?tail=1000",
            "/instances",
        ):
            outputs.append((await http.get(path)).text)
    for output in outputs:
        assert SECRET not in output
        assert ROTATED not in output

    # At rest, the database holds them sealed.
    for path in daemon.data_dir.glob("dployr.db*"):
        raw = path.read_bytes()
        assert SECRET.encode() not in raw, path
        assert ROTATED.encode() not in raw, path


async def test_rotating_the_master_key_keeps_every_secret(tmp_path: Path, web_app: Path) -> None:
    data = tmp_path / "data"
    daemon = await Daemon.start(data)
    try:
        port = free_port()
        await daemon.ok(
            "deploy", "--name", "my-api", "--remote", str(web_app), "--run-cmd",
            f"{PYTHON} app.py", "--port", str(port), "--health-check", "/health",
            "--secret", f"DB_PASSWORD={SECRET}",
        )  # fmt: skip
        old_key = (data / "master.key").read_bytes()

        out = await daemon.ok("secrets", "rotate-key")

        assert out.startswith("sealed 1 secret under a new master key, now in ")
        assert (data / "master.key").read_bytes() != old_key
        await daemon.ok("service", "restart", "my-api")
        assert await http_get(port, "/env/DB_PASSWORD") == SECRET
    finally:
        code, _ = await daemon.stop()
    assert code == 0
    # A daemon started again opens the secrets with the new key file.
    again = await Daemon.start(data)
    try:
        assert await http_get(port, "/env/DB_PASSWORD") == SECRET
    finally:
        await again.stop()
