"""Issue 5 from the command line: health options, rollback, hard restarts, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Daemon, free_port, http_get
from tests.helpers import PYTHON, commit

pytestmark = pytest.mark.slow


def deploy(repo: Path, port: int, *extra: str) -> tuple[str, ...]:
    return (
        "deploy", "--name", "web", "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port), *extra,
    )  # fmt: skip


async def test_health_options_from_deploy_and_settings(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    await daemon.ok(*deploy(web_app, port, "--health-check", "/health", "--health-interval", "0.5"))
    view = json.loads(await daemon.ok("settings", "web", "--json"))
    assert view["settings"]["health_check"] == "/health"
    assert view["settings"]["health"]["interval"] == 0.5
    info = json.loads(await daemon.ok("get", "web", "--json"))
    assert info["health"] == "healthy"  # the switch waited for it
    text = await daemon.ok("settings", "web", "--health-failures", "5", "--health-kind", "tcp")
    assert "TCP connect every 0.5 s (timeout 5 s); degraded after 5 failures" in text
    assert "(waits for the next deploy)" in text
    after = json.loads(await daemon.ok("settings", "web", "--json"))["settings"]["health"]
    assert (after["interval"], after["failures"], after["kind"]) == (0.5, 5, "tcp")
    refused = await daemon.cli("settings", "web", "--health-failures", "0")
    assert refused.code == 1
    assert refused.one_line_error() == (
        "error: health failures must be a whole number from 1 to 1000, not 0"
    )


async def test_rollback_and_a_hard_restart(daemon: Daemon, web_app: Path) -> None:
    port = free_port()
    await daemon.ok(*deploy(web_app, port))
    commit(web_app, {"VERSION": "v2\n"})
    await daemon.ok(*deploy(web_app, port))
    assert await http_get(port) == "hello v2 2"
    out = await daemon.ok("rollback", "web")
    assert "rolling web back to deployment 1: deployment 3" in out
    assert "==> succeeded" in out
    # The app sees its own deployment (3) running the first one's release.
    assert await http_get(port) == "hello v1 3"
    table = await daemon.ok("deployments", "web")
    active = [line for line in table.splitlines() if line.startswith("*")]
    assert len(active) == 1
    assert active[0].split()[1] == "3"
    assert "rollback to 1" in active[0]
    refused = await daemon.cli("rollback", "web", "3")
    assert refused.code == 1
    assert refused.one_line_error() == "error: deployment 3 is already the active one"
    assert (await daemon.cli("rollback", "web", "77")).code == 1
    back = json.loads(await daemon.ok("rollback", "web", "2", "--json"))
    assert back["deployment"] == 4
    assert await http_get(port) == "hello v2 4"

    before = json.loads(await daemon.ok("service", "status", "web", "--json"))["pid"]
    hard = json.loads(await daemon.ok("service", "restart", "web", "--hard", "--json"))
    assert hard["status"] == "running"
    assert hard["pid"] not in (None, before)
    assert await http_get(port) == "hello v2 4"


async def test_metrics_from_the_cli_and_the_prometheus_endpoint(
    daemon: Daemon, web_app: Path
) -> None:
    await daemon.ok(*deploy(web_app, free_port()))
    page = json.loads(await daemon.ok("metrics", "web", "--json", "--since", "15m"))
    assert page["name"] == "web"
    assert page["resolution"] == "raw"
    async with httpx.AsyncClient(base_url=daemon.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        bearer = {"Authorization": f"Bearer {daemon.token}"}
        answer = await http.get("/metrics", headers=bearer)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "# TYPE dployr_service_cpu_percent gauge" in answer.text
    unknown = await daemon.cli("metrics", "nope")
    assert unknown.one_line_error() == "error: no service named 'nope'"
