"""Port conflicts are refused when they are made, with the real CLI and daemon."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.cli.conftest import WAIT, Daemon, free_port, http_get
from tests.helpers import PYTHON

pytestmark = pytest.mark.slow


def web(name: str, repo: Path, port: int, *extra: str) -> tuple[str, ...]:
    return (
        "deploy", "--name", name, "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
        "--min-uptime", "300ms", "--port", str(port), *extra,
    )  # fmt: skip


async def test_a_port_of_another_service_is_refused_at_once(daemon: Daemon, web_app: Path) -> None:
    site_port, flaskr_port = free_port(), free_port()
    await daemon.ok(*web("site", web_app, site_port))
    await daemon.ok(*web("flaskr", web_app, flaskr_port))
    before = await daemon.snapshot()

    refused = await daemon.cli("settings", "flaskr", "--port", str(site_port))
    assert (
        refused.one_line_error() == f"error: port {site_port} is already the port of service site"
    )
    view = json.loads(await daemon.ok("settings", "flaskr", "--json"))
    assert (view["settings"]["port"], view["pending"]) == (flaskr_port, [])
    async with daemon.http() as http:
        answer = await http.patch("/services/flaskr/settings", json={"port": site_port})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "conflict"

    # A redeploy onto it is refused too, and the service keeps running as it was.
    redeploy = await daemon.cli(*web("flaskr", web_app, site_port))
    assert "already the port of service site" in redeploy.one_line_error()
    assert await daemon.snapshot() == before
    assert await http_get(flaskr_port) == "hello v1 1"
    assert await http_get(site_port) == "hello v1 1"

    # A first deploy onto it leaves no service behind.
    first = await daemon.cli(*web("copy", web_app, site_port))
    assert "already the port of service site" in first.one_line_error()
    assert set(await daemon.services()) == {"site", "flaskr"}
    assert not (daemon.data_dir / "services" / "copy").exists()

    # The service's own port is no conflict: a plain redeploy goes through.
    await daemon.ok("deploy", "--name", "flaskr")


async def test_a_first_deploy_on_a_port_another_program_holds_leaves_nothing(
    daemon: Daemon, web_app: Path
) -> None:
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        refused = await daemon.cli(*web("flaskr", web_app, port))
        assert (
            refused.one_line_error() == f"error: port {port} is already in use by another program"
        )
        assert await daemon.services() == {}
        assert (await daemon.cli("get", "flaskr")).code == 1
        assert not (daemon.data_dir / "services" / "flaskr").exists()
    # Once the program is gone, the same deploy goes through.
    await daemon.ok(*web("flaskr", web_app, port))
    assert await http_get(port) == "hello v1 1"


async def test_the_port_a_deploy_moves_to_is_taken_while_it_runs(
    daemon: Daemon, web_app: Path, tmp_path: Path
) -> None:
    site_port, other_port, new_port = free_port(), free_port(), free_port()
    await daemon.ok(*web("site", web_app, site_port))
    await daemon.ok(*web("other", web_app, other_port))
    gate = tmp_path / "gate"
    os.mkfifo(gate)  # the build waits on it: the deploy is in progress until it opens
    events = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
    async with open_websocket_url(events) as feed, daemon.http() as http:
        body = {
            "remote": {"url": str(web_app)},
            "run_cmd": f"{PYTHON} app.py",
            "build_cmd": f"cat {gate}",
            "port": new_port,
            "restart": {"min_uptime": 0.3},
        }
        assert (await http.post("/services/site/deploy", json=body)).status_code == 202

        refused = await daemon.cli("settings", "other", "--port", str(new_port))
        assert (
            refused.one_line_error()
            == f"error: port {new_port} is already the port of service site"
        )

        def open_the_gate() -> None:
            with open(gate, "w"):  # returns once the build has opened it to read
                pass

        await trio.to_thread.run_sync(open_the_gate)
        with trio.fail_after(WAIT):
            while True:
                event = json.loads(await feed.get_message())
                ours = event.get("type") == "deployment" and event["service"] == "site"
                if ours and event["status"] in ("succeeded", "failed"):
                    break
    assert event["status"] == "succeeded", event
    assert await http_get(new_port) == "hello v1 2"
