"""Issue 11, points 8 and 9 from the command line: the restart policy and the status words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.cli.conftest import WAIT, Daemon, free_port
from tests.helpers import PYTHON, commit

pytestmark = pytest.mark.slow


def deploy(repo: Path, port: int, *extra: str) -> tuple[str, ...]:
    return (
        "deploy", "--name", "web", "--remote", str(repo), "--run-cmd", f"{PYTHON} app.py",
        "--port", str(port), "--min-uptime", "300ms", *extra,
    )  # fmt: skip


async def test_restart_options_from_deploy_and_settings(daemon: Daemon, web_app: Path) -> None:
    await daemon.ok(
        *deploy(web_app, free_port()),
        "--restart", "on-failure", "--restart-delay", "500ms,5s", "--max-restarts", "10",
        "--restart-window", "2m",
    )  # fmt: skip
    policy = json.loads(await daemon.ok("settings", "web", "--json"))["settings"]["restart"]
    assert policy == {
        "mode": "on-failure",
        "delay": 0.5,
        "max_delay": 5.0,
        "max_restarts": 10,
        "window": 120.0,
        "min_uptime": 0.3,
    }
    text = await daemon.ok("settings", "web", "--max-restarts", "20", "--min-uptime", "1")
    assert (
        "  restart      on failure (a clean exit stays stopped); backoff 0.5 s doubling to 5 s;"
        " failed after 20 restarts in 120 s; counts as started after 1 s up"
        "  (applies at the next start, restart or deploy)"
    ) in text.splitlines()
    refused = await daemon.cli("settings", "web", "--max-restarts", "100")
    assert refused.one_line_error() == (
        "error: the restart delays of 100 restarts add up to 482.5 s, not less than"
        " restart-window (120 s), so a crash loop would never be stopped: lower restart-delay"
        " or max-restarts, or raise restart-window"
    )
    refused = await daemon.cli("settings", "web", "--restart-delay", "10s")
    assert refused.one_line_error() == (
        "error: restart-delay's maximum (5 s) must be at least its first delay (10 s)"
    )
    refused = await daemon.cli("settings", "web", "--min-uptime", "a while")
    assert refused.one_line_error() == (
        "error: --min-uptime must be a duration such as 500ms, 5s, 1m or 2h, not 'a while'"
    )
    # Nothing refused was stored.
    after = json.loads(await daemon.ok("settings", "web", "--json"))["settings"]["restart"]
    assert (after["max_restarts"], after["delay"], after["min_uptime"]) == (20, 0.5, 1.0)
    # A restart applies it: nothing waits any more.
    await daemon.ok("service", "restart", "web")
    text = await daemon.ok("settings", "web")
    assert "failed after 20 restarts in 120 s; counts as started after 1 s up\n" in text


async def next_status(feed: WebSocketConnection, service: str) -> str:
    """The next status change of ``service`` on the events feed."""
    with trio.fail_after(WAIT):
        while True:
            message: dict[str, Any] = json.loads(await feed.get_message())
            if message.get("type") == "status" and message.get("service") == service:
                return str(message["status"])


async def test_the_events_feed_and_status_show_a_restart_and_a_deploy(
    daemon: Daemon, web_app: Path, tmp_path: Path
) -> None:
    port = free_port()
    await daemon.ok(*deploy(web_app, port))
    feed_url = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
    async with open_websocket_url(feed_url) as feed:
        # A restart without downtime is a restart on the feed too.
        await daemon.ok("service", "restart", "web")
        assert [await next_status(feed, "web") for _ in range(2)] == ["restarting", "running"]

        gate = tmp_path / "gate"
        build = f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.01)\n"
        commit(web_app, {"build.py": build, "VERSION": "v2\n"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                daemon.ok, *deploy(web_app, port, "--build-cmd", f"{PYTHON} build.py")
            )
            assert await next_status(feed, "web") == "deploying"
            text = await daemon.ok("service", "status", "web")
            assert text.splitlines()[0] == "web: deploying (deployment 1 serves) (unknown)"
            table = await daemon.ok("list")
            assert table.splitlines()[1].split()[:3] == ["web", "deploying", "(1"]
            gate.touch()
        assert await next_status(feed, "web") == "running"
    text = await daemon.ok("service", "status", "web")
    assert text.splitlines()[0] == "web: running (unknown)"


async def test_a_blueprint_carries_the_restart_policy(
    daemon: Daemon, web_app: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "dployr.toml"
    text = (
        f'name = "web"\nrun_cmd = "{PYTHON} app.py"\nport = {free_port()}\n'
        f'[remote]\nurl = "{web_app}"\n'
        '[restart]\nmode = "never"\ndelay = "250ms"\nmax_delay = 2\nmin_uptime = "300ms"\n'
    )
    plan.write_text(text)
    await daemon.ok("deploy", "--blueprint", str(plan))
    policy = json.loads(await daemon.ok("settings", "web", "--json"))["settings"]["restart"]
    assert policy == {
        "mode": "never",
        "delay": 0.25,
        "max_delay": 2,
        "max_restarts": 5,
        "window": 60,
        "min_uptime": 0.3,
    }
    plan.write_text(text.replace('mode = "never"', 'mode = "sometimes"'))
    refused = await daemon.cli("deploy", "--blueprint", str(plan))
    assert refused.one_line_error().endswith(
        "dployr.toml: restart.mode must be one of always, on-failure, never, not 'sometimes'"
    )
    plan.write_text("restart = 5\n" + text.split("[restart]", maxsplit=1)[0])
    refused = await daemon.cli("deploy", "--blueprint", str(plan))
    assert refused.one_line_error().endswith(
        "dployr.toml: restart must be a table of mode, delay, max_delay, max_restarts, window,"
        " min_uptime"
    )
