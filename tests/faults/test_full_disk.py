"""A full disk: with the data dir on a 20 MB tmpfs and one service logging fast, no service
is killed or misreported, log history pauses with a counted gap and resumes by itself,
stop and delete work, and the disk condition is shown (issue 12, point 2)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from dployr.store.reserve import RESERVE_FILE_NAME
from tests.faults.disks import fill, small_disk
from tests.helpers import PYTHON, Daemon, make_repo, pids_of_service, wait_gone

pytestmark = pytest.mark.slow

WAIT = 60.0
"""A guard on every wait (a loaded machine starts and stops processes slowly)."""

QUIET = (
    "import itertools, sys, time\n"
    "for n in itertools.count():\n"
    "    print(f'tick {n}', flush=True)\n"
    "    time.sleep(0.2)\n"
)
FAST = (
    "import sys\nline = b'x' * 200 + b'\\n'\nwhile True:\n    sys.stdout.buffer.write(line * 64)\n"
)


class Events:
    """The daemon's events feed, read in the background; wait for one that matches."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._arrived = trio.Event()

    async def read(self, daemon: Daemon, *, task_status: trio.TaskStatus[None]) -> None:
        url = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
        async with open_websocket_url(url) as ws:
            task_status.started()
            while True:
                self.seen.append(json.loads(await ws.get_message()))
                self._arrived.set()
                self._arrived = trio.Event()

    async def wait(self, after: int, **fields: object) -> dict[str, Any]:
        """The first event from index ``after`` on with these fields."""
        with trio.fail_after(WAIT):
            while True:
                for event in self.seen[after:]:
                    if all(event.get(k) == v for k, v in fields.items()):
                        return event
                await self._arrived.wait()


@asynccontextmanager
async def daemon_on(data: Path) -> AsyncIterator[tuple[Daemon, Events]]:
    daemon = Daemon(data)
    await daemon.start()
    try:
        async with trio.open_nursery() as nursery:
            events = Events()
            await nursery.start(events.read, daemon)
            yield daemon, events
            nursery.cancel_scope.cancel()
    finally:
        assert await daemon.stop() == 0


async def deploy(daemon: Daemon, events: Events, name: str, repo: Path, script: str) -> None:
    mark = len(events.seen)
    async with daemon.client() as api:
        body = {
            "remote": {"url": str(repo)},
            "run_cmd": f"{PYTHON} {script}",
            "restart": {"min_uptime": 0.3},  # started (and restarted) after 0.3 s up, not 5
        }
        response = await api.post(f"/services/{name}/deploy", json=body)
        assert response.status_code == 202, response.text
    # Waited for on the events feed: its log line may be dropped when the disk fills.
    await events.wait(mark, type="deployment", service=name, status="succeeded")


async def service(daemon: Daemon, name: str) -> dict[str, Any]:
    async with daemon.client() as api:
        response = await api.get(f"/services/{name}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


async def test_a_full_disk_never_kills_a_service_nor_lies_about_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app", {"quiet.py": QUIET, "fast.py": FAST})
    with small_disk(tmp_path / "data", "20m") as data:
        async with daemon_on(data) as (daemon, events):
            assert (data / RESERVE_FILE_NAME).stat().st_size > 0
            await deploy(daemon, events, "quiet", repo, "quiet.py")
            mark = len(events.seen)
            await deploy(daemon, events, "fast", repo, "fast.py")
            await events.wait(mark, type="disk", full=True)

            # The daemon released its reserve and paused history: it says so everywhere.
            dropped_then = await assert_disk_shown(daemon, full=True)
            listing = await trio.run_process(
                [PYTHON, "-m", "dployr", "--data-dir", str(data), "list"],
                capture_stdout=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")},
            )
            assert "instance local: disk full, log history paused" in listing.stdout.decode()

            # The fast service is not crash-looped into failed by its log: it runs on.
            fast = await service(daemon, "fast")
            assert (fast["status"], fast["restarts"]) == ("running", 0)
            assert fast["pid"] in pids_of_service("fast")

            # A quiet service that dies is seen dead and restarted.
            await kill_and_see_restarted(daemon, events, "quiet")

            # Restart, stop and start work on the full disk.
            async with daemon.client() as api:
                assert (await api.post("/services/quiet/restart")).status_code == 200
                again = await service(daemon, "quiet")
                assert again["status"] == "running"
                assert (await api.post("/services/quiet/stop")).status_code == 200
                assert (await service(daemon, "quiet"))["status"] == "stopped"
                await wait_gone([again["pid"]])
                assert (await api.post("/services/quiet/start")).status_code == 200
            assert (await service(daemon, "quiet"))["status"] == "running"

            # Even with the disk filled to the last byte by someone else (the reserve
            # too), a service that dies is restarted: its process record is skipped.
            filler = fill(data)
            await kill_and_see_restarted(daemon, events, "quiet")
            # A stop works on that disk too (it frees what the service holds).
            quiet = await service(daemon, "quiet")
            async with daemon.client() as api:
                assert (await api.post("/services/quiet/stop")).status_code == 200
            await wait_gone([quiet["pid"]])
            assert (await service(daemon, "quiet"))["status"] == "stopped"

            # Deleting the fast service works on that disk, and frees its history:
            # history resumes by itself, first with the count of what it could not keep.
            fast_pids = pids_of_service("fast")
            mark = len(events.seen)
            async with daemon.client() as api:
                response = await api.delete("/services/fast")
                assert response.status_code == 200, response.text
            await wait_gone(fast_pids)
            filler.unlink()
            await events.wait(mark, type="disk", full=False)
            async with daemon.client() as api:
                assert (await api.post("/services/quiet/start")).status_code == 200
            dropped = await daemon.wait_log("quiet", "lines dropped: disk full")
            assert dropped["stream"] == "system"
            ticks = await daemon.wait_log("quiet", "tick", cursor=int(dropped["cursor"]))
            assert int(ticks["cursor"]) > int(dropped["cursor"])
            # The count of lines dropped is a total: it never goes down (a deleted
            # service's lines stay counted).
            assert await assert_disk_shown(daemon, full=False) >= dropped_then
            async with daemon.client() as api:
                assert (await api.post("/services/quiet/stop")).status_code == 200


async def kill_and_see_restarted(daemon: Daemon, events: Events, name: str) -> None:
    """kill -9 the service's process: it is seen dead, restarted, and runs again."""
    before = await service(daemon, name)
    mark = len(events.seen)
    os.kill(before["pid"], signal.SIGKILL)
    await events.wait(mark, type="status", service=name, status="restarting")
    await events.wait(mark, type="status", service=name, status="running")
    after = await service(daemon, name)
    assert after["status"] == "running"
    assert after["pid"] != before["pid"]
    assert pids_of_service(name) == [after["pid"]]


async def assert_disk_shown(daemon: Daemon, *, full: bool) -> int:
    """The disk's condition in the data dir, the instance's info and /metrics; the count
    of lines dropped so far."""
    assert (daemon.data_dir / RESERVE_FILE_NAME).exists() is not full
    async with daemon.client() as api:
        (instance,) = (await api.get("/instances")).json()
        assert instance["disk_full"] is full
        assert instance["log_lines_dropped"] > 0
        metrics = await api.get(daemon.url + "/metrics")
        assert f'dployr_disk_full{{instance="local"}} {int(full)}' in metrics.text
        dropped = int(instance["log_lines_dropped"])
        assert 'dployr_log_lines_dropped_total{instance="local"} ' in metrics.text
        return dropped
