"""The disk reserve: space held back in the data dir so the daemon's own writes succeed.

A full disk is a trap for SQLite: a transaction that cannot grow the write-ahead log or
the database fails with SQLITE_FULL, and the daemon could then record nothing (a process
it started, a deployment's end, a deleted service). So the daemon keeps a file of
``size`` bytes, ``<data dir>/disk-reserve``, allocated when it starts. The first time a
write fails for want of space (a log history's, or the database's), or the database is
about to write with less than a quarter of the reserve free, the file is deleted: the
disk is *full*. Log histories stop writing (they count what they drop), so the space
freed is left to the database. Once at least twice the reserve is free again (a service
was deleted, the operator made room), the reserve is allocated anew and the disk is no
longer full.

The reserve is plain files and ``statvfs``: no trio, no SQLite.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

RESERVE_FILE_NAME: Final = "disk-reserve"
"""The reserve's file name inside the data dir."""
DEFAULT_RESERVE_BYTES: Final = 4 * 2**20
"""The default reserve: more than SQLite's write-ahead log grows to before a checkpoint
(1000 pages of 4 KiB), so that the database can go on writing on a full disk."""


class DiskReserve:
    """Space held back in ``directory`` for the daemon's database.

    ``on_change(full)`` is called whenever the disk becomes full or stops being full.
    """

    def __init__(
        self,
        directory: Path,
        size: int = DEFAULT_RESERVE_BYTES,
        *,
        on_change: Callable[[bool], None] = lambda full: None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RESERVE_FILE_NAME
        """The reserve file."""
        self.size = size
        self.on_change = on_change
        # Invariant: the reserve file exists (with `size` bytes allocated) exactly when
        # _full is False, once make() has run.
        self._full = False
        self._times_full = 0
        self._lines_dropped = 0

    def make(self) -> bool:
        """Allocate the reserve (at daemon start); False, and the disk full, if it can't be.

        A reserve left by the last daemon is kept as it is: making it anew would need as
        much room again.
        """
        if self._kept() or self._allocate():
            return True
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a smaller one left behind: its room goes to the database
        self._set_full(True)
        return False

    @property
    def full(self) -> bool:
        """Whether the disk is full: the reserve is released and space has not returned."""
        return self._full

    @property
    def times_full(self) -> int:
        """How many times the disk became full since the daemon started."""
        return self._times_full

    @property
    def lines_dropped(self) -> int:
        """Log lines that could not be written since the daemon started (see ``dropped``)."""
        return self._lines_dropped

    def dropped(self, lines: int) -> None:
        """A log history could not write ``lines`` lines (counted for every service)."""
        self._lines_dropped += lines

    def free_bytes(self) -> int:
        """Bytes free for the daemon on the data dir's file system."""
        stat = os.statvfs(self.directory)
        return stat.f_bavail * stat.f_frsize

    def writable(self) -> bool:
        """Whether log histories may write: the disk is not full, or space has returned."""
        return not self._full or self.refresh()

    def refresh(self) -> bool:
        """If the disk is full and space has returned, make the reserve again; whether the
        disk is no longer full."""
        if not self._full:
            return True
        try:
            enough = self.free_bytes() >= 2 * self.size
        except OSError:
            return False
        if enough and self._allocate():
            self._set_full(False)
        return not self._full

    def full_seen(self) -> None:
        """A write failed for want of space: release the reserve for the database."""
        if self._full:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._set_full(True)

    def before_write(self) -> None:
        """The database is about to write: release the reserve first if less than a
        quarter of it is free besides it, so that the write finds room."""
        if self._full:
            self.refresh()
            return
        try:
            low = self.free_bytes() < self.size // 4
        except OSError:
            return
        if low:
            self.full_seen()

    def _kept(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError:
            return False
        return stat.st_size == self.size and stat.st_blocks * 512 >= self.size

    def _allocate(self) -> bool:
        new = self.path.with_name(self.path.name + ".new")
        try:
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
            os.replace(new, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                new.unlink()
            return False
        return True

    def _set_full(self, full: bool) -> None:
        if full == self._full:
            return
        self._full = full
        if full:
            self._times_full += 1
        self.on_change(full)
