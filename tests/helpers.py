"""Helpers shared by tests that run real services: git repos, apps, waiting on events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h11
import httpx
import psutil
import trio
from trio_websocket import open_websocket_url

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

PYTHON = sys.executable
"""Start Python children with this interpreter (the first python3 on PATH can be a slow shim)."""

WEB_APP = '''\
"""A tiny web app for tests: GET / answers, GET /crash exits, GET /env shows a variable."""
import http.server
import os
import sys

PORT = int(os.environ["PORT"])
DEPLOYMENT = os.environ.get("DPLOYR_DEPLOYMENT", "?")
VERSION = open("VERSION").read().strip() if os.path.exists("VERSION") else "none"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            print("crashing on request", file=sys.stderr, flush=True)
            os._exit(3)
        if self.path.startswith("/env/"):
            body = os.environ.get(self.path[5:], "<unset>")
        elif self.path == "/health":
            if os.path.exists("UNHEALTHY"):
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = "ok"
        elif self.path == "/slow":
            import time
            time.sleep(0.3)
            body = f"slow {VERSION}"
        else:
            body = f"hello {VERSION} {DEPLOYMENT}"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print("request", self.path, flush=True)


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"listening on {PORT} version {VERSION}", flush=True)
server.serve_forever()
'''


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; return its output."""
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A git repository at ``path`` with one commit of ``files``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    commit(path, files, "initial")
    return path


def commit(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Write ``files`` into ``repo`` and commit them; return the commit id."""
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def web_repo(path: Path, version: str = "v1") -> Path:
    """A repository holding the test web app."""
    return make_repo(path, {"app.py": WEB_APP, "VERSION": version + "\n"})


# TESTS_RUN marks the processes of this test run: daemons inherit it and pass it on to
# services (UP_ARGS), so the leak guard only looks at processes of this run, not at those of
# another run on the same machine. One id per test process (each xdist worker is one),
# inherited by what it starts.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if not os.environ.get("TESTS_RUN", "").endswith(f"-{_WORKER}"):
    os.environ["TESTS_RUN"] = f"{os.urandom(8).hex()}-{_WORKER}"
UP_ARGS = ("--pass-env", "TESTS_RUN", "--shared-user")
"""``dployr up`` arguments of the tests: services get the test run's mark (their
environment is otherwise clean), and run as root like the tests (as root, each would run
as a user of its own, which cannot reach this interpreter under /root or pytest's 0700
temporary folders; tests/security/test_isolation.py tests that on its own)."""
TEST_ENGINE: dict[str, Any] = {"pass_env": ("TESTS_RUN",), "service_users": False}
"""The same, as engine settings (``EngineConfig``)."""


def service_processes() -> dict[int, tuple[str, str]]:
    """Live processes of this test run's services: pid -> (instance id, service name).

    Read straight from /proc, each environment as bytes, parsed only when it holds the
    run's mark: the leak guard runs this twice around every test, and building a psutil
    object for each of the machine's processes costs several times more."""
    mark = f"TESTS_RUN={os.environ['TESTS_RUN']}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as file:
                raw = file.read()
        except OSError:  # gone already, or not ours to read
            continue
        if mark not in raw or b"DPLOYR_SERVICE=" not in raw:
            continue
        env = dict(item.partition(b"=")[::2] for item in raw.split(b"\0"))
        if env.get(b"TESTS_RUN") != mark.partition(b"=")[2] or b"DPLOYR_SERVICE" not in env:
            continue
        pid = int(entry.name)
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.NoSuchProcess:
            continue
        owner = os.fsdecode(env.get(b"DPLOYR_INSTANCE", b""))
        found[pid] = (owner, os.fsdecode(env[b"DPLOYR_SERVICE"]))
    return found


def pids_of_service(name: str, instance: str | None = None) -> list[int]:
    """Pids of live processes of service ``name`` (of one instance, if given)."""
    return sorted(
        pid
        for pid, (owner, service) in service_processes().items()
        if service == name and (instance is None or owner == instance)
    )


class Daemon:
    """A real ``dployr up`` in a subprocess, on a data dir, driven over its API."""

    def __init__(
        self, data_dir: Path, *, shared_user: bool = True, entry: Sequence[str] = ("-m", "dployr")
    ) -> None:
        self.data_dir = data_dir
        self.up_args = UP_ARGS if shared_user else tuple(a for a in UP_ARGS if a != "--shared-user")
        self.entry = tuple(entry)
        """The interpreter's arguments that run the command line: the package, or a
        wrapper that changes something first (``-c CODE ARG...``, then the CLI's)."""
        self.process: trio.Process | None = None
        self.url = ""

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    async def start(self) -> str:
        """Start the daemon and return its URL once it says it is up."""
        self.process = await trio.lowlevel.open_process(
            [
                PYTHON,
                *self.entry,
                "up",
                "--data-dir",
                str(self.data_dir),
                "--port",
                "0",
                "--service-host",
                "127.0.0.1",
                *self.up_args,
            ],
            stdout=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")},
        )
        assert self.process.stdout is not None
        seen = b""
        with trio.fail_after(30):
            while b"\n" not in seen:  # the first line says where it is up
                chunk = await self.process.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"dployr up exited before it was up: {seen!r}")
                seen += chunk
        first = seen.split(b"\n", 1)[0].decode()
        assert " is up: " in first, first
        self.url = first.split(" is up: ", 1)[1].split()[0]
        return self.url

    def client(self) -> httpx.AsyncClient:
        """An API client with the admin token."""
        return httpx.AsyncClient(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    async def kill9(self) -> None:
        """``kill -9`` the daemon, as a crash would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, and the daemon's exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            return await self.process.wait()

    async def wait_log(self, name: str, text: str, *, cursor: int = 0) -> dict[str, object]:
        """Wait for a line containing ``text`` in a service's log feed.

        Lines a busy feed skips (a ``gap``) are read from history, as a client should.
        """
        ws_url = self.url.replace("http://", "ws://") + (
            f"/api/v1/services/{name}/logs/stream?cursor={cursor}&token={self.token}"
        )
        with trio.fail_after(60):
            async with open_websocket_url(ws_url) as ws, self.client() as api:
                while True:
                    message = json.loads(await ws.get_message())
                    for line in message.get("lines", ()) if message.get("type") == "logs" else ():
                        if text in line["line"]:  # the feed's default: lines come together
                            return dict(line)
                    if message.get("type") == "log" and text in message["line"]:
                        return dict(message)
                    if message.get("type") == "gap":
                        after, last = int(message["from"]) - 1, int(message["to"])
                        while after < last:
                            params = {"after": after, "limit": 10_000}
                            page = await api.get(f"/services/{name}/logs", params=params)
                            lines = [x for x in page.json()["lines"] if x["cursor"] <= last]
                            if not lines:
                                break
                            for line in lines:
                                if text in line["line"]:
                                    return dict(line)
                            after = lines[-1]["cursor"]


async def raw_request(
    url: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    chunks: list[bytes] = (),  # type: ignore[assignment]
) -> httpx.Response:
    """One request by hand (h11), reading the answer while the body is still being sent.

    For what httpx cannot do: a WebSocket handshake that is refused (trio-websocket leaks
    the socket of a refused one), and an answer that comes before the body is all sent.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = h11.Connection(h11.CLIENT)
    request = h11.Request(method=method, target=path, headers=[("Host", host), *headers])
    status, body, answer = 0, b"", {}
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(host, int(port)) as stream:

            async def send() -> None:
                try:
                    await stream.send_all(client.send(request))
                    for chunk in chunks:
                        await stream.send_all(client.send(h11.Data(data=chunk)))
                    await stream.send_all(client.send(h11.EndOfMessage()))
                except (trio.BrokenResourceError, h11.LocalProtocolError):
                    return  # the server answered and closed before the body ended

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                while True:
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        answer = {k.decode(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        break
                nursery.cancel_scope.cancel()
    return httpx.Response(status, headers=answer, content=body)


async def ws_handshake(url: str, path: str, token: str | None) -> httpx.Response:
    """A WebSocket handshake on ``path``; the HTTP answer of a refused one."""
    headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    return await raw_request(url, "GET", path, headers)


async def wait_gone(pids: list[int]) -> None:
    """Wait (5 s at most) until every process of ``pids`` has exited, through pidfds."""
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue  # gone already
        with trio.fail_after(5):
            for fd in fds:
                await trio.lowlevel.wait_readable(fd)
    finally:
        for fd in fds:
            os.close(fd)


class Output:
    """What a process prints on ``stream`` (its stdout), read line by line as a test waits
    for what it says."""

    GUARD = 30.0
    """A wait longer than this has failed."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._partial = b""
        self._ended = False
        self._looked_at = 0
        self.lines: list[str] = []
        """Every line read so far."""

    @property
    def text(self) -> str:
        """Every line read so far, as one text."""
        return "\n".join(self.lines)

    async def wait_for(self, text: str) -> str:
        """The next line holding ``text``: lines an earlier wait went past are not looked
        at again."""
        with trio.fail_after(self.GUARD):
            while True:
                while self._looked_at < len(self.lines):
                    line = self.lines[self._looked_at]
                    self._looked_at += 1
                    if text in line:
                        return line
                if not await self._receive():
                    raise AssertionError(f"the process ended before saying {text!r}: {self.lines}")

    async def read_to_end(self) -> list[str]:
        """Read until the process closes its stdout (it ended); every line it printed."""
        with trio.fail_after(self.GUARD):
            while await self._receive():
                pass
        return self.lines

    async def _receive(self) -> bool:
        """Read what is there (waiting for some); False once the stream has ended."""
        if self._ended:
            return False
        chunk = await self._stream.receive_some(65536)
        if not chunk:
            self._ended = True
            if self._partial:
                self.lines.append(self._partial.decode())
            await self._stream.aclose()
            return False
        *done, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.decode() for line in done]
        return True
