"""A local folder as an uploaded archive: packed by the CLI, unpacked where it is built.

The CLI packs a folder into a ``.tar.gz`` (:func:`pack`) walking it as a folder deploy
walks it (:func:`entries`, which ``dployr/engine/sources/folder.py`` uses too): every entry
in name order, symlinks not followed, an entry named ``.git`` left out at any depth, a
pipe, socket or device refused.
Files keep their mode and modification time, so the same content unpacked twice has the
same folder revision; owners are not kept.

Whoever builds it (the control plane for its own instance, an agent for its own) unpacks
it with :func:`unpack` (into a folder of its own: dployr/upload_folders.py), which trusts
nothing of the archive: every member is checked first
(:func:`check_members`: a relative name without ``..``, a file, folder or symlink whose
target stays inside, no device; at most :data:`MAX_ENTRIES` entries and
:data:`MAX_UNPACKED` bytes), then extracted with tarfile's ``data`` filter as a second line.
A refused archive leaves nothing behind.

A deploy names an upload by its source: ``upload:<id>`` (:func:`upload_of`); where it is
built, the source becomes the folder it was unpacked into (:func:`with_folder`).

The functions that touch files block: call them in a worker thread.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final, TypeVar

import attrs

from dployr.models import Source
from dployr.protocol import messages as m
from dployr.protocol.errors import Error

T = TypeVar("T")

UPLOAD_PREFIX: Final = "upload:"
"""A deploy's source ``upload:<id>`` names a folder uploaded to the control plane."""
MAX_ENTRIES: Final = 200_000
"""The most entries an uploaded archive may hold."""
MAX_UNPACKED: Final = 4 * 2**30
"""The most bytes the files of an uploaded archive may hold once unpacked (4 GiB): a small
archive that would unpack into a full disk is refused before anything is written."""

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class TooLarge(Error):
    """An upload passed the control plane's limit."""

    def __init__(self, limit: int) -> None:
        shown = describe_size(limit)
        super().__init__(
            "invalid",
            f"the upload is larger than this control plane's limit of {shown} "
            "(dployr up --max-upload)",
        )
        self.limit = limit


@attrs.frozen
class UploadView:
    """An upload received: its id, its size, and the source a deploy names it by."""

    upload: str
    size: int
    source: str


def describe_size(size: int) -> str:
    """``200 MiB``, ``1.5 GiB``, ``512 KiB``, ``12 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.3g} {unit}"
    return f"{size} bytes"


def new_upload_id() -> str:
    """A fresh upload id (128 random bits, hex)."""
    return secrets.token_hex(16)


def upload_of(request: m.Deploy) -> str | None:
    """The upload a deploy names as its source, or None; ``invalid`` for a malformed one."""
    if request.settings is None:
        return None
    source = request.settings.source
    if not source.remote.startswith(UPLOAD_PREFIX):
        return None
    upload = source.remote[len(UPLOAD_PREFIX) :]
    if not _UPLOAD_ID.fullmatch(upload):
        raise Error("invalid", f"not an upload: {source.remote[:80]!r}")
    if source.branch is not None or source.commit is not None:
        raise Error("invalid", "an uploaded folder has no branch or commit to choose")
    return upload


def with_folder(request: m.Deploy, folder: Path) -> m.Deploy:
    """The deploy with the folder an upload was unpacked into as its source."""
    assert request.settings is not None
    settings = attrs.evolve(request.settings, source=Source(str(folder)))
    return attrs.evolve(request, settings=settings)


# -- packing (the CLI) ---------------------------------------------------------------------


def _nothing() -> None:
    pass


def _invalid(message: str) -> Exception:
    return Error("invalid", message)


def entries(
    root: str,
    *,
    refuse: Callable[[str], Exception] = _invalid,
    between: Callable[[], None] = _nothing,
) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry under ``root`` (relative path, lstat), each folder before its content:
    the one rule of what a folder deploy copies and an upload packs (see the module).

    Names are sorted, symlinks are not followed, ``between`` is called between entries (a
    worker thread's cancellation check); anything but folders, files and symlinks is
    refused with ``refuse(message)``.
    """
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(root, folder)) as scan:
            children = sorted(scan, key=lambda entry: entry.name)
        folders = []
        for entry in children:
            between()
            if entry.name == ".git":
                continue  # a release never holds a repository
            relative = os.path.join(folder, entry.name)
            info = entry.stat(follow_symlinks=False)
            if not (
                stat.S_ISDIR(info.st_mode)
                or stat.S_ISREG(info.st_mode)
                or stat.S_ISLNK(info.st_mode)
            ):
                raise refuse(
                    f"{os.path.join(root, relative)} is not a file, folder or symlink (a pipe, "
                    "socket or device cannot be deployed): remove it from the source folder"
                )
            yield relative, info
            if stat.S_ISDIR(info.st_mode):
                folders.append(relative)
        pending.extend(reversed(folders))


def pack(folder: Path, into: BinaryIO, *, between: Callable[[], None] = _nothing) -> int:
    """Write ``folder`` as a ``.tar.gz`` to ``into``; the number of entries packed.

    An ``invalid`` Error (one line) for what a folder deploy refuses too, or an entry that
    cannot be read. ``between`` is called between entries (as :func:`entries` does).
    """
    root = str(folder)
    count = 0
    try:
        # gzip's own default level: nearly level 9's size on code, in half its time.
        with tarfile.open(
            fileobj=into, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT
        ) as tar:
            for relative, info in entries(root, between=between):
                path = os.path.join(root, relative)
                member = tarfile.TarInfo(relative)
                member.mode = stat.S_IMODE(info.st_mode)
                member.mtime = info.st_mtime
                if stat.S_ISDIR(info.st_mode):
                    member.type = tarfile.DIRTYPE
                    tar.addfile(member)
                elif stat.S_ISLNK(info.st_mode):
                    member.type = tarfile.SYMTYPE
                    member.linkname = os.readlink(path)
                    tar.addfile(member)
                else:  # a regular file; a hard link is packed as a copy
                    with open(path, "rb") as file:
                        member.size = os.fstat(file.fileno()).st_size
                        tar.addfile(member, file)
                count += 1
    except OSError as error:
        raise Error("invalid", f"packing the folder {root} failed: {error}") from error
    return count


# -- unpacking (where it is built) ---------------------------------------------------------


def check_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member of ``tar``, once each is known to be safe to unpack (see the module);
    an ``invalid`` Error naming the first that is not."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        if len(members) >= MAX_ENTRIES:
            raise Error("invalid", f"the archive holds more than {MAX_ENTRIES} entries")
        name = member.name
        shown = repr(name[:200])
        if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise Error("invalid", f"the archive holds an absolute path: {shown}")
        if ".." in name.split("/") or "\x00" in name:
            raise Error("invalid", f"the archive holds a path out of its folder: {shown}")
        if not (member.isreg() or member.isdir() or member.issym()):
            raise Error(
                "invalid", f"the archive holds {shown}, which is not a file, folder or symlink"
            )
        if member.issym():
            target = member.linkname
            inside = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if not target or target.startswith("/") or inside == ".." or inside.startswith("../"):
                raise Error(
                    "invalid",
                    f"the archive holds a symlink out of its folder: {shown} -> {target[:200]!r}",
                )
        total += member.size
        if total > MAX_UNPACKED:
            raise Error("invalid", f"the archive unpacks to more than {MAX_UNPACKED >> 30} GiB")
        members.append(member)
    return members


def check(archive: Path) -> int:
    """Read the whole archive and check its members, unpacking nothing; their number."""
    with _opened(archive) as tar:
        return len(_guarded(lambda: check_members(tar)))


def unpack(archive: Path, into: Path) -> None:
    """Unpack ``archive`` into the folder ``into``, which must not exist yet (its parent
    must). On any failure nothing is left at ``into``; an ``invalid`` Error says why."""
    partial = into.with_name(f".{into.name}.unpacking")
    shutil.rmtree(partial, ignore_errors=True)  # left by an unpack that was killed
    try:
        with _opened(archive) as tar:
            members = _guarded(lambda: check_members(tar))
            partial.mkdir(mode=0o700)
            _guarded(lambda: tar.extractall(partial, members=members, filter="data"))
        partial.chmod(0o755)
        partial.rename(into)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _opened(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise Error("invalid", f"the upload is not a .tar.gz archive: {error}") from error


def _guarded(work: Callable[[], T]) -> T:
    try:
        return work()
    except tarfile.FilterError as error:
        raise Error("invalid", f"the archive was refused: {error}") from error
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise Error("invalid", f"the archive is damaged: {error}") from error
    except OSError as error:
        raise Error("invalid", f"unpacking the archive failed: {error}") from error
