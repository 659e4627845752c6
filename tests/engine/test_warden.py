"""The warden kills the live process groups when the daemon's end of its pipe closes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import trio

from dployr.engine.health import Check, probe
from dployr.engine.os import cgroups, launcher
from dployr.engine.os.warden import NAME, Warden
from dployr.models import HealthKind
from tests.helpers import wait_gone

pytestmark = pytest.mark.slow

FAMILY = "sleep 1000 & echo $!; exec sleep 1000"
"""A leader with a child (whose pid it prints): killing the leader alone would leave it."""


@pytest.fixture
def warden() -> Iterator[Warden]:
    warden = Warden()
    warden.start()
    yield warden
    warden.close()


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        launcher.signal_group(process.pid, signal.SIGKILL)
        with process:  # closes its stdout and reaps it
            pass


def family(groups: list[subprocess.Popen[bytes]]) -> list[int]:
    """A new process group: its leader's pid, then its child's."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", FAMILY], start_new_session=True, stdout=subprocess.PIPE
    )
    groups.append(process)
    assert process.stdout is not None
    child = int(process.stdout.readline())
    return [process.pid, child]


def alive(pids: list[int]) -> list[int]:
    return [
        pid
        for pid in pids
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]


async def test_the_live_groups_die_when_the_pipe_ends(
    warden: Warden, groups: list[subprocess.Popen[bytes]]
) -> None:
    pids = {pids[0]: pids for pids in (family(groups) for _ in range(3))}
    watched, forgotten, unknown = pids
    warden.watch(watched)
    warden.watch(forgotten)
    warden.forget(forgotten)
    assert warden.groups == {watched}
    warden.close()  # what the daemon's death does to the pipe
    await wait_gone(pids[watched])  # the leader and its child
    assert alive(pids[forgotten]) == pids[forgotten]
    assert alive(pids[unknown]) == pids[unknown]
    assert warden.groups == frozenset()  # a warden started again owes nothing to the dead


async def test_a_killed_warden_is_replaced_and_told_every_live_group(
    warden: Warden, groups: list[subprocess.Popen[bytes]]
) -> None:
    pids = {pids[0]: pids for pids in (family(groups) for _ in range(2))}
    first, second = pids
    warden.watch(first)
    old = warden.pid
    assert old is not None
    assert psutil.Process(old).cmdline()[-1] == NAME
    assert os.getsid(old) == old  # out of reach of the daemon's terminal
    os.kill(old, signal.SIGKILL)
    await wait_gone([old])  # a zombie, not yet reaped
    assert alive(pids[first]) == pids[first]  # a killed warden kills nothing

    warden.watch(second)  # finds the pipe broken
    assert (warden.starts, warden.pid != old) == (2, True)
    assert not psutil.pid_exists(old)  # reaped
    warden.close()
    await wait_gone(pids[first] + pids[second])


async def test_a_command_health_check_is_watched_while_it_runs(
    warden: Warden, tmp_path: Path
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    check = Check(HealthKind.COMMAND, None, "/", f"cat {fifo}", tmp_path, os.environ, warden)
    async with trio.open_nursery() as nursery:
        results: list[tuple[bool, str]] = []

        async def run() -> None:
            results.append(await probe(check, 30))

        nursery.start_soon(run)
        # Opening the fifo for writing waits for `cat` to open it: the check runs.
        writer = await trio.to_thread.run_sync(open, fifo, "w")
        (pgid,) = warden.groups
        assert psutil.Process(pgid).cmdline() == ["cat", str(fifo)]
        writer.close()  # `cat` reads the end and exits 0
    assert results == [(True, f"cat {fifo}: exit code 0")]
    assert warden.groups == frozenset()


ESCAPE = "setsid sh -c 'echo $$; exec sleep 1000' </dev/null & wait"
"""A leader whose child leaves its group and prints its pid."""


@pytest.mark.parametrize("hierarchy", cgroups.hierarchies(), ids=lambda h: f"v{h.version}")
async def test_the_instance_s_cgroups_die_when_the_pipe_ends(
    tmp_path: Path, hierarchy: cgroups.Hierarchy
) -> None:
    instance = f"test-{os.urandom(6).hex()}"
    tree = cgroups.open_instance(instance, [hierarchy])
    assert tree is not None
    tree.register(instance)
    warden = Warden()
    warden.cgroups = tree
    warden.start()
    env = {**os.environ, "DPLOYR_INSTANCE": instance, "DPLOYR_SERVICE": "left"}
    process = await launcher.launch(launcher.LaunchSpec(ESCAPE, tmp_path, env))
    try:
        with trio.fail_after(10):
            escaped = int(await process.stdout.receive_some(64))
        assert escaped not in launcher.group_members(process.pid)  # out of the group
        # As at the daemon's death: the pipe ends, and the warden alone kills (it has
        # heard of no group); close() returns once the warden has exited.
        warden.close()
        await wait_gone([escaped, process.pid])
        assert await process.wait() == -signal.SIGKILL
        assert not tree.root.exists()  # the warden removed the emptied cgroups
    finally:
        warden.close()
        await launcher.stop(process, 0)
        tree.close(instance)


@pytest.mark.parametrize("hierarchy", cgroups.hierarchies(), ids=lambda h: f"v{h.version}")
async def test_a_warden_with_no_run_left_exits_at_once(hierarchy: cgroups.Hierarchy) -> None:
    # Every daemon that stops cleanly ends so: its runs' cgroups are gone already. The
    # warden removes the empty root and exits, without the second of retries it allows
    # a root whose killed members are still going (a daemon's stop waits for it).
    instance = f"test-{os.urandom(6).hex()}"
    tree = cgroups.open_instance(instance, [hierarchy])
    assert tree is not None
    warden = Warden()
    warden.cgroups = tree
    warden.start()
    try:
        started = time.monotonic()
        warden.close()
        assert time.monotonic() - started < 0.5  # ten retries a tenth of a second apart: 1 s
        assert not tree.root.exists()
    finally:
        warden.close()
        tree.close(instance)
