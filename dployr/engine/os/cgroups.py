"""Cgroups: the kernel's record of every process a service, build or git run started.

A process group does not hold a process that calls ``setsid``, and a double fork with an
empty environment leaves no mark to find it by. A cgroup does: every child is born in its
parent's cgroup and only root (or the cgroup's owner) can move it out, so killing every
member of a run's cgroup kills all it started, however it detached.

Each run (a release's process, a build, a command health check, a git) gets a cgroup of
its own, made just before the spawn and removed once its last member is gone::

    <hierarchy>/<the daemon's cgroup>/dployr-<instance id>/<label>.<n>

The child is born in it: the spawning thread steps into the cgroup, spawns, and steps
back (:meth:`Cgroup.entered`), so not even a child that forks at once can be missed, as
it could be if the child were moved after the spawn. Each step is one small write; the
step in makes the kernel wait for an RCU grace period unless one ran lately (a few ms
on a busy machine; see docs/architecture.md), the ``mkdir`` and ``rmdir`` are tens of
microseconds.

Two kinds of hierarchy are used, the first that is writable:

- cgroup v2 (``cgroup2``: ``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` beside v1
  controllers) with ``cgroup.kill`` (Linux 5.14): one write kills every member, safe
  against concurrent forks. No controller is needed.
- the v1 ``freezer`` controller: the cgroup is frozen (so nobody forks meanwhile), every
  member is sent SIGKILL, and it is thawed (the signals are then delivered).

Where neither is writable (no privilege, no delegation), :func:`open_instance` returns
None and runs are tracked by process groups only (see :mod:`dployr.engine.os.launcher`).

A daemon that dies leaves its instance's cgroups behind; the warden kills their members
(:mod:`dployr.engine.os.warden`), and the next daemon kills what is left and removes them
before any service starts (:meth:`Cgroups.kill_leftovers`).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

import attrs

Version = Literal[1, 2]
FREEZER: Final = "freezer"
PREFIX: Final = "dployr-"
"""The instance's cgroup is ``dployr-<instance id>`` under the daemon's own."""
LEFTOVER_WAIT = 5.0
"""Seconds to wait for the killed leftovers of a previous daemon to die."""


class CgroupError(OSError):
    """A cgroup could not be used as dployr needs (the message says which and why)."""


@attrs.frozen
class Hierarchy:
    """A mounted cgroup hierarchy dployr can use, and the daemon's place in it."""

    version: Version
    mount: Path
    home: Path
    """The daemon's own cgroup (where the spawning thread steps back to)."""


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(type, mount point, options) of every cgroup mount."""
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 4 and fields[2] in {"cgroup", "cgroup2"}:
                path = Path(fields[1].replace("\\040", " "))
                found.append((fields[2], path, set(fields[3].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """The daemon's cgroup per hierarchy: ``""`` for v2, a controller's name for v1."""
    own = {}
    with open("/proc/self/cgroup", encoding="utf-8") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = path
    return own


def hierarchies() -> list[Hierarchy]:
    """The usable hierarchies, best first: cgroup v2, then the v1 freezer."""
    own = _own_cgroups()
    found: list[Hierarchy] = []
    for kind, mount, _options in _mounts():
        if kind == "cgroup2" and "" in own:
            found.append(Hierarchy(2, mount, mount / own[""].lstrip("/")))
    for kind, mount, options in _mounts():
        if kind == "cgroup" and FREEZER in options and FREEZER in own:
            found.append(Hierarchy(1, mount, mount / own[FREEZER].lstrip("/")))
    return found


def open_instance(instance_id: str, candidates: list[Hierarchy] | None = None) -> Cgroups | None:
    """The cgroups of instance ``instance_id`` in the first hierarchy (of ``candidates``,
    by default :func:`hierarchies`) where dployr can make them and kill through them; None
    if there is none."""
    for hierarchy in hierarchies() if candidates is None else candidates:
        root = hierarchy.home / f"{PREFIX}{instance_id}"
        try:
            root.mkdir(exist_ok=True)
        except OSError:
            continue
        needed = "cgroup.kill" if hierarchy.version == 2 else "freezer.state"
        if (root / needed).exists() and os.access(root / "cgroup.procs", os.W_OK):
            return Cgroups(hierarchy, root)
        with contextlib.suppress(OSError):
            root.rmdir()
    return None


_INSTANCES: dict[str, Cgroups] = {}


def of_instance(instance_id: str | None) -> Cgroups | None:
    """The cgroups of a running instance (by the ``DPLOYR_INSTANCE`` its runs carry)."""
    return None if instance_id is None else _INSTANCES.get(instance_id)


class Cgroups:
    """The cgroups of one instance: one per run, under one root."""

    def __init__(self, hierarchy: Hierarchy, root: Path) -> None:
        self.hierarchy = hierarchy
        self.root = root
        self._numbers = itertools.count(1)

    @property
    def version(self) -> Version:
        """1 (the freezer controller) or 2 (``cgroup.kill``)."""
        return self.hierarchy.version

    def create(self, label: str) -> Cgroup:
        """A new, empty cgroup for one run (``label`` says whose, for a reader of /sys)."""
        while True:
            path = self.root / f"{label}.{next(self._numbers)}"
            try:
                path.mkdir()
            except FileExistsError:  # a leftover that could not be removed yet
                continue
            return Cgroup(self.hierarchy, path)

    def leaves(self) -> list[Cgroup]:
        """Every run's cgroup that exists now (a previous daemon's included)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return [Cgroup(self.hierarchy, Path(e.path)) for e in entries if e.is_dir()]

    def kill_leftovers(self) -> list[int]:
        """Kill every member of every cgroup of the instance and remove the cgroups; the
        pids killed. Blocking: run it in a worker thread, before any service starts."""
        killed: list[int] = []
        for cgroup in self.leaves():
            killed.extend(cgroup.kill_and_wait(LEFTOVER_WAIT))
            cgroup.remove()
        return killed

    def register(self, instance_id: str) -> None:
        """Make this the cgroups of the runs that carry ``DPLOYR_INSTANCE=instance_id``."""
        _INSTANCES[instance_id] = self

    def close(self, instance_id: str) -> None:
        """Forget the instance; remove its root cgroup if no run's cgroup is left in it."""
        if _INSTANCES.get(instance_id) is self:
            del _INSTANCES[instance_id]
        with contextlib.suppress(OSError):
            self.root.rmdir()


class Cgroup:
    """The cgroup of one run."""

    def __init__(self, hierarchy: Hierarchy, path: Path) -> None:
        self.hierarchy = hierarchy
        self.path = path

    def __repr__(self) -> str:
        return f"Cgroup({str(self.path)!r})"

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread in this cgroup, so what it spawns is born
        here. On v1 only the thread moves; on v2 the daemon's whole process does (v2 moves
        processes, not threads), for the few microseconds of a spawn."""
        if self.hierarchy.version == 1:
            target, home = "tasks", "tasks"
            me = str(threading.get_native_id())
        else:
            target, home = "cgroup.procs", "cgroup.procs"
            me = "0"  # the writer itself
        _write(self.path / target, me)
        try:
            yield
        finally:
            # A daemon left in a run's cgroup would die with that run: never go on so.
            try:
                _write(self.hierarchy.home / home, me)
            except OSError as error:  # pragma: no cover - the kernel let us in
                raise CgroupError(f"could not leave the cgroup {self.path}: {error}") from error

    def adopt(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this cgroup. Only for a process
        that cannot have started another yet (one held before its program: see
        ``launcher.launch_held``): what it started before would stay behind. Unlike
        :meth:`entered`, the daemon stays where it is, so several threads may adopt at
        once, their waits for the kernel's RCU grace period overlapping."""
        _write(self.path / "cgroup.procs", str(pid))  # v1 and v2 alike: the whole process

    def members(self) -> list[int]:
        """The pids in the cgroup now."""
        try:
            text = (self.path / "cgroup.procs").read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        return [int(pid) for pid in text.split()]

    def kill(self) -> None:
        """SIGKILL every member now, those forking meanwhile included."""
        if os.getpid() in self.members():  # pragma: no cover - see entered()
            raise CgroupError(f"the daemon itself is in {self.path}: not killing it")
        if self.hierarchy.version == 2:
            _write(self.path / "cgroup.kill", "1")
            return
        state = self.path / "freezer.state"
        _write(state, "FROZEN")
        try:
            # Frozen members cannot fork; a member still freezing might, so take the list
            # again until it holds no one new.
            done: set[int] = set()
            while pending := set(self.members()) - done:
                for pid in pending:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                done |= pending
        finally:
            _write(state, "THAWED")  # the SIGKILLs are delivered as they thaw

    def kill_and_wait(self, wait: float) -> list[int]:
        """:meth:`kill`, then wait up to ``wait`` s for every member to die (blocking: for
        worker threads); the pids killed."""
        killed: list[int] = []
        deadline = time.monotonic() + wait
        while (pids := [pid for pid in self.members() if pid not in killed]) and (
            time.monotonic() < deadline
        ):
            fds = pidfds(pids)
            try:
                self.kill()
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                pending = len(fds)
                while pending and (left := deadline - time.monotonic()) > 0:
                    for fd, _ in poller.poll(left * 1000):
                        poller.unregister(fd)
                        pending -= 1
            finally:
                for fd in fds:
                    os.close(fd)
            killed.extend(pids)
        return killed

    def remove(self) -> bool:
        """Remove the cgroup; False if it still has members (a process dying in
        uninterruptible I/O: the next daemon start removes it)."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno in {errno.EBUSY, errno.ENOTEMPTY}:
                return False
            raise
        return True


def pidfds(pids: list[int]) -> list[int]:
    """A pidfd for each pid still alive (readable once it has exited)."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:  # gone meanwhile
            continue
    return fds


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
