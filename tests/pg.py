"""A real PostgreSQL server for the tests: Debian's postgresql-15, started once per test
run and shared by the pytest-xdist workers that need it, with a new database for every test.

The server runs from a temporary directory as a non-root user (the ``postgres`` user that
Debian's package creates, when the tests run as root), listens on a free loopback port and
on a unix socket in that directory, and is stopped and deleted at the end of the session.
``pg_ctl start -w`` returns once the server accepts connections.

The first worker to need a server starts it; the others find it in the run's shared temporary
directory; the last one done with it stops it (all under a file lock). A worker that comes
later starts a new one.

Import the fixtures into the conftest.py of the tests that need them (once: a fixture
imported into two modules is two fixtures, and two servers)::

    from tests.pg import postgres, postgres_url

    __all__ = ["postgres", "postgres_url"]  # fixtures, used by name
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import psycopg
import pytest

BIN = Path("/usr/lib/postgresql/15/bin")
"""Debian's postgresql-15 (``make test`` installs it)."""
SUPERUSER = "dployr"
START_TIMEOUT = 60
"""Seconds ``pg_ctl`` waits for the server to accept connections (it takes about one)."""
# Durability is not under test here: a server that never syncs starts and answers faster.
SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=100",
)


@attrs.frozen
class PostgresServer:
    """A running server: where it listens, and how to make a database on it."""

    root: Path
    port: int
    user: str | None
    """The system user it runs as, or None for the tests' own."""

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"test_{secrets.token_hex(8)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run(
            [*prefix, *command], check=False, capture_output=True, text=True, cwd=self.root
        )

    def stop(self) -> None:
        self.run(str(BIN / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server() -> PostgresServer:
    """initdb in a new temporary directory and start a server on it."""
    if not (BIN / "postgres").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({BIN}): apt-get install postgresql-15")
    root = Path(tempfile.mkdtemp(prefix="dployr-pg-"))
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = "postgres"
        account = pwd.getpwnam(user)
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PostgresServer(root, 0, user)
    init = server.run(
        str(BIN / "initdb"),
        "-D",
        str(server.data),
        "-U",
        SUPERUSER,
        "-A",
        "trust",
        "--no-sync",
        "--no-instructions",
        "-E",
        "UTF8",
        "--locale",
        "C",
    )
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr}")
    # A free port may be taken before the server binds it: try another one then.
    for _ in range(3):
        server = attrs.evolve(server, port=free_port())
        options = " ".join(
            [
                f"-p {server.port}",
                f"-k {root}",
                "-c listen_addresses=127.0.0.1",
                *(f"-c {setting}" for setting in SETTINGS),
            ]
        )
        started = server.run(
            str(BIN / "pg_ctl"),
            "start",
            "-D",
            str(server.data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-o",
            options,
        )
        if not started.returncode:
            return server
    log = (root / "server.log").read_text(errors="replace")
    shutil.rmtree(root, ignore_errors=True)
    pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log}")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if need be)."""
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The run's PostgreSQL server, started on first use, shared by the xdist workers."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    lock, described, users = shared / "postgres.lock", shared / "postgres.json", shared / "pg-users"
    me = users / f"{os.getpid()}-{secrets.token_hex(4)}"
    with locked(lock):
        if described.exists():
            known = json.loads(described.read_text())
            server = PostgresServer(Path(known["root"]), known["port"], known["user"])
        else:
            server = start_server()
            described.write_text(
                json.dumps({"root": str(server.root), "port": server.port, "user": server.user})
            )
        users.mkdir(exist_ok=True)
        me.touch()
    try:
        yield server
    finally:
        with locked(lock):
            me.unlink()
            if not any(users.iterdir()):
                server.stop()
                shutil.rmtree(server.root, ignore_errors=True)
                described.unlink()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database for this test alone."""
    return postgres.create_database()
