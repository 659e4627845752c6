"""Folders uploaded to the control plane, kept until a deploy takes them: :class:`Uploads`.

``dployr deploy --remote .`` with a daemon on another machine, or for a service on another
instance, packs the folder (:mod:`dployr.archive`) and streams it to ``POST
/api/v1/uploads`` (dployr/gateway/uploads.py), which hands the body to
:meth:`Uploads.receive`: it is spooled to a file in ``<data dir>/uploads/incoming``, never
held in memory, and refused with ``too_large`` as soon as it passes the limit
(:data:`DEFAULT_MAX_UPLOAD`, ``dployr up --max-upload``), or with ``invalid`` if it is not a
safe archive; nothing of a refused upload is kept. The deploy then names it
(``upload:<id>`` as its source) and the router calls :meth:`Uploads.deliver`: for an
agent's instance, it is sent over the agent's channel (dployr/cluster/transfer.py) and
unpacked there; the control plane's own instance is served through :meth:`Uploads.building`,
which unpacks it here as an agent does (dployr/upload_folders.py: a folder per upload, one
deploy of a service at a time, removed with the service). Either way the archive is
removed once a deploy used it; one no deploy used is removed after
:data:`UPLOAD_TTL` (checked at each new upload, and at start).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from pathlib import Path
from typing import Final, TypeVar

import trio

from dployr import archive
from dployr.cluster.remote import RemoteHandle
from dployr.config import DaemonConfig, default
from dployr.metrics import InstanceSample, ServiceSample
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.events import Change, SupervisionReport
from dployr.protocol.handle import Feed, InstanceHandle, LogEntry
from dployr.upload_folders import UploadFolders

R = TypeVar("R")

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
        self._folders = UploadFolders(root)
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
        an agent first (which unpacks it), then removed. For the control plane's own
        instance it is unpacked by :meth:`building` as the deploy is carried out."""
        upload = archive.upload_of(request)
        if upload is None:
            return request
        path = self.archive_of(upload)  # one not kept is refused before anything else
        if not isinstance(target, RemoteHandle):
            return request
        try:
            await target.uploads.send(upload, path)
            return request  # the agent unpacks it (dployr/agent/uploads.py)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(FileNotFoundError):
                await trio.Path(path).unlink()

    def building(self, local: InstanceHandle) -> InstanceHandle:
        """The control plane's own instance, building the uploads its deploys name as an
        agent does (dployr/upload_folders.py): unpacked into folders of their own, one
        deploy of a service at a time, removed with the service."""
        return _Building(local, self._folders, self.archive_of)

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


class _Building:
    """An instance handle that builds uploaded folders (:meth:`Uploads.building`); every
    other member is the instance's own."""

    def __init__(
        self, local: InstanceHandle, folders: UploadFolders, archive_of: Callable[[str], Path]
    ) -> None:
        self._local = local
        self._folders = folders
        self._archive_of = archive_of

    @property
    def instance_name(self) -> str:
        """The instance's name."""
        return self._local.instance_name

    @property
    def generation(self) -> int:
        """The instance's generation."""
        return self._local.generation

    async def request(self, request: m.Request[R], /) -> R:
        """Carry out a request, building the upload a deploy names."""
        return await self._folders.carry_out(request, self._local, self._archive_of)

    def check_service(self, name: str, /) -> None:
        """As the instance's."""
        self._local.check_service(name)

    def follow_logs(
        self,
        name: str,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: frozenset[str] | None = None,
    ) -> AsyncGenerator[LogEntry, None]:
        """As the instance's."""
        return self._local.follow_logs(name, after=after, tail=tail, streams=streams)

    def subscribe_changes(self) -> Feed[Change]:
        """As the instance's."""
        return self._local.subscribe_changes()

    def subscribe_supervision(self) -> Feed[SupervisionReport]:
        """As the instance's."""
        return self._local.subscribe_supervision()

    def subscribe_metrics(self) -> Feed[ServiceSample]:
        """As the instance's."""
        return self._local.subscribe_metrics()

    def latest_samples(self) -> list[ServiceSample]:
        """As the instance's."""
        return self._local.latest_samples()

    def latest_machine(self) -> InstanceSample | None:
        """As the instance's."""
        return self._local.latest_machine()
