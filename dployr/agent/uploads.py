"""The folders the control plane uploads to this agent: received, then built as folders.

The control plane sends an uploaded folder's archive in parts
(:class:`~dployr.protocol.wire.UploadChunk`) before the deploy that names it
(``upload:<id>`` as its source). :meth:`Received.take` writes each part at its offset to
``<data dir>/uploads/incoming/.<id>.partial`` and answers how many bytes it holds
(:class:`~dployr.protocol.wire.UploadAck`): a part it already holds is not written twice, a
part beyond what it holds is not written at all (the control plane sends again from
there). Once whole, the file's SHA-256 is checked and it becomes ``<id>.tar.gz``.

:meth:`Received.resolve` turns the deploy into a folder deploy: the archive is unpacked
safely (:func:`dployr.archive.place`: no absolute path, no ``..``, no symlink out, no
device) into ``<data dir>/uploads/folders/<service>`` and removed. Parts of an upload no
deploy used are removed after :data:`UPLOAD_TTL`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Final

import trio

from dployr import archive
from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.protocol.errors import Error

UPLOAD_TTL: Final = 3600.0
"""Seconds the parts of an upload no deploy used are kept."""


class Received:
    """The uploads this agent holds (see the module)."""

    def __init__(self, root: Path, instance: str) -> None:
        self._incoming = root / "incoming"
        self._folders = root / "folders"
        self._instance = instance

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

    async def resolve(self, request: m.Request[Any]) -> m.Request[Any]:
        """The request to carry out: a deploy of an upload becomes a deploy of the folder
        it was unpacked into; the archive is removed, used."""
        if not isinstance(request, m.Deploy):
            return request
        upload = archive.upload_of(request)
        if upload is None:
            return request
        path = self._incoming / f"{upload}.tar.gz"
        if not await trio.Path(path).is_file():
            raise Error("not_found", f"upload {upload} has not reached instance {self._instance}")
        try:
            folder = await trio.to_thread.run_sync(archive.place, path, self._folders, request.name)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(FileNotFoundError):
                await trio.Path(path).unlink()
        return archive.with_folder(request, folder)

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
