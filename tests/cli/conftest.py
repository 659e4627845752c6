"""A real ``dployr up`` on loopback, and the real CLI run against it as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.helpers import PYTHON, UP_ARGS, WEB_APP, pids_of_service, web_repo

WAIT = 20.0
"""A guard on every wait: a test that waits longer than this has failed."""


@attrs.frozen
class Result:
    """How one CLI run ended."""

    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        """The run failed with exactly one line on stderr, ``error: ...``; return it."""
        assert self.code != 0, f"expected a failure, got exit 0: {self.out!r}"
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.err!r}"
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any DPLOYR_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    env.update(extra)
    return env


async def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: bytes = b"",
) -> Result:
    """Run ``python -m dployr ARGS`` to its end; no run may ever print a traceback."""
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            [PYTHON, "-m", "dployr", *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=dict(env),
            cwd=cwd,
        )
    result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
    assert "Traceback" not in result.err, result.err
    return result


async def run_all(daemon: Daemon, commands: Sequence[Sequence[str]]) -> list[Result]:
    """Run CLI commands side by side (they only read or are refused); results in order."""
    results: list[Result | None] = [None] * len(commands)
    limiter = trio.CapacityLimiter(4)

    async def one(index: int, args: Sequence[str]) -> None:
        async with limiter:
            results[index] = await daemon.cli(*args)

    async with trio.open_nursery() as nursery:
        for index, args in enumerate(commands):
            nursery.start_soon(one, index, args)
    return [r for r in results if r is not None]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Daemon:
    """``dployr up`` on a data dir of its own, as a subprocess."""

    def __init__(self, data_dir: Path, process: trio.Process, url: str, banner: list[str]):
        self.data_dir = data_dir
        self.process = process
        self.url = url
        self.banner = banner
        """The lines ``dployr up`` printed when it came up."""
        self.env = clean_env(DPLOYR_HOME=str(data_dir))
        """The environment a CLI run needs to find this daemon."""
        self._stopped: tuple[int, str] | None = None

    @classmethod
    async def start(cls, data_dir: Path, *extra: str) -> Daemon:
        """Start ``dployr up`` and return once it printed that it is up."""
        process, lines = await start_up(data_dir, *extra)
        assert " is up: " in lines[0], lines
        url = lines[0].split(" is up: ", 1)[1].split()[0]
        return cls(data_dir, process, url, lines)

    @property
    def token(self) -> str:
        """The admin token the daemon wrote."""
        return (self.data_dir / "admin-token").read_text().strip()

    async def cli(self, *args: str, cwd: Path | None = None, stdin: bytes = b"") -> Result:
        """Run the CLI against this daemon (found through DPLOYR_HOME)."""
        return await run_cli(*args, env=self.env, cwd=cwd, stdin=stdin)

    async def ok(self, *args: str, cwd: Path | None = None) -> str:
        """Run the CLI, expect exit 0 and nothing on stderr; return its stdout."""
        result = await self.cli(*args, cwd=cwd)
        assert result.code == 0, (args, result)
        assert result.err == "", (args, result.err)
        return result.out

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        """An API client, with the admin token unless another is given."""
        return httpx.AsyncClient(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=WAIT,
        )

    async def services(self) -> dict[str, dict[str, Any]]:
        """Every service as the API shows it, by name."""
        async with self.http() as http:
            response = await http.get("/services")
        response.raise_for_status()
        return {s["name"]: s for s in response.json()}

    async def snapshot(self) -> dict[str, tuple[Any, ...]]:
        """What runs now: for each service its status, pid, deployment and live pids."""
        return {
            name: (s["status"], s["pid"], s["deployment"], tuple(pids_of_service(name)))
            for name, s in (await self.services()).items()
        }

    async def stop(self) -> tuple[int, str]:
        """SIGTERM ``dployr up``; its exit code and the rest of its output."""
        if self._stopped is None:
            self.process.send_signal(signal.SIGTERM)
            self._stopped = await finish(self.process)
        return self._stopped


async def start_up(
    data_dir: Path, *extra: str, env: Mapping[str, str] | None = None
) -> tuple[trio.Process, list[str]]:
    """Start ``dployr up --data-dir DATA_DIR EXTRA``; its process and the lines it printed.

    Returns once four lines are out (URL, token, data dir, the services' user) or the
    process has ended.
    With ``env``, ``--data-dir`` is left out: the environment says where the data is.
    """
    stderr = (data_dir.parent / f"{data_dir.name}.stderr").open("ab")
    where = ["--data-dir", str(data_dir)] if env is None else []
    process = await trio.lowlevel.open_process(
        [
            PYTHON,
            "-m",
            "dployr",
            "up",
            *where,
            "--port",
            "0",
            "--service-host",
            "127.0.0.1",
            *UP_ARGS,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=dict(env) if env is not None else clean_env(),
    )
    stderr.close()
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(WAIT):
        while seen.count(b"\n") < 4:
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                break
            seen += chunk
    return process, seen.decode().splitlines()


async def finish(process: trio.Process) -> tuple[int, str]:
    """Wait for a process that was told to stop; its exit code and remaining stdout."""
    assert process.stdout is not None
    rest = b""
    with trio.fail_after(WAIT):
        while chunk := await process.stdout.receive_some(4096):
            rest += chunk
        code = await process.wait()
    await process.stdout.aclose()
    return code, rest.decode()


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


@pytest.fixture
def web_app(tmp_path: Path) -> Path:
    """A git repository holding the test web app (GET /env/KEY shows a variable)."""
    return web_repo(tmp_path / "web")


@pytest.fixture
def worker_folder(tmp_path: Path) -> Path:
    """A plain folder holding a worker that prints a line and then waits."""
    folder = tmp_path / "worker"
    folder.mkdir()
    (folder / "worker.py").write_text(
        "import os, signal, sys\n"
        "print('worker up', os.environ.get('GREETING', ''), flush=True)\n"
        "signal.pause()\n"
    )
    (folder / "app.py").write_text(WEB_APP)
    return folder


async def http_get(port: int, path: str = "/") -> str:
    """GET a path of a service's public port; the body."""
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
    response.raise_for_status()
    return response.text


def process_group(name: str) -> int | None:
    """The one process group the service's live processes are in (its pid), or None.

    A run command goes through a shell, so a service is a group: the pid dployr shows
    leads it.
    """
    groups = set()
    for pid in pids_of_service(name):
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    assert len(groups) <= 1, f"{name} runs in several process groups: {groups}"
    return groups.pop() if groups else None
