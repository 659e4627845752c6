"""Folders uploaded to the control plane, kept until a deploy takes them: :class:`Uploads`.

``dployr deploy --remote .`` with a daemon on another machine, or for a service on another
instance, packs the folder (:mod:`dployr.archive`) and streams it to ``POST
/api/v1/uploads`` (dployr/gateway/uploads.py), which hands the body to
:meth:`Uploads.receive`: it is spooled to a file in ``<data dir>/uploads/incoming``, never
held in memory, and refused with ``too_large`` as soon as it passes the limit
(:data:`DEFAULT_MAX_UPLOAD`, ``dployr up --max-upload``), or with ``invalid`` if it is not a
safe archive; nothing of a refused upload is kept. The deploy then names it
(``upload:<id>`` as its source) and the router calls :meth:`Uploads.deliver`: for the
control plane's own instance the archive is unpacked here; for an agent's, it is sent over
the agent's channel (dployr/cluster/transfer.py) and unpacked there. Either way the
archive is removed once a deploy used it; one no deploy used is removed after
:data:`UPLOAD_TTL` (checked at each new upload, and at start).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Final

import trio

from dployr import archive
from dployr.cluster.remote import RemoteHandle
from dployr.config import DaemonConfig, default
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.handle import InstanceHandle

DEFAULT_MAX_UPLOAD: Final[int] = default(DaemonConfig, "max_upload")
"""The largest upload a control plane takes by default (200 MiB)."""
UPLOAD_TTL: Final = 3600.0
"""Seconds an upload no deploy used is kept."""


class Uploads:
    """The uploads a control plane keeps (see the module)."""

    def __init__(
        self,
        root: Path,
        *,
        max_size: int = DEFAULT_MAX_UPLOAD,
        ttl: float = UPLOAD_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_size = max_size
        self.ttl = ttl
        self._clock = clock
        self._incoming = root / "incoming"
        self._folders = root / "folders"
        # Invariant: `_incoming` holds `<id>.tar.gz` for each whole, checked upload no
        # deploy used yet, and `.<id>.partial` for each being received.
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def archive_of(self, upload: str) -> Path:
        """The archive of a kept upload; ``not_found`` if there is none."""
        path = self._incoming / f"{upload}.tar.gz"
        if not path.is_file():
            raise Error(
                "not_found",
                f"no upload {upload}: an upload is used by one deploy, and kept "
                f"{self.ttl / 60:g} minutes at most (deploy the folder again)",
            )
        return path

    async def receive(self, body: AsyncIterable[bytes], declared: int | None) -> archive.UploadView:
        """Spool ``body`` (``declared`` bytes, if its length was given) as a new upload.

        :class:`~dployr.archive.TooLarge` once it passes the limit, ``invalid`` if it is
        not an archive safe to unpack: then nothing is kept.
        """
        if declared is not None and declared > self.max_size:
            raise archive.TooLarge(self.max_size)
        await trio.to_thread.run_sync(self._sweep)
        upload = archive.new_upload_id()
        partial = self._incoming / f".{upload}.partial"
        try:
            size = await self._spool(body, partial)
            await trio.to_thread.run_sync(archive.check, partial)
            await trio.Path(partial).rename(self._incoming / f"{upload}.tar.gz")
        except BaseException:
            with trio.CancelScope(shield=True), contextlib.suppress(FileNotFoundError):
                await trio.Path(partial).unlink()
            raise
        return archive.UploadView(upload, size, archive.UPLOAD_PREFIX + upload)

    async def deliver(self, request: m.Deploy, target: InstanceHandle) -> m.Deploy:
        """The deploy to send to ``target``: one naming an upload has its archive sent to
        an agent (which unpacks it), or unpacked here for the control plane's own instance
        (its source becomes that folder). The archive is removed, used."""
        upload = archive.upload_of(request)
        if upload is None:
            return request
        path = self.archive_of(upload)
        try:
            if isinstance(target, RemoteHandle):
                await target.uploads.send(upload, path)
                return request  # the agent unpacks it (dployr/agent/uploads.py)
            folder = await trio.to_thread.run_sync(archive.place, path, self._folders, request.name)
            return archive.with_folder(request, folder)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(FileNotFoundError):
                await trio.Path(path).unlink()

    async def _spool(self, body: AsyncIterable[bytes], partial: Path) -> int:
        """Write the body to ``partial``; its size. TooLarge once it passes the limit."""
        size = 0
        async with await trio.open_file(partial, "xb") as file:
            async for chunk in body:
                size += len(chunk)
                if size > self.max_size:
                    raise archive.TooLarge(self.max_size)
                await file.write(chunk)
        return size

    def _sweep(self) -> None:
        """Remove the uploads (and partial ones) older than the TTL."""
        oldest = self._clock() - self.ttl
        for entry in os.scandir(self._incoming):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < oldest:
                    os.unlink(entry.path)
