"""The data dir's lock: one process (``dployr up`` or ``dployr agent``) per data dir."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from dployr.daemon.paths import DataDir
from dployr.errors import DployrError


class AlreadyRunning(DployrError):
    """Another daemon holds the data dir."""


@contextlib.contextmanager
def hold_lock(data: DataDir) -> Iterator[None]:
    """Hold the data dir's lock for the daemon's lifetime, or raise AlreadyRunning."""
    data.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunning(
                f"another dployr daemon (pid {holder}) is already running on {data.root}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
