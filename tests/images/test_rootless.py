"""dployr run as a user other than root runs podman rootless: a real user with its own
subordinate ids, the daemon as that user, a loopback registry (real podman, no mocks).

The user, its ``/etc/subuid`` and ``/etc/subgid`` ranges and its runtime folder are made
for the test and removed after it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import psutil
import pytest
import trio
from trio_websocket import open_websocket_url

from dployr.engine import podman
from tests.cli.conftest import Result, free_port, http_get
from tests.cli.test_restarts import next_status
from tests.images.conftest import WAIT, Registry, podman_cmd

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SUBIDS = (Path("/etc/subuid"), Path("/etc/subgid"))
RANGE = 65536


@attrs.frozen
class User:
    """A user of the machine made for a test, and how to run dployr as it."""

    name: str
    uid: int
    gid: int
    home: Path
    runtime: Path
    python: list[str]
    """How the user runs Python with dployr importable."""
    pythonpath: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "XDG_RUNTIME_DIR": str(self.runtime),
            "TESTS_RUN": os.environ["TESTS_RUN"],
            **extra,
        }
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        return env

    def run(self, *words: str, env: dict[str, str] | None = None) -> str:
        """Run a command as the user to its end; its stdout."""
        done = subprocess.run(
            words, check=True, capture_output=True, timeout=WAIT,
            user=self.uid, group=self.gid, extra_groups=[], env=env or self.env(),
        )  # fmt: skip
        return done.stdout.decode()


@pytest.fixture
def user() -> Iterator[User]:
    """A new user with subordinate ids, for rootless podman."""
    name = f"dprl{os.environ['TESTS_RUN'][:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    entry = pwd.getpwnam(name)
    runtime = Path(f"/run/user/{entry.pw_uid}")  # (made by logind where there is one)
    try:
        start = _free_subids()
        ids = f"{start}-{start + RANGE - 1}"  # usermod writes the files under their lock
        subprocess.run(["usermod", "--add-subuids", ids, "--add-subgids", ids, name], check=True)
        runtime.mkdir(parents=True, exist_ok=True)
        os.chown(runtime, entry.pw_uid, entry.pw_gid)
        runtime.chmod(0o700)
        python, pythonpath = _python_for(entry.pw_uid, entry.pw_gid)
        yield User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir), runtime, python,
                   pythonpath)  # fmt: skip
    finally:
        _end_processes_of(name)
        # (userdel removes the user's subordinate ids too)
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
        shutil.rmtree(runtime, ignore_errors=True)


def _free_subids() -> int:
    """The start of a range of subordinate ids no entry uses."""
    end = 2_000_000
    for path in SUBIDS:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    return end


def _python_for(uid: int, gid: int) -> tuple[list[str], str]:
    """A Python the user can run that imports this dployr: the test's own, or (when the
    user may not reach it, e.g. under /root) the system's of the same version with this
    checkout's packages on its path."""
    paths = f"{REPO}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python, pythonpath in ((sys.executable, ""), (f"/usr/bin/{version}", paths)):
        try:
            done = subprocess.run(
                [python, "-c", "import dployr.cli"], check=False, capture_output=True,
                timeout=WAIT, user=uid, group=gid, extra_groups=[], cwd="/",
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath},
            )  # fmt: skip
        except PermissionError:
            continue  # the user may not run it
        if done.returncode == 0:
            return [python], pythonpath
    raise AssertionError(f"no Python that the test user can run imports dployr from {REPO}")


def _end_processes_of(name: str) -> None:
    """SIGKILL what the test's user still runs (podman's pause process holds its user
    namespace after the daemon is gone)."""
    uid = pwd.getpwnam(name).pw_uid
    for process in psutil.process_iter(["uids"]):
        if process.info["uids"] is not None and process.info["uids"].real == uid:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                continue


async def run_cli(data: Path, *args: str) -> Result:
    """The CLI (as root, which may read the daemon's token) against the user's daemon."""
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            [sys.executable, "-m", "dployr", *args], capture_stdout=True, capture_stderr=True,
            check=False, env={**os.environ, "DPLOYR_HOME": str(data)},
        )  # fmt: skip
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_dployr_as_a_user_runs_podman_rootless(user: User, registry: Registry) -> None:
    data = Path(tempfile.mkdtemp(prefix="dployr-rootless-"))
    os.chown(data, user.uid, user.gid)
    process = await trio.lowlevel.open_process(
        [*user.python, "-m", "dployr", "up", "--data-dir", str(data / "data"), "--port", "0",
         "--service-host", "127.0.0.1", "--pass-env", "TESTS_RUN"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/",
        user=user.uid, group=user.gid, extra_groups=[], env=user.env(),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(WAIT):
            while seen.count(b"\n") < 4:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, seen
                seen += chunk
        banner = seen.decode()
        assert f"services run as {user.name}, dployr's own user" in banner, banner
        url = banner.split(" is up: ", 1)[1].split()[0]

        port = free_port()
        deployed = await run_cli(data / "data", "deploy", "--name", "web", "--image",
                                 f"{registry.repo}:v1", "--port", str(port),
                                 "--min-uptime", "0.3")  # fmt: skip
        assert deployed.code == 0, deployed
        assert await http_get(port, "/version") == "v1\n"
        # The container is in the user's podman, not root's.
        ps = ("ps", "--all", "--format", "{{.Names}}")
        (name,) = user.run(*podman.argv(*ps)).split()
        assert "-web-" in name
        assert name not in podman_cmd(*ps)

        # Its process killed, the container is started again.
        httpd = [
            p for p in psutil.process_iter(["uids", "cmdline"])
            if p.info["uids"] is not None and p.info["uids"].real == user.uid
            and "httpd" in (p.info["cmdline"] or [])
        ]  # fmt: skip
        assert len(httpd) == 1, httpd
        token = (data / "data" / "admin-token").read_text().strip()
        feed_url = url.replace("http://", "ws://") + f"/api/v1/events?token={token}"
        async with open_websocket_url(feed_url) as feed:
            httpd[0].kill()
            assert [await next_status(feed, "web") for _ in range(2)] == ["restarting", "running"]
        assert await http_get(port, "/version") == "v1\n"

        # Delete leaves no container of the user's.
        deleted = await run_cli(data / "data", "delete", "web", "--yes")
        assert deleted.code == 0, deleted
        assert user.run(*podman.argv(*ps)).split() == []
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            code = await process.wait()
        shutil.rmtree(data, ignore_errors=True)
    assert code == 0
