"""No process a service or a build starts escapes a stop, whatever it does to detach.

The escapee below leaves its process group with ``setsid``, double-forks so that neither
its parent nor its group leader is ours, and clears its environment so that no variable
marks it as a service's: only the kernel's cgroup membership still knows whose it is.
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import psutil
import pytest
import trio

from dployr.engine.os.warden import NAME
from tests.helpers import PYTHON, Daemon, make_repo, wait_gone

pytestmark = pytest.mark.slow

WAIT = 30.0

ESCAPE = """\
import os, sys, time
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(write, str(os.getpid()).encode())
        os.execve("/bin/sleep", ["sleep", "100000"], {})
    os._exit(0)
os.close(write)
os.wait()
print("escaped", os.read(read, 32).decode(), flush=True)
if sys.argv[1:] != ["--exit"]:
    time.sleep(100000)
"""
"""Starts an escapee, then prints ``escaped <its pid>`` and sleeps (exits: ``--exit``)."""


def cli_env(daemon: Daemon) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    env["DPLOYR_HOME"] = str(daemon.data_dir)
    return env


async def dployr(daemon: Daemon, *args: str) -> str:
    """Run the CLI against ``daemon``; expect success; its output."""
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            [PYTHON, "-m", "dployr", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(daemon),
        )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def escaped(line: dict[str, object]) -> int:
    """The escapee's pid, from the line that announced it."""
    pid = int(str(line["line"]).split()[-1])
    assert alive(pid)
    return pid


async def deploy_runaway(daemon: Daemon, tmp_path: Path) -> dict[str, object]:
    """Deploy a service whose program leaves an escapee behind; the line announcing it."""
    repo = make_repo(tmp_path / "repo", {"escape.py": ESCAPE})
    await dployr(
        daemon, "deploy", "--min-uptime", "300ms", "--name", "runaway", "--remote", str(repo),
        "--run-cmd", f"{PYTHON} escape.py",
    )  # fmt: skip
    line = await daemon.wait_log("runaway", "escaped ")
    escaped(line)
    return line


def warden_of(daemon: Daemon) -> int:
    assert daemon.process is not None
    (warden,) = [
        child.pid
        for child in psutil.Process(daemon.process.pid).children()
        if child.cmdline()[3:4] == [NAME]
    ]
    return warden


async def test_an_escapee_dies_at_service_stop(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    try:
        pid = escaped(await deploy_runaway(daemon, tmp_path))
        await dployr(daemon, "service", "stop", "runaway")
        await wait_gone([pid])
    finally:
        assert await daemon.stop() == 0


async def test_an_escapee_dies_when_the_daemon_stops(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    try:
        pid = escaped(await deploy_runaway(daemon, tmp_path))
    finally:
        assert await daemon.stop() == 0
    await wait_gone([pid])


async def test_an_escapee_dies_with_a_killed_daemon(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    pid = escaped(await deploy_runaway(daemon, tmp_path))
    await daemon.kill9()  # its warden kills the instance's cgroups
    await wait_gone([pid])


async def test_an_escapee_of_a_killed_daemon_and_warden_dies_at_the_next_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    daemon = Daemon(data)
    await daemon.start()
    line = await deploy_runaway(daemon, tmp_path)
    pid = escaped(line)
    os.kill(warden_of(daemon), signal.SIGKILL)  # the worst case: nobody kills it now
    await daemon.kill9()
    assert alive(pid)
    again = Daemon(data)
    await again.start()
    try:
        await wait_gone([pid])  # before the service runs again
        cursor = int(str(line["cursor"]))
        restarted = escaped(await again.wait_log("runaway", "escaped ", cursor=cursor))
        assert restarted != pid
    finally:
        assert await again.stop() == 0
    await wait_gone([restarted])


async def test_an_escapee_of_a_build_dies_when_the_build_ends(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data")
    await daemon.start()
    try:
        repo = make_repo(tmp_path / "repo", {"escape.py": ESCAPE})
        await dployr(
            daemon, "deploy", "--min-uptime", "300ms", "--name", "builder", "--remote", str(repo),
            "--build-cmd", f"{PYTHON} escape.py --exit", "--run-cmd", "sleep 100000",
        )  # fmt: skip
        pid = int(str((await daemon.wait_log("builder", "escaped "))["line"]).split()[-1])
        await wait_gone([pid])
    finally:
        assert await daemon.stop() == 0


async def test_an_escapee_of_a_build_cut_short_by_kill_9_dies_at_the_next_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    daemon = Daemon(data)
    await daemon.start()
    repo = make_repo(tmp_path / "repo", {"escape.py": ESCAPE})
    async with daemon.client() as api:
        body = {
            "remote": {"url": str(repo)},
            "build_cmd": f"{PYTHON} escape.py",  # builds for good
            "run_cmd": "sleep 100000",
        }
        response = await api.post("/services/builder/deploy", json=body)
        assert response.status_code == 202, response.text
    pid = escaped(await daemon.wait_log("builder", "escaped "))
    os.kill(warden_of(daemon), signal.SIGKILL)
    await daemon.kill9()
    assert alive(pid)
    again = Daemon(data)
    await again.start()
    try:
        await wait_gone([pid])
        async with again.client() as api:
            deployments = (await api.get("/services/builder/deployments")).json()
        assert deployments[0]["status"] == "failed"
    finally:
        assert await again.stop() == 0


async def test_unfinished_folders_of_a_killed_daemon_are_removed_at_start(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    service = data / "services" / "web"
    unfinished = [
        service / ".source.new-0123abcd",
        service / ".source.old-89abcdef",
        service / "releases" / ".4.partial-deadbeef",
    ]
    kept = [service / "source", service / "releases" / "3", service / ".keep.new-1"]
    for folder in unfinished + kept:
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "file").write_bytes(b"x" * 1000)
    daemon = Daemon(data)
    await daemon.start()
    try:
        assert [folder for folder in unfinished if folder.exists()] == []
        assert [folder for folder in kept if not folder.exists()] == []
    finally:
        assert await daemon.stop() == 0


async def test_a_fetch_cut_short_by_kill_9_dies_with_the_daemon(tmp_path: Path) -> None:
    # A remote that accepts the connection and never answers: git (and its https
    # helper) wait on it until something kills them.
    connected = trio.Event()
    closed = trio.Event()

    async def hold(stream: trio.SocketStream) -> None:
        connected.set()
        while await stream.receive_some(4096):
            pass
        closed.set()

    daemon = Daemon(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, hold, 0, host="127.0.0.1")
        (listener,) = await nursery.start(serve)
        port = listener.socket.getsockname()[1]
        await daemon.start()
        async with daemon.client() as api:
            body = {"remote": {"url": f"https://127.0.0.1:{port}/app.git"}, "run_cmd": "true"}
            response = await api.post("/services/fetcher/deploy", json=body)
            assert response.status_code == 202, response.text
        with trio.fail_after(WAIT):
            await connected.wait()
        await daemon.kill9()
        with trio.fail_after(WAIT):
            await closed.wait()  # the warden killed git's cgroup
        nursery.cancel_scope.cancel()
