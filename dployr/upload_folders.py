"""The folders uploaded deploys are built from, where they are built: :class:`UploadFolders`.

Whoever builds an uploaded folder (an agent, or the control plane for its own instance)
carries out the deploy that names it (``upload:<id>`` as its source) through
:meth:`UploadFolders.carry_out`:

- Each upload is unpacked into a folder of its own,
  ``<data dir>/uploads/unpacked/<service>/<upload>`` (:func:`dployr.archive.unpack`: in a
  hidden sibling renamed into place once whole), which the deploy names as its source.
  Nothing writes into it again: the deploy copies exactly the files it uploaded into its
  release folder (``services/<name>/releases/<id>``, what the service runs from), never a
  mix of two uploads.
- The deploys of one service that name an upload pass one at a time (a lock per service):
  unpacked, then handed to the instance, whose rule decides: a deploy while another of the
  service runs is refused in one line, as any deploy is. A refused deploy, or an upload
  that could not be unpacked, leaves no folder behind.
- Once a deploy is taken, the service's other folders no deploy reads any more are
  removed. Kept: this deploy's, and the one the service's settings name (the last deploy
  that succeeded: a deploy with no new source builds it again). A folder whose deploy
  failed goes at the service's next upload.
- A delete of the service removes every folder it had, once the service is gone; nothing
  of another service's.
- At start, what unpacks that were interrupted left (hidden folders) is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import trio

from dployr import archive
from dployr.models import Deployment
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.handle import InstanceHandle

R = TypeVar("R")


class UploadFolders:
    """The folders of the uploaded deploys of one instance (see the module)."""

    def __init__(self, root: Path) -> None:
        """``root`` is ``<data dir>/uploads``; what interrupted unpacks left is removed."""
        self._unpacked = root / "unpacked"
        self._legacy = root / "folders"
        """Where an earlier dployr kept one folder per service (removed as this would)."""
        self._locks: dict[str, trio.Lock] = {}
        # Invariant: a folder of `_unpacked/<service>` is written (unpacked, pruned,
        # removed) only by a holder of `_locks[service]`.
        self._unpacked.mkdir(parents=True, exist_ok=True)
        _remove_hidden(self._unpacked)
        for folder in os.scandir(self._unpacked):
            if folder.is_dir(follow_symlinks=False):
                _remove_hidden(Path(folder.path))
        if self._legacy.is_dir():
            _remove_hidden(self._legacy)

    async def carry_out(
        self,
        request: m.Request[R],
        instance: InstanceHandle,
        archive_of: Callable[[str], Path],
    ) -> R:
        """Carry out ``request`` on ``instance``: a deploy of an upload (its archive at
        ``archive_of(upload)``, removed once used) as a deploy of the folder it is unpacked
        into; a delete with the service's folders. Any other request as it is."""
        if isinstance(request, m.Delete):
            return cast(R, await self._delete(request, instance))
        upload = archive.upload_of(request) if isinstance(request, m.Deploy) else None
        if upload is None or not isinstance(request, m.Deploy):
            return await instance.request(request)
        path = archive_of(upload)
        try:
            return cast(R, await self._deploy(request, upload, path, instance))
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(FileNotFoundError):
                await trio.Path(path).unlink()

    async def _deploy(
        self, request: m.Deploy, upload: str, path: Path, instance: InstanceHandle
    ) -> Deployment:
        name = request.name
        async with self._lock(name):
            where = self._unpacked / name
            folder = where / upload
            try:
                await trio.to_thread.run_sync(_unpack, path, folder)
            except BaseException:
                with trio.CancelScope(shield=True):  # never deployed: nothing of it stays
                    await trio.to_thread.run_sync(_remove, folder)
                raise
            try:
                deployment = await instance.request(archive.with_folder(request, folder))
            except Exception:
                # Refused (another deploy of the service runs, bad settings): nothing of
                # it stays. Cancelled while asked, it may have been taken: its folder
                # stays until the service's next upload.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(_remove, folder)
                raise
            # Taken: no other deploy of the service runs (the instance's rule), so only
            # this one and the service's settings read a folder.
            kept = {folder, await _settings_folder(name, instance)}
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._prune, name, kept)
            return deployment

    async def _delete(self, request: m.Delete, instance: InstanceHandle) -> m.Deleted:
        name = request.name
        async with self._lock(name):
            deleted = await instance.request(request)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._prune, name, set())
            lock = self._locks[name]
            if lock.statistics().tasks_waiting == 0:
                del self._locks[name]  # forgotten with the service (taken again if needed)
            return deleted

    def _lock(self, service: str) -> trio.Lock:
        lock = self._locks.get(service)
        if lock is None:
            lock = self._locks[service] = trio.Lock()
        return lock

    def _prune(self, service: str, kept: set[Path | None]) -> None:
        """Remove the folders of ``service`` but those ``kept``."""
        where = self._unpacked / service
        if where.is_dir():
            for entry in os.scandir(where):
                if Path(entry.path) not in kept:
                    _remove(Path(entry.path))
            with contextlib.suppress(OSError):
                where.rmdir()  # empty: the service has no uploaded folder left
        legacy = self._legacy / service
        if legacy not in kept:
            _remove(legacy)


async def _settings_folder(service: str, instance: InstanceHandle) -> Path | None:
    """The folder the service's settings name as its source, if any."""
    try:
        view = await instance.request(m.GetSettings(service))
    except Error:
        return None
    return Path(view.settings.source.remote)


def _unpack(path: Path, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    archive.unpack(path, folder)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_hidden(folder: Path) -> None:
    """Remove what an interrupted unpack left in ``folder`` (its hidden entries)."""
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            _remove(Path(entry.path))
