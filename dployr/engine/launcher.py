"""The OS seam for service processes: start one in its own process group, stop the group.

A service process runs ``/bin/sh -c <run command>`` in a new session (so it is the leader
of its own process group and has no controlling terminal), with stdin closed and stdout and
stderr on pipes. It is marked with ``PR_SET_PDEATHSIG`` so the kernel kills it if the
daemon dies; grandchildren are not covered by that, which is why the daemon records every
process group it starts and kills what is left of them when it starts again.

Stopping is SIGTERM to the whole group, the grace, SIGKILL to the whole group, and always
awaiting the exit; once the leader has exited, whatever is left in its group is killed, so
no grandchild outlives the service.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20  # fewer wake-ups for chatty services; the kernel may cap it lower
KILL_WAIT = 5.0
"""Seconds to wait for SIGKILLed processes to die (one in uninterruptible I/O may take long)."""


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux: PDEATHSIG is best effort
        return None


_LIBC = _libc()


@attrs.frozen
class LaunchSpec:
    """What to run, where, and with which environment (the whole of it)."""

    command: str
    cwd: Path
    env: Mapping[str, str]


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # If the daemon died between fork and prctl, the signal will never come: go now.
    if os.getppid() != parent:
        os._exit(1)


def _grow_pipe(stream: object) -> None:
    fileno = getattr(stream, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)


async def launch(spec: LaunchSpec) -> trio.Process:
    """Start ``spec`` as the leader of a new session, its output on pipes.

    Must be called from the trio thread: PDEATHSIG follows the thread that forked.
    """
    parent = os.getpid()
    process = await trio.lowlevel.open_process(
        ["/bin/sh", "-c", spec.command],
        cwd=spec.cwd,
        env=dict(spec.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: _die_with_parent(parent),
    )
    _grow_pipe(process.stdout)
    _grow_pipe(process.stderr)
    return process


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a reused id that is not ours: leave it alone
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """The pids in process group ``pgid`` (read from /proc; the kernel has no direct call)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to ask about
                continue
    return members


async def kill_group(pgid: int, *, wait: float = KILL_WAIT) -> None:
    """SIGKILL a whole process group and await the death of each member.

    The members are not all our children (a grandchild whose parent exited belongs to
    init), so their exits are awaited through pidfds, which work for any process: no
    grandchild is still alive when this returns.
    """
    fds = []
    for pid in group_members(pgid):
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            continue
    try:
        signal_group(pgid, signal.SIGKILL)
        with trio.move_on_after(wait):
            for fd in fds:
                await trio.lowlevel.wait_readable(fd)
    finally:
        for fd in fds:
            os.close(fd)


async def stop(process: trio.Process, grace: float) -> int:
    """SIGTERM to the group, wait up to ``grace`` s, SIGKILL to the group; await the exit.

    Returns the leader's return code. The final kill and wait are shielded, so a caller
    that is cancelled meanwhile still never leaves a zombie or a live group behind.
    """
    pgid = process.pid  # the leader of a new session: its pid is the group id
    try:
        if process.returncode is None:
            signal_group(pgid, signal.SIGTERM)
            with trio.move_on_after(grace):
                await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            await kill_group(pgid)
            returncode = await process.wait()
    return returncode
