"""A small, real file system to fill up: a tmpfs mounted for one test (needs root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_disk(path: Path, size: str, *, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"20m"``), and at most ``inodes`` files, mounted on ``path``
    for the block; unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" if inodes is None else f"size={size},nr_inodes={inodes}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(path: Path) -> Path:
    """Take every free byte of ``path``'s file system with one file; return that file."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):  # ENOSPC: nothing more of this size fits
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler
