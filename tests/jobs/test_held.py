"""A run held before its program (``launcher.launch_held``), as a job's due run is.

Real processes in real cgroups (v2 and the v1 freezer, where this machine has both): a
held run is in its cgroup before its program can start anything, runs its program only
once let go, and never if discarded; holds made in many threads at once each land in
their own cgroup, and the daemon stays in its own; runs sharing a barrier start together
when it opens.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio

from dployr.engine.os import cgroups, launcher
from tests.engine.test_launcher import ESCAPE, HIERARCHIES, wait_dead

pytestmark = pytest.mark.slow


@pytest.fixture(params=sorted(HIERARCHIES))
def instance(request: pytest.FixtureRequest) -> Iterator[str]:
    """An instance id whose runs get cgroups of the hierarchy named by the parameter."""
    name = f"test-{os.urandom(6).hex()}"
    tree = cgroups.open_instance(name, [HIERARCHIES[request.param]])
    assert tree is not None  # writable here
    tree.register(name)
    try:
        yield name
    finally:
        tree.close(name)
    assert not tree.root.exists()


def own_cgroups() -> str:
    return Path("/proc/self/cgroup").read_text()


async def line_of(process: launcher.ServiceProcess) -> bytes:
    """The next line the process writes (its output may come in several reads)."""
    seen = b""
    with trio.fail_after(10):
        while not seen.endswith(b"\n"):
            chunk = await process.stdout.receive_some(1)
            assert chunk, f"the output ended after {seen!r}"
            seen += chunk
    return seen


async def test_a_held_run_is_in_its_cgroup_and_runs_its_program_once_let_go(
    tmp_path: Path, instance: str
) -> None:
    (tmp_path / "escape.py").write_text(
        f"print('run', __import__('os').environ['N'], flush=True)\n{ESCAPE}"
    )
    env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "nightly"}
    before = own_cgroups()
    held = await launcher.launch_held(
        launcher.LaunchSpec(f"{sys.executable} escape.py", tmp_path, env), name="N"
    )
    process = held.process
    try:
        assert process.cgroup is not None
        assert process.cgroup.members() == [process.pid]  # in it before its program runs
        assert psutil.Process(process.pid).cmdline()[:2] == ["/bin/sh", "-c"]  # held
        assert own_cgroups() == before  # the daemon never moved
        held.go("7")
        assert await line_of(process) == b"run 7\n"
        pid = int(await line_of(process))  # the program's setsid double-forked child
        assert pid in process.cgroup.members()
        await launcher.stop(process, 1.0)
        await wait_dead(pid)
        assert not process.cgroup.path.exists()
    finally:
        await launcher.stop(process, 0)


async def test_a_discarded_held_run_never_runs_its_program(tmp_path: Path, instance: str) -> None:
    env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "nightly"}
    held = await launcher.launch_held(
        launcher.LaunchSpec(f"touch {tmp_path / 'ran'}", tmp_path, env), name="N"
    )
    await held.discard()
    assert held.process.returncode == launcher.HELD_UNRELEASED
    assert not (tmp_path / "ran").exists()
    assert held.process.cgroup is not None
    assert not held.process.cgroup.path.exists()


async def test_holds_made_at_once_each_land_in_their_own_cgroup(
    tmp_path: Path, instance: str
) -> None:
    env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "many"}
    before = own_cgroups()
    helds: list[launcher.Held] = []

    async def hold() -> None:
        spec = launcher.LaunchSpec('echo "$N"; exec sleep 100000', tmp_path, env)
        helds.append(await launcher.launch_held(spec, name="N"))

    try:
        async with trio.open_nursery() as nursery:  # spawns and cgroup moves in threads
            for _ in range(20):
                nursery.start_soon(hold)
        assert own_cgroups() == before
        for number, held in enumerate(helds):
            assert held.process.cgroup is not None
            assert held.process.cgroup.members() == [held.process.pid]
            held.go(str(number))
        for number, held in enumerate(helds):
            assert await line_of(held.process) == f"{number}\n".encode()
        assert len({held.process.cgroup for held in helds}) == len(helds)
    finally:
        for held in helds:
            await launcher.stop(held.process, 0)


async def test_a_held_run_without_a_cgroup_is_the_subreaper_of_what_it_starts(
    tmp_path: Path,
) -> None:
    # No instance, so no cgroup (a daemon without root or delegation): the held shell is
    # spawned from a worker thread, and its program still adopts what it leaves behind.
    (tmp_path / "escape.py").write_text(ESCAPE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    held = await launcher.launch_held(
        launcher.LaunchSpec(f"{sys.executable} escape.py", tmp_path, env), name="N"
    )
    process = held.process
    try:
        assert process.cgroup is None
        held.go("1")
        pid = int(await line_of(process))
        assert psutil.Process(pid).ppid() == process.pid
        await launcher.stop(process, 1.0)
        await wait_dead(pid)
    finally:
        await launcher.stop(process, 0)


async def test_held_runs_sharing_a_barrier_start_only_once_it_opens(
    tmp_path: Path, instance: str
) -> None:
    # Each is given its value first (a write it does not wake for), then one close lets
    # them all go; one discarded meanwhile is killed, its program never run.
    env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "many"}
    barrier = launcher.Barrier()
    spec = launcher.LaunchSpec('echo "$N"; exec sleep 100000', tmp_path, env)
    helds = [await launcher.launch_held(spec, name="N", barrier=barrier) for _ in range(5)]
    unused = await launcher.launch_held(
        launcher.LaunchSpec(f"touch {tmp_path / 'ran'}", tmp_path, env), name="N", barrier=barrier
    )
    try:
        for number, held in enumerate(helds):
            held.go(str(number))
        await unused.discard()
        assert unused.process.returncode in (-signal.SIGTERM, -signal.SIGKILL)  # killed waiting
        for held in helds:  # given their values, still held
            assert psutil.Process(held.process.pid).cmdline()[:2] == ["/bin/sh", "-c"]
        barrier.open()
        for number, held in enumerate(helds):
            assert await line_of(held.process) == f"{number}\n".encode()
    finally:
        for held in helds:
            await launcher.stop(held.process, 0)
    assert not (tmp_path / "ran").exists()
    with pytest.raises(ValueError, match="opened"):
        await launcher.launch_held(spec, name="N", barrier=barrier)


async def test_a_held_run_discarded_once_let_go_is_stopped_at_once(
    tmp_path: Path, instance: str
) -> None:
    # Let go, but whoever was to take it over could not (its job stopped meanwhile).
    env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "nightly"}
    held = await launcher.launch_held(
        launcher.LaunchSpec('echo "$N"; exec sleep 100000', tmp_path, env), name="N"
    )
    held.go("3")
    assert await line_of(held.process) == b"3\n"
    began = trio.current_time()
    await held.discard()  # (shielded: a fail_after could not cut it short)
    assert trio.current_time() - began < launcher.KILL_WAIT / 2  # not left 5 s to end
    assert held.process.returncode in (-signal.SIGTERM, -signal.SIGKILL)
    assert held.process.cgroup is not None
    assert not held.process.cgroup.path.exists()
