"""The process seam: own session, death with the daemon, group kills that wait."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest
import trio

from dployr.engine import launcher

pytestmark = pytest.mark.slow


async def test_a_process_outlives_the_threads_of_trios_cache(tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG follows the thread that forked: a child forked from one of trio's
    # worker threads dies when that thread has been idle for ten seconds. Ours must not.
    await trio.to_thread.run_sync(lambda: None)  # a worker thread exists, then idles
    process = await launcher.launch(
        launcher.LaunchSpec(
            f"exec {sys.executable} -c 'import time; time.sleep(60)'", tmp_path, os.environ
        )
    )
    started = time.monotonic()
    try:
        with trio.move_on_after(11.5):  # past the thread cache's idle timeout (10 s)
            await process.wait()
        assert process.returncode is None, f"killed after {time.monotonic() - started:.1f} s"
    finally:
        await launcher.stop(process, 1.0)


async def test_a_process_leads_its_own_session_and_group(tmp_path: Path) -> None:
    process = await launcher.launch(launcher.LaunchSpec("sleep 60", tmp_path, os.environ))
    try:
        assert os.getpgid(process.pid) == process.pid
        assert os.getsid(process.pid) == process.pid
        assert psutil.Process(process.pid).ppid() == os.getpid()
    finally:
        code = await launcher.stop(process, 1.0)
    assert code == -15  # SIGTERM was enough


async def test_stop_kills_a_group_member_that_ignores_sigterm(tmp_path: Path) -> None:
    script = (
        f"{sys.executable} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        ' print("ready", flush=True); time.sleep(60)\' & wait'
    )
    process = await launcher.launch(launcher.LaunchSpec(script, tmp_path, os.environ))
    seen = b""
    while not seen.endswith(b"\n"):  # the line may come in more than one read
        seen += await process.stdout.receive_some(100)
    assert seen == b"ready\n"
    members = launcher.group_members(process.pid)
    assert len(members) == 2
    await launcher.stop(process, 0.5)
    assert all(
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        for pid in members
    )


async def test_stop_gives_the_grace_to_the_whole_group_not_only_the_shell(tmp_path: Path) -> None:
    """A server behind ``sh -c`` finishes its work after SIGTERM, though the shell exits at once."""
    child = tmp_path / "server.py"
    child.write_text(
        "import signal, sys, time\n"
        "def finish(*_):\n"
        "    time.sleep(0.3)  # the requests in flight\n"
        "    open('finished', 'w').write('yes')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, finish)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    # `; true` keeps the shell from exec'ing the server: it stays the group's leader.
    process = await launcher.launch(
        launcher.LaunchSpec(f"{sys.executable} server.py; true", tmp_path, os.environ)
    )
    seen = b""
    while not seen.endswith(b"\n"):
        seen += await process.stdout.receive_some(100)
    members = launcher.group_members(process.pid)
    assert len(members) == 2
    await launcher.stop(process, 10)
    assert (tmp_path / "finished").read_text() == "yes"
    assert all(
        not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        for pid in members
    )
