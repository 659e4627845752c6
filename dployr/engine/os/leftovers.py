"""What a previous daemon left behind: its processes, killed, and its half-made folders,
removed, before any service of the instance starts.

A daemon killed with ``kill -9`` (and its warden with it, or before it heard of a group)
leaves its services' processes running, and a fetch or checkout cut short leaves the
hidden folder it was filling. Both are blocking calls, for a worker thread, at start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import psutil

from dployr.engine.os.cgroups import Cgroups

KILL_WAIT = 5.0
"""Seconds to wait for the killed leftovers to die."""


class Recorded(Protocol):
    """A process group the previous daemon recorded (the store's record of it)."""

    @property
    def pid(self) -> int: ...

    @property
    def pgid(self) -> int: ...

    @property
    def started_at(self) -> float:
        """Wall-clock seconds (Unix time)."""
        ...


def kill_leftovers(
    records: Iterable[Recorded], instance_id: str, tree: Cgroups | None = None
) -> list[int]:
    """Kill every process a previous daemon of this instance left behind; return their pids.

    Called before any service starts, so every member of the instance's cgroups is a
    leftover, whatever it did to detach (``setsid``, a double fork, an empty environment),
    and so is every live process that carries this instance's id in its environment: a
    release or build whose daemon was killed, and its children (when its warden was killed
    too, or did not hear of them in time), even one started in the instant between its
    spawn and its record. A recorded group leader started when recorded counts too (in
    case it cleared its environment); a pid the kernel reused for an unrelated process is
    left alone. The emptied cgroups are removed.
    """
    records = list(records)
    killed = tree.kill_leftovers() if tree is not None else []
    recorded = {(r.pid, r.pgid): r.started_at for r in records}
    groups = {r.pgid for r in records}
    me = os.getpid()
    victims: list[psutil.Process] = []
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            ours = process.environ().get("DPLOYR_INSTANCE") == instance_id
            if not ours and process.pid in groups:
                started = recorded.get((process.pid, os.getpgid(process.pid)))
                ours = started is not None and abs(process.create_time() - started) < 2
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if ours:
            victims.append(process)
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=KILL_WAIT)
    return killed + [p.pid for p in victims]


UNFINISHED = (".source.new-*", ".source.old-*", "releases/.*.partial-*")
"""Folders a fetch or checkout makes beside its target and renames onto it when done
(``<service dir>/<pattern>``): one still there at start was cut short by a killed daemon."""


def remove_unfinished(data_dir: Path) -> list[Path]:
    """Remove every unfinished folder of every service (blocking: for a worker thread, at
    start, before anything can make one); the folders removed."""
    removed = []
    for pattern in UNFINISHED:
        for folder in data_dir.glob(f"services/*/{pattern}"):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed
