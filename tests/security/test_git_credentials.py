"""A git remote's password is never shown, never stored in the clear, never on a command line.

The remote is real https: a TLS server in the test, in front of ``git http-backend``, that
asks for Basic credentials. dployr's cache of the service's source is made beforehand with
the test's certificate authority in its git config (the only thing git is told besides the
URL), as a previous fetch would have left it.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import h11
import psutil
import pytest
import trio

from dployr.engine import sources
from tests.cli.conftest import Daemon
from tests.helpers import PYTHON, git, make_repo
from tests.tls import self_signed

pytestmark = pytest.mark.slow

USER = "deployer"
PASSWORD = "PASS-s3cr3t-5a9c1e"
WRONG = "WRONG-guess-77d3b0"


def certificate(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: its PEM file, and a server context."""
    cert_file, key_file = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


class GitServer:
    """Smart HTTP git over TLS for the repositories under ``root``, behind Basic auth."""

    def __init__(self, root: Path, context: ssl.SSLContext) -> None:
        self.root = root
        self.context = context
        self.port = 0
        self.refused: list[str] = []
        """The credentials of refused requests (empty text: none given)."""
        self.accepted = 0
        self.gits: list[dict[int, list[str]]] = []
        """For each accepted request: the command line of every git process talking to us."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        ssl_listeners = [trio.SSLListener(listener, self.context) for listener in listeners]
        task_status.started()
        await trio.serve_listeners(self._connection, ssl_listeners)

    async def _connection(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._request(stream, connection)
                if request is None:
                    return
                status, headers, answer = await self._answer(request, body)
                await stream.send_all(
                    connection.send(h11.Response(status_code=status, headers=headers))
                )
                await stream.send_all(connection.send(h11.Data(data=answer)))
                await stream.send_all(connection.send(h11.EndOfMessage()))
                connection.start_next_cycle()
        except (trio.BrokenResourceError, ssl.SSLError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _request(
        stream: trio.SSLStream[trio.SocketStream], connection: h11.Connection
    ) -> tuple[h11.Request | None, bytes]:
        request, body = None, b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                connection.receive_data(data)
                if not data and request is None:
                    return None, b""
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _answer(
        self, request: h11.Request, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        given = headers.get("authorization", "")
        if given != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
            decoded = base64.b64decode(given[6:]).decode() if given.startswith("Basic ") else ""
            self.refused.append(decoded)
            return 401, [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Length", "0")], b""
        self.accepted += 1
        self.gits.append(_gits_talking_to(self.port))
        path, _, query = request.target.decode().partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method.decode(),
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": USER,
            "GIT_PROTOCOL": headers.get("git-protocol", ""),
            "HTTP_CONTENT_ENCODING": headers.get("content-encoding", ""),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        done = await trio.run_process(
            ["git", "http-backend"], stdin=body, capture_stdout=True, env=env
        )
        head, _, answer = done.stdout.partition(b"\r\n\r\n")
        status, out = 200, [("Content-Length", str(len(answer)))]
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                out.append((key, value))
        return status, out, answer


def _gits_talking_to(port: int) -> dict[int, list[str]]:
    """Every git process whose command line names the server: pid -> command line."""
    found = {}
    for process in psutil.process_iter():
        try:
            cmdline = process.cmdline()
        except psutil.Error:
            continue
        if (
            cmdline
            and "git" in os.path.basename(cmdline[0])
            and any(f":{port}/" in a for a in cmdline)
        ):
            found[process.pid] = cmdline
    return found


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A running daemon; stopped (and checked to exit 0) after the test."""
    up = await Daemon.start(tmp_path / "data")
    try:
        yield up
    finally:
        with trio.CancelScope(shield=True):
            code, _ = await up.stop()
    assert code == 0


def _prepare_cache(data: Path, name: str, shown: str, ca: Path) -> None:
    """The source cache of a service as a fetch leaves it, trusting the test's certificate."""
    cache = data / "services" / name / "source"
    cache.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "--template=", str(cache)], check=True)
    git(cache, "config", "uploadpack.allowAnySHA1InWant", "true")
    git(cache, "config", "http.sslCAInfo", str(ca))
    (cache / "dployr-remote").write_text(shown + "\n")


async def _everything_shown(daemon: Daemon, name: str) -> list[str]:
    """What the CLI and the API show of a service: settings, deployments, logs, status."""
    outputs = []
    for args in (
        ["settings", name],
        ["deployments", name, "--json"],
        ["logs", name, "--tail", "1000"],
        ["get", name, "--json"],
    ):
        outputs.append(await daemon.ok(*args))
    async with daemon.http() as http:
        for path in (f"/services/{name}/settings", f"/services/{name}/deployments", "/services"):
            response = await http.get(path)
            assert response.status_code == 200
            outputs.append(response.text)
    return outputs


def _assert_sealed(data: Path, name: str, shown: str) -> None:
    """Sealed in the database, nowhere in the clear (database, WAL, logs, cache)."""
    with sqlite3.connect(data / "dployr.db") as db:
        rows = db.execute("SELECT service, remote FROM git_credentials").fetchall()
    db.close()
    assert rows == [(name, shown)]
    for secret in (PASSWORD, WRONG):
        assert _files_holding(data, secret.encode()) == []


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and secret in path.read_bytes()
    ]


async def test_a_git_password_is_used_but_never_shown_or_stored(
    daemon: Daemon, tmp_path: Path
) -> None:
    root = tmp_path / "git"
    app = make_repo(
        tmp_path / "app",
        {"worker.py": "import signal\nprint('private up', flush=True)\nsignal.pause()\n"},
    )
    await trio.run_process(["git", "clone", "-q", "--bare", str(app), str(root / "x.git")])
    ca, context = certificate(tmp_path)
    server = GitServer(root, context)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        where = f"127.0.0.1:{server.port}/x.git"
        shown = f"https://{USER}:***@{where}"
        _prepare_cache(daemon.data_dir, "private", shown, ca)
        deploy = [
            "deploy",
            "--min-uptime",
            "300ms",
            "--name",
            "private",
            "--run-cmd",
            f"{PYTHON} worker.py",
        ]

        # A wrong password: refused by the server, and the error line does not show it.
        wrong = await daemon.cli(*deploy, "--remote", f"https://{USER}:{WRONG}@{where}")
        line = wrong.one_line_error()
        assert "fetch failed" in line
        assert f"{USER}:{WRONG}" in server.refused  # git did send it, when asked
        assert server.accepted == 0

        # The right one, given again in the URL: the deploy works.
        out = await daemon.ok(*deploy, "--remote", f"https://{USER}:{PASSWORD}@{where}")
        assert f"==> fetching {shown}" in out
        assert server.accepted >= 1
        # A redeploy of the stored settings (the CLI sends the remote back with ***).
        out = await daemon.ok("deploy", "--name", "private")
        assert f"==> fetching {shown}" in out
        # A settings change with the password in the URL: stored sealed, shown as ***.
        async with daemon.http() as http:
            patched = await http.patch(
                "/services/private/settings",
                json={"remote": {"url": f"https://{USER}:{PASSWORD}@{where}"}},
            )
        assert patched.status_code == 200, patched.text
        assert patched.json()["settings"]["source"]["remote"] == shown
        out = await daemon.ok("deploy", "--name", "private")
        assert f"==> fetching {shown}" in out
        # A deploy that fails leaves the password that worked in place, like the settings.
        again = await daemon.cli(*deploy, "--remote", f"https://{USER}:{WRONG}@{where}")
        assert "fetch failed" in again.one_line_error()
        assert f"==> fetching {shown}" in await daemon.ok("deploy", "--name", "private")
        seen = server.accepted
        # The password was asked for by git, and was never on a git command line.
        command_lines = [cmdline for gits in server.gits for cmdline in gits.values()]
        assert command_lines, "no git process was seen talking to the server"
        for cmdline in command_lines:
            assert not any(PASSWORD in part for part in cmdline), cmdline

        # *** for another host does not carry the password over.
        moved = await daemon.cli("settings", "private", "--json")
        other = await daemon.cli(
            "deploy", "--name", "private", "--remote", f"https://{USER}:***@127.0.0.2:1/x.git"
        )
        assert "hidden" in other.one_line_error()
        assert server.accepted == seen
        nursery.cancel_scope.cancel()

    outputs = [wrong.err, wrong.out, again.err, again.out, out, moved.out, patched.text]
    outputs += await _everything_shown(daemon, "private")
    settings = json.loads(moved.out)["settings"]["source"]["remote"]
    assert settings == shown
    text = "\n".join(outputs)
    assert PASSWORD not in text
    assert WRONG not in text
    assert f"deploy 6: fetching {shown}" in text

    await daemon.stop()
    _assert_sealed(daemon.data_dir, "private", shown)


async def test_a_password_an_older_dployr_stored_is_sealed_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "worker"
    folder.mkdir()
    (folder / "worker.py").write_text("import signal\nsignal.pause()\n")
    first = await Daemon.start(tmp_path / "data")
    try:
        await first.ok(
            "deploy",
            "--min-uptime",
            "300ms",
            "--name",
            "old",
            "--remote",
            str(folder),
            "--run-cmd",
            f"{PYTHON} worker.py",
        )
    finally:
        with trio.CancelScope(shield=True):
            await first.stop()
    written = f"https://{USER}:{PASSWORD}@127.0.0.1:1/x.git"
    database = tmp_path / "data" / "dployr.db"
    with sqlite3.connect(database) as db:  # as dployr stored it before passwords were sealed
        (settings,) = db.execute("SELECT settings FROM services WHERE name = 'old'").fetchone()
        source = json.loads(settings)["source"]
        db.execute(
            "UPDATE services SET settings = ? WHERE name = 'old'",
            (settings.replace(json.dumps(source["remote"]), json.dumps(written)),),
        )
    db.close()

    second = await Daemon.start(tmp_path / "data")
    try:
        view = json.loads(await second.ok("settings", "old", "--json"))
        assert view["settings"]["source"]["remote"] == f"https://{USER}:***@127.0.0.1:1/x.git"
    finally:
        with trio.CancelScope(shield=True):
            code, _ = await second.stop()
    assert code == 0
    with sqlite3.connect(database) as db:
        stored = db.execute("SELECT settings FROM services").fetchall()
        kept = db.execute("SELECT service FROM git_credentials").fetchall()
    db.close()
    assert PASSWORD not in json.dumps(stored)
    assert kept == [("old",)]


@pytest.mark.parametrize(
    ("written", "shown", "password"),
    [
        ("https://u:p@host/x.git", "https://u:***@host/x.git", "p"),
        ("https://u:p%40w@host:8443/x.git", "https://u:***@host:8443/x.git", "p%40w"),
        ("ssh://git:p@host/x.git", "ssh://git:***@host/x.git", "p"),
        ("https://a@b:c@host/x", "https://a@b:***@host/x", "c"),
        ("https://token@host/x.git", "https://token@host/x.git", None),
        ("https://host/x.git", "https://host/x.git", None),
        ("git@host:x.git", "git@host:x.git", None),
        ("/srv/x.git", "/srv/x.git", None),
    ],
)
def test_the_password_of_a_remote_is_taken_out(
    written: str, shown: str, password: str | None
) -> None:
    assert sources.take_password(written) == (shown, password)
    assert sources.redact(f"fetching {written} failed") == f"fetching {shown} failed"


@pytest.mark.parametrize("password", [PASSWORD, "pass/with/slashes", "p:a:ss"])
@pytest.mark.parametrize("host", ["bad_host!", "host:port", "[::1"])
def test_a_refused_remote_does_not_quote_its_password(password: str, host: str) -> None:
    with pytest.raises(sources.SourceError) as refused:
        sources.check_remote(f"https://{USER}:{password}@{host}/x.git")
    assert password not in str(refused.value)
    assert f"{USER}:***@" in str(refused.value)
