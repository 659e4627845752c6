"""A real daemon (a subprocess), Debian's chromium driven by Playwright, and a real service.

Playwright's sync API runs its own event loop, so these are plain (non-trio) tests, and
the daemon runs as ``python -m dployr up`` in a subprocess on a temporary data dir. Every
wait is a blocking read with a deadline or one of Playwright's auto-waiting assertions.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from dployr.cli.client import Client, Target
from dployr.logs.values import LogLine
from tests.helpers import UP_ARGS, make_repo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
WAIT = 30.0
"""A guard on every wait: longer than this and the test has failed."""

expect.set_options(timeout=WAIT * 1000)

APP = '''\
"""A tiny web app for dashboard tests."""
import http.server
import os
import sys
import urllib.parse

PORT = int(os.environ["PORT"])
VERSION = open("VERSION").read().strip()
for i in range(int(os.environ.get("START_LINES", "0"))):
    print(f"boot line {i:05d}")
print(f"listening on {PORT} version {VERSION}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/spam":
            count = int(query.get("n", ["1000"])[0])
            step = 5000
            for start in range(0, count, step):
                stop = min(count, start + step)
                sys.stdout.write("".join(f"spam {i:06d}\\n" for i in range(start, stop)))
                sys.stdout.flush()
            body = f"spammed {count}"
        elif url.path == "/warn":
            print("something went wrong", file=sys.stderr, flush=True)
            body = "warned"
        elif url.path.startswith("/env/"):
            body = os.environ.get(url.path[5:], "<unset>")
        else:
            body = f"hello {VERSION}"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print("request", self.path, flush=True)


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''


def app_repo(path: Path, version: str = "v1") -> Path:
    """A git repository holding the test app."""
    return make_repo(path, {"app.py": APP, "VERSION": version + "\n"})


class Daemon:
    """``dployr up`` in a subprocess on a data dir of its own."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra  # more `dployr up` options
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "daemon.log"
        self._drainer = threading.Thread()

    def start(self) -> None:
        """Start the daemon (on the port it had before, if any) and wait until it serves."""
        command = [sys.executable, "-m", "dployr", "up", "--data-dir", str(self.data_dir)]
        command += ["--port", str(self.port), "--service-host", "127.0.0.1"]
        command += ["--metrics-interval", "0.5"]  # charts get data within a test's patience
        command += [*UP_ARGS, *self.extra]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        up = queue.Queue[str]()
        # Drain the daemon's output into the log file for its whole life, so that a chatty
        # daemon never blocks on a full pipe.
        self._drainer = threading.Thread(target=_drain, args=(self.process, self.log, up))
        self._drainer.start()
        try:
            line = up.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"the daemon did not start; see {self.log}") from None
        if "is up:" not in line:
            raise AssertionError(f"the daemon did not start: {line}")
        self.url = line.split("is up:")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        endpoint = json.loads((self.data_dir / "daemon.json").read_text())
        assert endpoint["url"] == self.url

    def stop(self) -> None:
        """SIGTERM, then wait for every service to be stopped and the daemon to exit."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        finally:
            self._drainer.join(WAIT)
            assert process.stdout is not None
            process.stdout.close()

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def api(self) -> httpx.Client:
        """An API client with the admin token."""
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=WAIT,
        )


def _drain(process: subprocess.Popen[bytes], log: Path, up: queue.Queue[str]) -> None:
    """Copy the daemon's output to ``log``; put the "is up" line (or the end) on ``up``."""
    assert process.stdout is not None
    told = False
    with log.open("ab") as file:
        for line in process.stdout:
            file.write(line)
            file.flush()
            if not told and b"is up:" in line:
                up.put(line.decode(errors="replace"))
                told = True
    if not told:
        up.put(log.read_text(errors="replace")[-2000:])


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A running daemon; stopped (with its services) after the test."""
    data = tmp_path / "data"
    data.mkdir()
    running = Daemon(data)
    running.start()
    try:
        yield running
    finally:
        running.stop()


# The browser (and Playwright's driver) is tests/conftest.py's ``browser``: one per test
# process, shared with the browser tests of other folders.


@pytest.fixture
def page(browser: Browser, daemon: Daemon) -> Iterator[Page]:
    """A fresh browser tab on the daemon's dashboard; fails the test on a script error or a
    Content-Security-Policy violation."""
    context = browser.new_context(base_url=daemon.url, viewport=DESKTOP)
    tab = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            problems.append(message.text)

    tab.on("console", console)
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def sign_in(page: Page, daemon: Daemon, path: str = "/services") -> None:
    """Sign in through the login form, landing on ``path``."""
    page.goto(path)
    expect(page).to_have_url(f"{daemon.url}/login?next={path}")
    page.get_by_label("API token").fill(daemon.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(daemon.url + path)


def deploy(daemon: Daemon, name: str, repo: Path, *, wait: bool = True, **fields: Any) -> int:
    """Deploy the test app through the API; return the deployment's number.

    With ``wait`` (the default) this returns once the deploy is over (its last line is in
    the service's log), as ``dployr deploy`` does, so the next action is accepted;
    without, as soon as the daemon has taken the deploy."""
    body = {
        "remote": {"url": str(repo)},
        "run_cmd": f"{sys.executable} app.py",
        "port": None,
        "restart": {"min_uptime": 0.3},  # counts as started sooner than the default 5 s
        **fields,
    }
    body = {key: value for key, value in body.items() if value is not None}
    with daemon.api() as api:
        listed = api.get(f"/services/{name}/logs", params={"tail": 0})
        cursor = int(listed.json()["last_cursor"]) if listed.status_code == 200 else 0
        response = api.post(f"/services/{name}/deploy", json=body)
    assert response.status_code == 202, response.text
    number = int(response.json()["id"])
    if wait:
        deploy_over(daemon, name, number, cursor)
    return number


def deploy_over(daemon: Daemon, name: str, number: int, cursor: int = 0) -> None:
    """Wait until deploy ``number`` of ``name`` has ended (its lines come after ``cursor``)."""
    trio.run(_deploy_over, daemon, name, number, cursor)


async def _deploy_over(daemon: Daemon, name: str, number: int, cursor: int) -> None:
    """Read the service's log feed from ``cursor`` until deploy ``number`` has ended."""
    client = Client(Target(daemon.url, daemon.token))
    prefix = f"deploy {number}: "
    with trio.fail_after(WAIT * 4):
        async with client.follow(name, cursor=cursor) as feed:
            async for message in feed:
                if not isinstance(message, LogLine) or message.stream != "system":
                    continue
                step = message.line.removeprefix(prefix)
                if step != message.line and step.startswith(("succeeded", "failed")):
                    return
    raise AssertionError(f"the log feed of {name} ended before deploy {number} did")


def service_port(daemon: Daemon, name: str) -> int:
    """The public port of a service."""
    with daemon.api() as api:
        port = api.get(f"/services/{name}").json()["port"]
    assert port, f"{name} has no port"
    return int(port)


def snap(page: Page, name: str) -> None:
    """Save a screenshot of the page at desktop and phone width in test-artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or DESKTOP
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(size)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(port: int, path: str = "/") -> str:
    """GET a path of a service through its public port."""
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=WAIT).text
