"""The WebSocket feeds, against a real daemon: auth, resuming, events, slow clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.helpers import PYTHON, Daemon, make_repo, ws_handshake

pytestmark = pytest.mark.slow

COUNTER = (
    "import sys, time\n"
    "n = int(sys.argv[1])\n"
    "for i in range(1, n + 1):\n"
    "    print(f'line {i}')\n"
    "sys.stdout.flush()\n"
    "time.sleep(1e6)\n"
)
BURST = "for i in range(1, 1000001):\n    print(f'line {i}')\n"


async def deploy(daemon: Daemon, name: str, repo: Path, run: str) -> None:
    async with daemon.client() as api:
        response = await api.post(
            f"/services/{name}/deploy",
            json={"remote": {"url": str(repo)}, "run_cmd": run, "restart": {"min_uptime": 0.3}},
        )
        assert response.status_code == 202, response.text
        number = response.json()["id"]
    await daemon.wait_log(name, f"deploy {number}: succeeded")


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    running = Daemon(tmp_path / "data")
    await running.start()
    yield running
    assert await running.stop() == 0


def ws(daemon: Daemon, path: str) -> str:
    return daemon.url.replace("http://", "ws://") + path


FEEDS = [
    "/api/v1/events",
    "/api/v1/services/app/logs/stream",
    "/api/v1/services/app/metrics/stream",
]


@pytest.mark.parametrize("path", FEEDS)
async def test_feeds_refuse_a_missing_or_wrong_token(
    daemon: Daemon, tmp_path: Path, path: str
) -> None:
    repo = make_repo(tmp_path / "repo", {"c.py": COUNTER})
    await deploy(daemon, "app", repo, f"{PYTHON} c.py 1")
    assert (await ws_handshake(daemon.url, path, None)).status_code == 401
    assert (await ws_handshake(daemon.url, path, "dployr_wrong")).status_code == 401
    assert (await ws_handshake(daemon.url, path + "?token=dployr_wrong", None)).status_code == 401
    bearer = [(b"Authorization", f"Bearer {daemon.token}".encode())]
    async with open_websocket_url(ws(daemon, path), extra_headers=bearer):
        pass  # the right token in the header is accepted
    async with open_websocket_url(ws(daemon, f"{path}?token={daemon.token}")):
        pass  # and in the query, as browsers send it


async def test_a_log_feed_resumed_from_a_cursor_has_no_gap_or_duplicate(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"c.py": COUNTER})
    await deploy(daemon, "app", repo, f"{PYTHON} c.py 5000")
    await daemon.wait_log("app", "line 5000")
    seen: list[int] = []
    cursor = 0
    # Read the feed in three sessions, each resuming from the last cursor it saw.
    for stop_after in (1234, 3333, 5000):
        url = ws(daemon, f"/api/v1/services/app/logs/stream?cursor={cursor}&token={daemon.token}")
        async with open_websocket_url(url) as feed:
            while not seen or seen[-1] != stop_after:
                message = json.loads(await feed.get_message())
                assert message["type"] == "logs"  # the default: the lines that came together
                for line in message["lines"]:
                    assert line["type"] == "log"
                    assert set(line) >= {"cursor", "ts", "stream", "line", "deployment"}
                    cursor = line["cursor"]
                    if line["stream"] == "stdout":
                        seen.append(int(line["line"].split()[1]))
                        if seen[-1] == stop_after:
                            break
    assert seen == list(range(1, 5001))


async def test_the_events_feed_tells_status_and_deployment_changes(
    daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"c.py": COUNTER})
    url = ws(daemon, f"/api/v1/events?token={daemon.token}")
    messages: list[dict[str, object]] = []

    def seen(kind: str, status: str) -> bool:
        return any(m["type"] == kind and m.get("status") == status for m in messages)

    async with open_websocket_url(url) as events:
        await deploy(daemon, "app", repo, f"{PYTHON} c.py 1")
        with trio.fail_after(30):
            while not (seen("status", "running") and seen("deployment", "succeeded")):
                messages.append(json.loads(await events.get_message()))
    assert seen("status", "deploying")
    assert seen("deployment", "fetching")
    reports = [m for m in messages if m["type"] == "supervision"]
    assert {"kind": "child_started", "child": "process"}.items() <= next(
        m for m in reports if m["child"] == "process"
    ).items()
    assert any(m["supervisor"] == "local/app" for m in reports)  # the tree's paths
    for message in messages:
        if message["type"] != "supervision":
            assert message["service"] == "app"
            assert message["instance"] == "local"


async def memory_growth_while_logging(daemon: Daemon, tmp_path: Path, *, idle: bool) -> int:
    """RSS the daemon gained while a service wrote 1,000,000 lines (with an idle follower)."""
    assert daemon.process is not None
    process = psutil.Process(daemon.process.pid)
    name = "idle" if idle else "alone"
    repo = make_repo(tmp_path / name, {"burst.py": BURST})
    url = ws(daemon, f"/api/v1/events?token={daemon.token}")
    async with open_websocket_url(url) as events, daemon.client() as api:
        before = process.memory_info().rss
        # It exits once its lines are out: too soon to count as started (50 s), so its
        # deploy fails right then, with every line it wrote in history.
        body = {
            "remote": {"url": str(repo)},
            "run_cmd": f"{PYTHON} burst.py",
            "restart": {"min_uptime": 50},
        }
        assert (await api.post(f"/services/{name}/deploy", json=body)).status_code == 202

        async def first_exit() -> None:
            with trio.fail_after(120):
                while True:
                    message = json.loads(await events.get_message())
                    if message["type"] != "deployment" or message["service"] != name:
                        continue  # supervision reports, status and health changes
                    if message["status"] == "failed":
                        return

        if idle:  # connected, subscribed, and never reading
            feed = ws(daemon, f"/api/v1/services/{name}/logs/stream?tail=0&token={daemon.token}")
            async with open_websocket_url(feed):
                await first_exit()
                after = process.memory_info().rss
        else:
            await first_exit()
            after = process.memory_info().rss
        assert (await api.post(f"/services/{name}/stop")).status_code == 200
        params = {"streams": "stdout", "tail": 1}
        page = (await api.get(f"/services/{name}/logs", params=params)).json()
    assert page["lines"][0]["line"].startswith("line ")
    return after - before


async def test_a_client_that_never_reads_does_not_grow_the_daemon(
    daemon: Daemon, tmp_path: Path
) -> None:
    # 1,000,000 lines are about 12 MB of text, and as Python strings several times that:
    # an idle follower's queue is bounded, so the daemon does not hold them for it.
    alone = await memory_growth_while_logging(daemon, tmp_path, idle=False)
    with_idle = await memory_growth_while_logging(daemon, tmp_path, idle=True)
    assert with_idle - alone < 16 * 2**20, (alone, with_idle)


TWO_HALVES = (
    "import os, sys, time\n"
    "for i in range(1, 2001):\n"
    "    print(f'line {i}')\n"
    "sys.stdout.flush()\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.01)\n"
    "for i in range(2001, 4001):\n"
    "    print(f'line {i}', flush=i % 7 == 0)\n"
    "sys.stdout.flush()\n"
    "time.sleep(1e6)\n"
)


async def test_a_batched_log_feed_sends_the_same_lines_in_fewer_messages(
    daemon: Daemon, tmp_path: Path
) -> None:
    """By default, history and live lines come in ``logs`` messages, as the per-line feed
    (``?batch=0``) has them one by one."""
    go = tmp_path / "go"
    repo = make_repo(tmp_path / "repo", {"c.py": TWO_HALVES})
    await deploy(daemon, "app", repo, f"{PYTHON} c.py {go}")
    await daemon.wait_log("app", "line 2000")
    path = f"/api/v1/services/app/logs/stream?cursor=0&token={daemon.token}"
    assert (await ws_handshake(daemon.url, path + "&batch=maybe", None)).status_code == 400

    async def read(batched: bool, out: list[dict[str, object]], messages: list[int]) -> None:
        async with open_websocket_url(ws(daemon, path + ("" if batched else "&batch=0"))) as feed:
            while not out or out[-1]["line"] != "line 4000":
                message = json.loads(await feed.get_message())
                messages.append(1)
                if batched:
                    assert message["type"] == "logs"
                    out.extend(message["lines"])
                else:
                    assert message["type"] == "log"
                    out.append(message)
                if any(line["line"] == "line 2000" for line in out[-1:]):
                    go.touch()  # the second half is written while both are live

    with trio.fail_after(60):
        batched: list[dict[str, object]] = []
        single: list[dict[str, object]] = []
        batched_messages: list[int] = []
        single_messages: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, True, batched, batched_messages)
            nursery.start_soon(read, False, single, single_messages)
    assert batched == single
    cursors = [line["cursor"] for line in batched]
    assert cursors == list(range(1, len(cursors) + 1))  # no gap, no duplicate
    stdout = [line["line"] for line in batched if line["stream"] == "stdout"]
    assert stdout == [f"line {i}" for i in range(1, 4001)]
    assert len(batched_messages) < len(single_messages) / 10
