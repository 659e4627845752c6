"""Sources: fetching a service's code, then materializing one revision into a release folder.

A deploy calls :func:`fetch` (which answers *which* revision to deploy) and then
:func:`checkout` (which writes exactly that revision into a new, independent release folder).
A source is a git repository, reached over one of four transports only (``file``, ``https``,
``ssh``, ``git``), or a plain local folder that is not a git repository:

- :mod:`~dployr.engine.sources.remotes`: the remote, branch and commit checks done before
  git ever runs, and a remote's password kept apart (pure: no trio, no process);
- :mod:`~dployr.engine.sources.git`: the cache of a git remote and the checkout of a commit
  (git runs through :mod:`dployr.engine.os.launcher`);
- :mod:`~dployr.engine.sources.folder`: a plain folder's revision and its copy.

A release is built in a hidden sibling folder and renamed into place, so a failed or
cancelled checkout leaves no half-made release behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import trio

from dployr.engine.sources.folder import (
    FOLDER_PREFIX,
    copy_folder_in_thread,
    folder_revision,
    new_sibling,
    plain_folder,
    remove_tree,
)
from dployr.engine.sources.git import (
    PROCESS_MARKS,
    OutputCallback,
    cached_remote,
    checkout_commit,
    fetch_git,
)
from dployr.engine.sources.remotes import (
    HIDDEN_PASSWORD,
    Credential,
    Remote,
    SourceError,
    Transport,
    check_branch,
    check_commit,
    check_remote,
    display,
    hide_password,
    redact,
    take_password,
)
from dployr.models import Source

__all__ = [
    "DEFAULT_TIMEOUT",
    "HIDDEN_PASSWORD",
    "PROCESS_MARKS",
    "Credential",
    "OutputCallback",
    "Remote",
    "SourceError",
    "StrPath",
    "Transport",
    "check_branch",
    "check_commit",
    "check_remote",
    "checkout",
    "fetch",
    "hide_password",
    "redact",
    "take_password",
]

DEFAULT_TIMEOUT: Final = 300.0
"""Seconds a fetch or a checkout may take before git is killed."""

StrPath = str | os.PathLike[str]
"""A path, as a ``str``, a :class:`pathlib.Path` or a :class:`trio.Path`."""

T = TypeVar("T")


async def fetch(
    source: Source,
    cache: StrPath,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 -- the fetch's budget; git is killed after it
    on_output: OutputCallback | None = None,
    credential: Credential | None = None,
) -> str:
    """Bring ``cache`` up to date with ``source`` and return the revision to deploy.

    For a git source: the full SHA of ``source.commit`` if set (a short SHA is fine; it must
    be on ``source.branch`` if that is set too, else on some branch or tag), else the tip of
    ``source.branch``, else the remote's HEAD. The cached clone in ``cache`` is created the
    first time and fetched into afterwards; a cache of another remote is replaced by a fresh
    clone (once that clone has succeeded).

    For a plain local folder: ``"folder:"`` and a digest of its content (see the module
    docstring); nothing is cached. ``on_output`` receives git's progress output.
    ``credential`` is the password of a remote whose URL shows ``***`` (see
    :func:`hide_password`): git gets it only when it asks, never on its command line.

    Raises :class:`SourceError` with a one-sentence reason, including after ``timeout``
    seconds (git is killed then).
    """
    remote = check_remote(source.remote)
    branch = None if source.branch is None else check_branch(source.branch)
    commit = None if source.commit is None else check_commit(source.commit)
    cache_dir = _absolute(cache)
    try:
        folder = await plain_folder(remote)
        if folder is None:
            return await _within(
                timeout,
                "git fetch",
                partial(
                    fetch_git, remote, branch, commit, cache_dir, on_output, credential=credential
                ),
            )
        if branch is not None or commit is not None:
            raise SourceError(
                f"{folder} is a plain folder, not a git repository: it has no branch or "
                "commit to choose (remove them from the source, or make it a repository)"
            )
        return await _within(
            timeout,
            f"reading the folder {folder}",
            partial(trio.to_thread.run_sync, folder_revision, str(folder)),
        )
    except OSError as error:
        raise SourceError(f"fetching {display(remote)} failed: {error}") from error


def _absolute(path: StrPath) -> Path:
    # Lexical, like check_remote: the path as the user wrote it, made absolute.
    return Path(os.path.abspath(path))


async def checkout(
    source: Source,
    cache: StrPath,
    revision: str,
    release: StrPath,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 -- as for fetch
    on_output: OutputCallback | None = None,
) -> None:
    """Write ``revision`` of ``source`` (as returned by :func:`fetch`) into ``release``.

    ``release`` must not exist yet (its parents are created). A git release holds the
    commit's files and no ``.git``, independent of ``cache``; a plain folder is copied
    (symlinks as symlinks, modes and times kept, any ``.git`` left out). On any failure,
    the timeout included, no release folder is left behind. Raises :class:`SourceError`.
    """
    remote = check_remote(source.remote)
    release_dir, cache_dir = _absolute(release), _absolute(cache)
    try:
        folder = await _check_checkout(remote, cache_dir, revision, release_dir)
        if folder is not None:
            what = f"copying the folder {folder}"
            fill = partial(copy_folder_in_thread, folder, revision)
        else:
            what = "git checkout"
            fill = partial(checkout_commit, cache_dir, revision, on_output=on_output)
        await trio.Path(release_dir.parent).mkdir(parents=True, exist_ok=True)
        unfinished = await new_sibling(release_dir, "partial")
        try:
            await _within(timeout, what, partial(fill, unfinished))
            await _move_into_place(unfinished, release_dir)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_tree, unfinished)
            raise
    except OSError as error:
        raise SourceError(f"checking out {display(remote)} failed: {error}") from error


async def _check_checkout(remote: Remote, cache: Path, revision: str, release: Path) -> Path | None:
    """Refuse a checkout that cannot work; return the plain folder to copy, if it is one."""
    if await trio.Path(release).exists() or await trio.Path(release).is_symlink():
        raise SourceError(f"the release folder {release} already exists")
    folder = await plain_folder(remote)
    if folder is not None:
        if not revision.startswith(FOLDER_PREFIX):
            raise SourceError(f"{revision!r} is not a revision of the plain folder {folder}")
        real_folder = await trio.Path(folder).resolve()
        real_release = await trio.Path(release.parent).resolve() / release.name
        if Path(real_release).is_relative_to(real_folder) or release.is_relative_to(folder):
            raise SourceError(f"the release folder {release} is inside the source folder")
        return folder
    if not _FULL_SHA.fullmatch(revision):
        raise SourceError(f"{revision!r} is not a full commit id of {display(remote)}")
    if await cached_remote(cache) != remote.url:
        raise SourceError(f"{cache} holds no fetched copy of {display(remote)}: fetch first")
    return None


_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


async def _within(seconds: float, what: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; cancel it after ``seconds`` and raise ``<what> timed out after N s``."""
    with trio.move_on_after(seconds):
        return await work()
    raise SourceError(f"{what} timed out after {seconds:g} s")


async def _move_into_place(unfinished: Path, release: Path) -> None:
    # rename() would silently replace an empty folder that appeared meanwhile.
    if await trio.Path(release).exists():
        raise SourceError(f"the release folder {release} already exists")
    await trio.Path(unfinished).rename(release)
