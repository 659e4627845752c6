"""The folders the control plane uploads to this agent: received, then built as folders.

The control plane sends an uploaded folder's archive in parts
(:class:`~dployr.protocol.wire.UploadChunk`) before the deploy that names it
(``upload:<id>`` as its source). :meth:`Received.take` writes each part at its offset to
``<data dir>/uploads/incoming/.<id>.partial`` and answers how many bytes it holds
(:class:`~dployr.protocol.wire.UploadAck`): a part it already holds is not written twice, a
part beyond what it holds is not written at all (the control plane sends again from
there). Once whole, the file's SHA-256 is checked and it becomes ``<id>.tar.gz``.

:meth:`Received.carry_out` turns the deploy into a folder deploy
(:class:`dployr.upload_folders.UploadFolders`): the archive is unpacked safely (no absolute
path, no ``..``, no symlink out, no device) into a folder of its own,
``<data dir>/uploads/unpacked/<service>/<upload>``, and removed; a delete of the service
removes its folders. Parts of an upload no deploy used are removed after
:data:`UPLOAD_TTL` (checked at start, and at each new upload): until then, an upload cut
by a restart of the agent resumes where it stopped.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Final, TypeVar

import trio

from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.handle import InstanceHandle
from dployr.upload_folders import UploadFolders

R = TypeVar("R")

UPLOAD_TTL: Final = 3600.0
"""Seconds the parts of an upload no deploy used are kept."""


class Received:
    """The uploads this agent holds (see the module)."""

    def __init__(self, root: Path, instance: str) -> None:
        self._incoming = root / "incoming"
        self._instance = instance
        self._folders = UploadFolders(root)
        # Parts kept by an earlier run are resumed by the control plane if it still
        # sends them; those too old for that go now.
        if self._incoming.is_dir():
            self._sweep()

    async def take(self, chunk: w.UploadChunk) -> str:
        """Keep one part; the UploadAck frame to answer it with."""
        try:
            received = await trio.to_thread.run_sync(self._take, chunk)
            ack = w.UploadAck(chunk.upload, received)
        except Error as error:
            ack = w.UploadAck(chunk.upload, 0, error)
        except OSError as error:
            ack = w.UploadAck(
                chunk.upload, 0, Error("unavailable", f"instance {self._instance}: {error}")
            )
        return w.encode_frame(ack)

    def _take(self, chunk: w.UploadChunk) -> int:
        upload = _checked_id(chunk.upload)
        whole = self._incoming / f"{upload}.tar.gz"
        partial = self._incoming / f".{upload}.partial"
        if whole.exists():
            return chunk.size
        if chunk.offset == 0:
            self._incoming.mkdir(parents=True, exist_ok=True)
            self._sweep()
        held = partial.stat().st_size if partial.exists() else 0
        if chunk.offset > held:
            return held  # a part beyond what it holds: sent again from there
        try:
            data = base64.b64decode(chunk.data, validate=True)
        except binascii.Error as error:
            raise Error("invalid", f"a part of upload {upload} is not base64") from error
        end = chunk.offset + len(data)
        if end > chunk.size or len(data) > w.UPLOAD_CHUNK:
            raise Error("invalid", f"a part of upload {upload} goes past its size")
        if end > held:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as file:
                file.seek(chunk.offset)
                file.write(data)
            held = end
        if held == chunk.size:
            if _sha256(partial) != chunk.sha256:
                partial.unlink()
                raise Error("invalid", f"upload {upload} arrived damaged (its SHA-256 differs)")
            partial.rename(whole)
        return held

    async def carry_out(self, request: m.Request[R], instance: InstanceHandle) -> R:
        """Carry out a request of the control plane: a deploy of an upload builds the
        folder it is unpacked into, a delete removes the service's folders too
        (dployr/upload_folders.py)."""
        return await self._folders.carry_out(request, instance, self._archive_of)

    def _archive_of(self, upload: str) -> Path:
        path = self._incoming / f"{_checked_id(upload)}.tar.gz"
        if not path.is_file():
            raise Error("not_found", f"upload {upload} has not reached instance {self._instance}")
        return path

    def _sweep(self) -> None:
        """Remove the uploads (whole or partial) older than the TTL."""
        oldest = time.time() - UPLOAD_TTL
        for entry in os.scandir(self._incoming):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < oldest:
                    os.unlink(entry.path)


def _checked_id(upload: str) -> str:
    if len(upload) != 32 or any(c not in "0123456789abcdef" for c in upload):
        raise Error("invalid", f"not an upload id: {upload[:40]!r}")
    return upload


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()
