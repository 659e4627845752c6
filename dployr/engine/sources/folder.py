"""Plain folders as sources: a folder's revision, its copy into a release, and the hidden
sibling folders a fetch or checkout fills before renaming them into place.

A plain folder's revision is ``"folder:"`` followed by the SHA-256 of a record per entry,
walked in name order without following symlinks: for a folder its path and mode, for a file
its path, mode, size and modification time (ns), for a symlink its path and target. Its
checkout copies the tree, symlinks as symlinks, modes and times kept, and refuses the copy
when the folder no longer has the fetched revision. An entry named ``.git``, at any depth
(a nested repository, a submodule's ``.git`` file), is neither counted nor copied. The walk
and the copy run in worker threads.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Final

import trio

from dployr.archive import entries
from dployr.engine.sources.remotes import Remote, SourceError

FOLDER_PREFIX: Final = "folder:"
"""How the revision of a plain folder starts (a git revision is a bare hex SHA)."""

_COPY_CHUNK = 1024 * 1024


async def plain_folder(remote: Remote) -> Path | None:
    """The folder, if ``remote`` is a local path to a folder that is not a git repository."""
    path = remote.local_path
    if path is None:
        return None
    if not await trio.Path(path).exists():
        raise SourceError(f"the source folder {path} does not exist")
    if not await trio.Path(path).is_dir():
        raise SourceError(f"the source {path} is not a folder or a git repository")
    if await trio.Path(path, ".git").exists():
        return None
    bare = (
        await trio.Path(path, "HEAD").is_file()
        and await trio.Path(path, "objects").is_dir()
        and await trio.Path(path, "refs").is_dir()
    )
    return None if bare else path


async def copy_folder_in_thread(folder: Path, revision: str, into: Path) -> None:
    await trio.to_thread.run_sync(copy_folder, str(folder), str(into), revision)


async def new_sibling(path: Path, what: str) -> Path:
    """Create and return an empty hidden folder next to ``path``, to be renamed onto it."""
    sibling = path.with_name(f".{path.name}.{what}-{secrets.token_hex(4)}")
    await trio.Path(sibling).mkdir()
    return sibling


def remove_tree(path: Path) -> None:
    with suppress(FileNotFoundError):
        shutil.rmtree(path)


def _entries(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry under ``root`` (relative path, lstat), each folder before its content.

    Names are sorted, symlinks are not followed, and the caller may be cancelled between
    entries. Anything but folders, files and symlinks is refused. The same walk packs a
    folder the CLI uploads (dployr/archive.py): one rule for what a folder deploys.
    """
    return entries(root, refuse=SourceError, between=trio.from_thread.check_cancelled)


def _record(relative: str, info: os.stat_result, target: str | None = None) -> bytes:
    """One entry's part of a folder revision (see the module docstring)."""
    path = os.fsencode(relative)
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        return b"d %o %s\0" % (mode, path)
    if stat.S_ISLNK(info.st_mode):
        return b"l %s\0%s\0" % (path, os.fsencode(target or ""))
    return b"f %o %d %d %s\0" % (mode, info.st_size, info.st_mtime_ns, path)


def folder_revision(root: str) -> str:
    digest = hashlib.sha256()
    try:
        for relative, info in _entries(root):
            target = None
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(os.path.join(root, relative))
            digest.update(_record(relative, info, target))
    except OSError as error:
        raise SourceError(f"the source folder {root} could not be read: {error}") from error
    return FOLDER_PREFIX + digest.hexdigest()


def copy_folder(root: str, into: str, revision: str) -> None:
    """Copy ``root``'s content into the existing folder ``into``; check it is ``revision``."""
    digest = hashlib.sha256()
    folders: list[tuple[str, os.stat_result]] = [(into, os.stat(root))]
    try:
        for relative, info in _entries(root):
            source, target = os.path.join(root, relative), os.path.join(into, relative)
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(target, 0o700)  # opened up once its content is in
                folders.append((target, info))
                digest.update(_record(relative, info))
            elif stat.S_ISLNK(info.st_mode):
                link = os.readlink(source)
                os.symlink(link, target)
                os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
                digest.update(_record(relative, info, link))
            else:
                digest.update(_record(relative, _copy_file(source, target)))
        for target, info in reversed(folders):
            os.chmod(target, stat.S_IMODE(info.st_mode))
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    except OSError as error:
        raise SourceError(f"copying the folder {root} failed: {error}") from error
    if FOLDER_PREFIX + digest.hexdigest() != revision:
        raise SourceError(f"the folder {root} changed since it was fetched: deploy again")


def _copy_file(source: str, target: str) -> os.stat_result:
    """Copy one regular file with its mode and times; return the stat of what was copied."""
    # O_NOFOLLOW and O_NONBLOCK: a file swapped for a symlink or a pipe is not followed or
    # waited on; the fstat then says what was really opened.
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as reader:
        info = os.fstat(reader.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"{source} changed while it was copied: deploy again")
        with open(target, "xb") as writer:
            shutil.copyfileobj(reader, writer, _COPY_CHUNK)
    os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    return info
