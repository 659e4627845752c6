"""How far a ``podman pull`` has got: its layers and the bytes it has downloaded.

podman prints ``Copying blob sha256:…`` as it starts each layer (without a terminal it
prints no byte counts), and downloads each layer into a file under its ``TMPDIR`` (what
its ``--help`` documents for "the temporary storage location for container images"). A
pull given a folder of its own as ``TMPDIR`` has downloaded the sum of the sizes of the
files there; podman empties it once the image is stored, after it prints ``Writing
manifest to image destination``. :class:`PullProgress` is fed both and says what to show;
it does no I/O (:func:`downloaded` measures the folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

BLOB = "Copying blob "
STORING = "Writing manifest to image destination"


@attrs.define
class PullProgress:
    """What one pull has done so far, and what was last shown of it."""

    layers: int = 0
    """Layers podman has started on (found in the store or downloaded)."""
    downloaded: int = 0
    """Bytes of layers downloaded so far (never less than a previous count)."""
    stored: bool = False
    """Every layer is there: podman is writing the image into its store."""
    shown: str = ""

    def lines(self, lines: Iterable[str]) -> bool:
        """Feed podman's output; whether the layers are all there now."""
        before = self.stored
        for line in lines:
            text = line.strip()
            if text.startswith(BLOB):
                self.layers += 1
            elif text.startswith(STORING):
                self.stored = True
        return self.stored and not before

    def measured(self, size: int) -> None:
        """Feed the bytes the pull's folder holds now."""
        self.downloaded = max(self.downloaded, size)  # (podman empties it at the end)

    def news(self) -> str | None:
        """The line to show if it differs from the last one shown, else None."""
        if not self.layers:
            return None
        layers = f"{self.layers} layer{'' if self.layers == 1 else 's'}"
        text = f"{layers}, {size_text(self.downloaded)} downloaded"
        if self.stored:
            text += ", storing the image"
        if text == self.shown:
            return None
        self.shown = text
        return text


def size_text(size: int) -> str:
    """Bytes as people read them: ``0 B``, ``812 kB``, ``20.0 MB``, ``1.25 GB``."""
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if size < scale * 1000 or unit == "GB":
            value = size / scale
            digits = 0 if value >= 100 else 1 if value >= 10 else 2 if unit == "GB" else 1
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def downloaded(folder: Path) -> int:
    """The bytes of the files under ``folder`` now (files come and go as podman works)."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
