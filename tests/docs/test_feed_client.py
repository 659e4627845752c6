"""The example feed client of docs/feeds.md, run as a subprocess against a real daemon."""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.helpers import PYTHON, Daemon, make_repo

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "feed_client.py"

BOOTS = """\
import os, sys, time
boots = 1 + (int(open("boots").read()) if os.path.exists("boots") else 0)
open("boots", "w").write(str(boots))
for i in range(1, 101):
    print(f"boot {boots} line {i}")
sys.stdout.flush()
time.sleep(1e6)
"""

BURST_LINES = 500_000
BURST = f"""\
import os, sys, time
if os.path.exists("done"):
    time.sleep(1e6)
for i in range(1, {BURST_LINES + 1}):
    print(f"line {{i}}")
sys.stdout.flush()
open("done", "w").close()
"""

QUIET = "import time\ntime.sleep(1e6)\n"

Line = tuple[int, str, str]


class Output:
    """A subprocess's output, line by line."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._partial = b""
        self._ready: collections.deque[str] = collections.deque()

    async def line(self) -> str:
        while not self._ready:
            chunk = await self._stream.receive_some(1 << 16)
            if not chunk:
                raise AssertionError("the example client exited")
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self._ready.extend(part.decode() for part in complete)
        return self._ready.popleft()

    async def log_lines_until(self, done: Callable[[Line], bool]) -> list[Line]:
        """The client's log lines (cursor, stream, text), up to the first that is ``done``."""
        lines: list[Line] = []
        with trio.fail_after(120):
            while True:
                cursor, stream, text = (await self.line()).split(" ", 2)
                lines.append((int(cursor), stream, text))
                if done(lines[-1]):
                    return lines


@contextlib.asynccontextmanager
async def example_client(*args: str, stderr: Path) -> AsyncIterator[Output]:
    """Run the example client with ``args``; stop it (SIGTERM) when done."""
    with stderr.open("wb") as errors:
        process = await trio.lowlevel.open_process(
            [PYTHON, str(EXAMPLE), *args], stdout=subprocess.PIPE, stderr=errors
        )
    try:
        assert process.stdout is not None
        yield Output(process.stdout)
    finally:
        process.terminate()
        with trio.fail_after(10):
            await process.wait()


async def deploy(daemon: Daemon, name: str, repo: Path, run: str, uptime: float = 0.5) -> None:
    """Create or update a service and start deploying it (without waiting for the end).

    Its release counts as started after ``uptime`` seconds up (not the default 5 s).
    """
    async with daemon.client() as api:
        body = {"remote": {"url": str(repo)}, "run_cmd": run, "restart": {"min_uptime": uptime}}
        response = await api.post(f"/services/{name}/deploy", json=body)
    assert response.status_code == 202, response.text


async def history(daemon: Daemon, name: str) -> list[Line]:
    """Every line of a service's history, over REST."""
    lines: list[Line] = []
    async with daemon.client() as api:
        while True:
            params = {"after": lines[-1][0] if lines else 0, "limit": 10_000}
            page = (await api.get(f"/services/{name}/logs", params=params)).json()
            if not page["lines"]:
                return lines
            lines += [(x["cursor"], x["stream"], x["line"]) for x in page["lines"]]


async def test_the_client_resumes_after_a_daemon_restart_without_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = Daemon(data)
    await first.start()
    second = Daemon(data)
    try:
        repo = make_repo(tmp_path / "repo", {"a.py": BOOTS})
        await deploy(first, "app", repo, f"{PYTHON} a.py")
        errors = tmp_path / "client.err"
        args = ("--data-dir", str(data), "--cursor", "0", "app")
        async with example_client(*args, stderr=errors) as out:
            # Once the deploy is over, the service is what a daemon started again brings back.
            before = await out.log_lines_until(lambda line: line[2].startswith("deploy 1: succe"))
            assert ("stdout", "boot 1 line 100") in [(s, text) for _, s, text in before]
            assert await first.stop() == 0
            await second.start()  # on another port: the client finds it through daemon.json
            after = await out.log_lines_until(lambda line: line[2] == "boot 2 line 100")
        # Every line once, in order, as history has it: nothing missed or repeated.
        seen = before + after
        assert [cursor for cursor, _, _ in seen] == list(range(1, len(seen) + 1))
        assert seen == (await history(second, "app"))[: len(seen)]
        told = errors.read_text()
        assert "disconnected" in told
        assert f"following app after cursor {before[-1][0]}" in told
    finally:
        for daemon in (first, second):
            if daemon.process is not None and daemon.process.returncode is None:
                await daemon.stop()


async def test_the_client_reads_a_gap_over_rest(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    try:
        repo = make_repo(tmp_path / "repo", {"quiet.py": QUIET, "burst.py": BURST})
        await deploy(daemon, "app", repo, f"{PYTHON} quiet.py")
        events_url = daemon.url.replace("http://", "ws://") + f"/api/v1/events?token={daemon.token}"
        errors = tmp_path / "client.err"
        args = ("--url", daemon.url, "--token", daemon.token, "--cursor", "0", "app")
        async with (
            open_websocket_url(events_url) as events,
            example_client(*args, stderr=errors) as out,
        ):
            # Once the client is subscribed, the service writes far more than the feed holds
            # for a client that is not reading (this test does not read the client's output
            # yet, so the client blocks on its stdout and stops reading the feed).
            first = await out.log_lines_until(lambda line: line[2].startswith("deploy 1: succe"))
            await deploy(daemon, "app", repo, f"{PYTHON} burst.py", uptime=50)
            # The burst is over when its process exits: too soon to count as started, so
            # that deploy fails (quiet.py keeps running), and only once every line it
            # wrote is in history.
            with trio.fail_after(120):
                while True:
                    message = json.loads(await events.get_message())
                    if (message["type"], message.get("deployment")) == ("deployment", 2) and (
                        message["status"] == "failed"
                    ):
                        break
            async with daemon.client() as api:
                last = (await api.get("/services/app/logs", params={"tail": 1})).json()
            seen = first + await out.log_lines_until(lambda line: line[0] == last["last_cursor"])
        assert "gap: cursors" in errors.read_text()
        assert [cursor for cursor, _, _ in seen] == list(range(1, last["last_cursor"] + 1))
        burst = [text for _, stream, text in seen if stream == "stdout"]
        assert burst == [f"line {i}" for i in range(1, BURST_LINES + 1)]
    finally:
        await daemon.stop()
