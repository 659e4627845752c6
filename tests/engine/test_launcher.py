"""The process seam: own session, death with the daemon, group kills that wait."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
import trio

from dployr.engine.os import cgroups, launcher

pytestmark = pytest.mark.slow


async def test_a_process_outlives_the_threads_of_trios_cache(tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG follows the thread that forked: a child marked with it and forked
    # from one of trio's worker threads would die when that thread has been idle for ten
    # seconds (dployr once did this). A service must outlive every thread but the daemon.
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


async def read_all(process: launcher.ServiceProcess) -> bytes:
    out = b""
    while chunk := await process.stdout.receive_some(65536):
        out += chunk
    return out


async def test_a_simple_command_is_the_groups_leader_without_a_shell(tmp_path: Path) -> None:
    (tmp_path / "pid.py").write_text(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
    )
    simple = f"{sys.executable} pid.py"
    process = await launcher.launch(launcher.LaunchSpec(simple, tmp_path, os.environ))
    piped = await launcher.launch(launcher.LaunchSpec(f"{simple} | cat", tmp_path, os.environ))
    try:
        assert int(await process.stdout.receive_some(100)) == process.pid
        assert launcher.group_members(process.pid) == [process.pid]
        assert int(await piped.stdout.receive_some(100)) != piped.pid  # the shell's child
        assert psutil.Process(piped.pid).name() == "sh"
    finally:
        assert await launcher.stop(process, 1.0) == -15
        await launcher.stop(piped, 1.0)


@pytest.fixture
def real_tmp_path(tmp_path: Path) -> Path:
    """``tmp_path`` as the shell sees it, without symbolic links."""
    return tmp_path.resolve()


@pytest.mark.parametrize(
    "command",
    [
        "/usr/bin/printf '%s,' $GREETING \"two  words\" *.txt ${MISSING:-fallback} ~",
        "/bin/false",
        "/usr/bin/printenv PWD",
        "no-such-program-anywhere --flag",
        "./not-executable.txt",
        "/bin/echo one\n/bin/echo two",
        "/bin/echo\xa0hi",
        "'cd' / && /bin/pwd",
        "/usr/bin/env",
    ],
)
async def test_a_command_gives_the_output_and_exit_status_it_gives_in_sh(
    real_tmp_path: Path, command: str
) -> None:
    tmp_path = real_tmp_path
    for name in ("a.txt", "b.txt", "not-executable.txt"):
        (tmp_path / name).write_text("x")
    # A name the shell cannot export, and a PWD that is not the working dir.
    env = {**os.environ, "GREETING": "hello world", "A.B": "dropped", "PWD": "/"}
    plain = await trio.run_process(
        ["/bin/sh", "-c", command], cwd=tmp_path, env=env, capture_stdout=True, check=False
    )
    process = await launcher.launch(launcher.LaunchSpec(command, tmp_path, env))
    output = await read_all(process)
    # Lines sorted: the shell passes the environment on in an order of its own.
    assert (sorted(output.splitlines()), await process.wait()) == (
        sorted(plain.stdout.splitlines()),
        plain.returncode,
    )


ESCAPE = """\
import os
import signal
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(write, str(os.getpid()).encode())
        os.execve("/bin/sleep", ["sleep", "100000"], {})
    os._exit(0)
os.close(write)
os.wait()
print(os.read(read, 32).decode(), flush=True)
os.execv("/bin/sleep", ["sleep", "100000"])
"""
"""Leaves an escapee (setsid, a double fork, an empty environment), prints its pid, and
sleeps."""


async def escapee_of(process: launcher.ServiceProcess) -> int:
    with trio.fail_after(10):
        pid = int(await process.stdout.receive_some(64))
    assert psutil.pid_exists(pid)
    return pid


async def wait_dead(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(5):
            await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


HIERARCHIES = {f"v{h.version}": h for h in cgroups.hierarchies()}
"""This machine's: v2 and the v1 freezer (cgroup2 at /sys/fs/cgroup/unified beside v1)."""


@pytest.mark.parametrize("version", sorted(HIERARCHIES))
async def test_an_escapee_of_a_process_in_a_cgroup_dies_at_stop(
    tmp_path: Path, version: str
) -> None:
    (tmp_path / "escape.py").write_text(ESCAPE)
    instance = f"test-{os.urandom(6).hex()}"
    tree = cgroups.open_instance(instance, [HIERARCHIES[version]])
    assert tree is not None  # writable here
    tree.register(instance)
    try:
        env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "runaway"}
        process = await launcher.launch(
            launcher.LaunchSpec(f"{sys.executable} escape.py", tmp_path, env)
        )
        assert process.cgroup is not None
        pid = await escapee_of(process)
        assert pid in process.cgroup.members()
        assert os.getpid() not in process.cgroup.members()
        await launcher.stop(process, 1.0)
        await wait_dead(pid)
        assert not process.cgroup.path.exists()  # removed once empty
    finally:
        tree.close(instance)
    assert not tree.root.exists()


@pytest.mark.parametrize("version", sorted(HIERARCHIES))
async def test_a_program_that_moves_out_what_it_starts_is_in_its_cgroup_once_launched(
    tmp_path: Path, version: str
) -> None:
    # podman run's case: spawned where the daemon is, moved into its cgroup before launch
    # returns; stop ends it and removes the cgroup as for any run.
    instance = f"test-{os.urandom(6).hex()}"
    tree = cgroups.open_instance(instance, [HIERARCHIES[version]])
    assert tree is not None
    tree.register(instance)
    try:
        env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "podman"}
        process = await launcher.launch(
            launcher.LaunchSpec("sleep 30", tmp_path, env, moves_out=True)
        )
        assert process.cgroup is not None
        assert process.cgroup.members() == [process.pid]
        assert os.getpid() not in process.cgroup.members()
        await launcher.stop(process, 1.0)
        assert process.returncode == -signal.SIGTERM
        assert not process.cgroup.path.exists()
    finally:
        tree.close(instance)
    assert not tree.root.exists()


async def test_without_a_cgroup_an_escapee_of_a_running_process_dies_at_stop(
    tmp_path: Path,
) -> None:
    # No instance, so no cgroup: the process is the subreaper of what it starts, and the
    # double-forked escapee is adopted by it instead of by init.
    (tmp_path / "escape.py").write_text(ESCAPE)
    process = await launcher.launch(
        launcher.LaunchSpec(f"{sys.executable} escape.py", tmp_path, os.environ)
    )
    assert process.cgroup is None
    pid = await escapee_of(process)
    assert psutil.Process(pid).ppid() == process.pid
    await launcher.stop(process, 1.0)
    await wait_dead(pid)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_run_gives_the_output_and_the_exit_code(tmp_path: Path) -> None:
    out, err = bytearray(), bytearray()
    spec = launcher.LaunchSpec("echo out; echo err >&2; exit 7", tmp_path, os.environ)
    with trio.fail_after(30):
        code = await launcher.run(spec, on_stdout=out.extend, on_stderr=err.extend)
    assert (code, bytes(out), bytes(err)) == (7, b"out\n", b"err\n")


async def test_run_ends_with_its_program_not_with_what_it_left(tmp_path: Path) -> None:
    # A child left in the background holds the output pipes: it dies with the program
    # rather than keeping the run waiting for the end of its output.
    out = bytearray()
    spec = launcher.LaunchSpec("sleep 60 & echo $!", tmp_path, os.environ)
    with trio.fail_after(30):
        assert await launcher.run(spec, on_stdout=out.extend) == 0
    assert not alive(int(out))


async def cancel_once_started(
    script: str, cwd: Path, deliver_cancel: launcher.DeliverCancel
) -> tuple[bytes, bytes]:
    """Run ``script``, cancel the run once it has written a line; its stdout and stderr."""
    out, err = bytearray(), bytearray()
    started = trio.Event()

    def on_stdout(chunk: bytes) -> None:
        out.extend(chunk)
        if out.endswith(b"\n"):
            started.set()

    async def go() -> None:
        spec = launcher.LaunchSpec(script, cwd, os.environ)
        await launcher.run(
            spec, on_stdout=on_stdout, on_stderr=err.extend, deliver_cancel=deliver_cancel
        )

    with trio.fail_after(30), trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(go)
            await started.wait()
            scope.cancel()
    assert scope.cancelled_caught
    return bytes(out), bytes(err)


async def test_a_cancelled_run_delivers_the_cancel_through_its_hook(tmp_path: Path) -> None:
    # terminate(): SIGTERM to the whole group, then the grace: the program's trap runs
    # and its exit status is its own; its background child got the SIGTERM too.
    delivered: list[launcher.ServiceProcess] = []

    async def deliver(process: launcher.ServiceProcess) -> None:
        delivered.append(process)
        await launcher.terminate(10.0)(process)

    script = "trap 'echo bye > trapped; exit 3' TERM; sleep 60 & echo $!; wait"
    out, _ = await cancel_once_started(script, tmp_path, deliver)
    [process] = delivered
    assert process.returncode == 3
    assert (tmp_path / "trapped").read_text() == "bye\n"
    assert not alive(int(out))
    # Only zombies may be left of its group (init reaps them when it gets to it).
    assert not [pid for pid in launcher.group_members(process.pid) if alive(pid)]


async def test_kill_delivers_a_cancel_without_a_grace(tmp_path: Path) -> None:
    delivered: list[launcher.ServiceProcess] = []

    async def deliver(process: launcher.ServiceProcess) -> None:
        delivered.append(process)
        await launcher.kill(process)

    script = "trap '' TERM; echo $$; exec sleep 60"  # deaf to SIGTERM
    out, _ = await cancel_once_started(script, tmp_path, deliver)
    [process] = delivered
    assert process.returncode == -9
    assert not alive(int(out))


async def test_a_run_is_watched_from_its_spawn_to_its_stop(tmp_path: Path) -> None:
    # The warden hears of a health check's group while it lives, and forgets it once
    # nothing of it is left (its id may then be reused by anyone).
    heard: list[tuple[str, int, bool | None]] = []

    class Watcher:
        def watch(self, pgid: int) -> None:
            heard.append(("watch", pgid, None))

        def forget(self, pgid: int) -> None:
            heard.append(("forget", pgid, alive(pgid)))

    out = bytearray()
    spec = launcher.LaunchSpec("echo $$; exit 0", tmp_path, os.environ)
    with trio.fail_after(30):
        await launcher.run(spec, on_stdout=out.extend, watcher=Watcher())
    pid = int(out)
    assert heard == [("watch", pid, None), ("forget", pid, False)]
