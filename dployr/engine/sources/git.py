"""Git sources: the cache of a remote, fetched into with a hardened git, and a commit
written from it into a release.

Git runs hardened: no prompts, no system or global config, only the four protocols of
:class:`~dployr.engine.sources.remotes.Transport`, no hooks, stdin closed, through the one
process runner of :mod:`dployr.engine.os.launcher`, terminated as a group when it outlives
the timeout (SIGTERM first, so it can remove its lock files).

The cache of a git source is a bare repository, fetched into, never re-cloned::

    <cache>/                      bare repository, created by git init (no templates, no hooks)
        dployr-remote             the URL it fetches from (another URL gets a fresh clone)
        refs/remotes/origin/*     the remote's branches (those fetched so far)
        refs/tags/*               the remote's tags (fetched when a commit is asked for)
        refs/dployr/remote-head   the remote's HEAD, when neither branch nor commit is set

A cache is created in a hidden sibling folder and renamed into place once its first fetch
has succeeded, so a cache that exists has its marker and at least one fetch behind it; when
the remote changes, the old cache is only replaced once the new clone has succeeded (a typo
in the URL costs no re-clone). A folder in the way that dployr did not make is never
deleted. Two fetches into the same cache at once are not coordinated here: the deploy runs
one at a time per service.

A git release holds the deployed commit's files and nothing of the repository: no ``.git``
(a release folder is what the service runs and may serve, and a ``.git`` in it would hand out
the repository's history and config). The files are written straight from the cache by
``git read-tree --reset -u <sha>`` with the cache as git dir, the new release as work tree
and a throw-away index file beside the release, so the cache's own HEAD and index are never
touched, and deleting the cache afterwards affects no release. ``git archive`` was not
chosen because it honors the repository's ``export-ignore`` and ``export-subst``
attributes, so the release would not be the commit.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Final

import attrs
import trio

from dployr.engine.os import launcher
from dployr.engine.sources.folder import new_sibling, remove_tree
from dployr.engine.sources.remotes import (
    Credential,
    Remote,
    SourceError,
    credential_env,
    display,
    is_control,
    without_password,
)

TERMINATE_GRACE: Final = 5.0
"""Seconds git gets after SIGTERM to remove its lock files before SIGKILL."""

CACHE_MARKER: Final = "dployr-remote"
"""The file in a cache that names the URL it was cloned from."""

_STDERR_TAIL = 64 * 1024
_STDOUT_HEAD = 1024 * 1024
_MESSAGE_LIMIT = 300

OutputCallback = Callable[[bytes], None]
"""Receives git's progress output (its stderr), chunk by chunk, as it comes."""


def last_line(stderr: bytes) -> str:
    """The line of git's stderr that says what went wrong, cleaned for a one-line message.

    That is git's first ``fatal:`` or ``error:`` line, except for the generic "Could not read
    from remote repository", whose cause (ssh's own message) is the line before it; failing
    those, the last line.
    """
    lines = [line.strip() for line in re.split(rb"[\r\n]+", stderr)]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    chosen = lines[-1]
    for index, line in enumerate(lines):
        if line.startswith((b"fatal:", b"error:")):
            generic = line == b"fatal: Could not read from remote repository."
            chosen = lines[index - 1] if generic and index > 0 else line
            break
    text = "".join(ch for ch in chosen.decode("utf-8", "replace") if not is_control(ch))
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


_GIT_OPTIONS: Final = (
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "core.hooksPath=/dev/null",
    # A detached `gc --auto` would escape the process group and the timeout.
    "-c",
    "gc.autoDetach=false",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "advice.detachedHead=false",
)
_GIT_ENV: Final = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "false",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    "GIT_ALLOW_PROTOCOL": "file:https:ssh:git",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
}
# Inherited variables that would send git elsewhere or let it prompt.
_DROPPED_ENV: Final = frozenset({"SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "GCM_INTERACTIVE"})


PROCESS_MARKS: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "PROCESS_MARKS", default=()
)
"""Variables every git of the current task carries, such as the instance id that lets a
daemon started after a crash find and kill a fetch its predecessor left running."""


def _git_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "DPLOYR_")) and key not in _DROPPED_ENV
    }
    env.update(_GIT_ENV)
    env.update(dict(PROCESS_MARKS.get()))
    env.update(extra)
    return env


@attrs.frozen
class GitResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    """The last 64 KiB of it."""


async def run_git(
    what: str,
    args: Sequence[str],
    *,
    on_output: OutputCallback | None = None,
    check: bool = True,
    credential: Credential | None = None,
    env: Mapping[str, str] = MappingProxyType({}),
) -> GitResult:
    """Run ``git args``; raise ``SourceError("<what> failed: <git's error>")`` if it fails.

    Git runs through the one process runner (:func:`dployr.engine.os.launcher.run`) as a
    service process does: in a new session and, where the instance has them, a cgroup of
    its own, so that on cancellation (the timeout) git and all it started (ssh,
    upload-pack, remote helpers) gets SIGTERM, the grace to remove its lock files, then
    SIGKILL, and is awaited; a daemon killed meanwhile leaves none of it running.
    """
    stdout = bytearray()
    stderr = bytearray()

    def head(chunk: bytes) -> None:
        stdout.extend(chunk[: max(0, _STDOUT_HEAD - len(stdout))])

    def tail(chunk: bytes) -> None:
        if on_output is not None:
            on_output(chunk)
        stderr.extend(chunk)
        if len(stderr) > _STDERR_TAIL:
            del stderr[: len(stderr) - _STDERR_TAIL]

    program = launcher.Program(
        ["git", *_GIT_OPTIONS, *args],
        {**_git_env(env), **credential_env(credential)},  # a password only here
        label="git",
    )
    try:
        returncode = await launcher.run(
            program,
            on_stdout=head,
            on_stderr=tail,
            deliver_cancel=launcher.terminate(TERMINATE_GRACE),
        )
    except OSError as error:
        raise SourceError(f"git could not be started ({error}): is git installed?") from error
    result = GitResult(returncode, bytes(stdout), bytes(stderr))
    if check and result.returncode != 0:
        raise SourceError(f"{what} failed: {last_line(result.stderr) or _exit(result)}")
    return result


def _exit(result: GitResult) -> str:
    return f"git exited with code {result.returncode}"


async def fetch_git(
    remote: Remote,
    branch: str | None,
    commit: str | None,
    cache: Path,
    on_output: OutputCallback | None,
    *,
    credential: Credential | None,
) -> str:
    if credential is not None and credential.remote != remote.url:
        credential = None  # kept for another remote: never sent elsewhere
    await _update_cache(remote, _plan(branch, commit), cache, on_output, credential)
    return await _resolve(remote, branch, commit, cache)


@attrs.frozen
class _Plan:
    """What to fetch into the cache for one source."""

    refspecs: tuple[str, ...]
    prune: bool


_BRANCHES = "refs/remotes/origin/"
_REMOTE_HEAD = "refs/dployr/remote-head"


def _plan(branch: str | None, commit: str | None) -> _Plan:
    if branch is not None:
        return _Plan((f"+refs/heads/{branch}:{_BRANCHES}{branch}",), prune=False)
    if commit is not None:
        # A commit can be on any branch or tag, so fetch them all (and drop deleted ones, so
        # that a commit no longer on the remote is refused rather than served from the cache).
        return _Plan((f"+refs/heads/*:{_BRANCHES}*", "+refs/tags/*:refs/tags/*"), prune=True)
    return _Plan((f"+HEAD:{_REMOTE_HEAD}",), prune=False)


async def _update_cache(
    remote: Remote,
    plan: _Plan,
    cache: Path,
    on_output: OutputCallback | None,
    credential: Credential | None,
) -> None:
    if await cached_remote(cache) == remote.url:
        await _git_fetch(cache, remote, plan, on_output, credential)
        return
    # A clone is made beside the cache and only then replaces it: a remote that fails to
    # fetch (a typo, a network error) leaves the cache of the previous remote in place.
    await trio.Path(cache.parent).mkdir(parents=True, exist_ok=True)
    fresh = await new_sibling(cache, "new")
    try:
        await run_git("git init", ["init", "--quiet", "--bare", "--template=", "--", str(fresh)])
        # Releases fetch a commit by its id from the cache, whatever the protocol version.
        await run_git(
            "git config",
            ["--git-dir", str(fresh), "config", "uploadpack.allowAnySHA1InWant", "true"],
        )
        await trio.Path(fresh, CACHE_MARKER).write_text(remote.url + "\n", encoding="utf-8")
        await _git_fetch(fresh, remote, plan, on_output, credential)
        if await trio.Path(cache).exists():  # the cache of another remote
            old = await new_sibling(cache, "old")
            await trio.Path(cache).rename(old)  # onto the empty folder
            await trio.Path(fresh).rename(cache)
            await trio.to_thread.run_sync(remove_tree, old)
        else:
            await trio.Path(fresh).rename(cache)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(remove_tree, fresh)
        raise


async def cached_remote(cache: Path) -> str | None:
    """The URL the cache fetches from; None if there is no cache; raise if it is not ours."""
    if not await trio.Path(cache).exists():
        return None
    try:
        return (await trio.Path(cache, CACHE_MARKER).read_text(encoding="utf-8")).strip()
    except FileNotFoundError:
        if not await trio.Path(cache).is_dir() or any(await trio.Path(cache).iterdir()):
            raise SourceError(
                f"{cache} is in the way of the source cache and was not made by dployr; "
                "move it away"
            ) from None
        return ""  # an empty folder: replaced by a fresh cache


async def _git_fetch(
    repo: Path,
    remote: Remote,
    plan: _Plan,
    on_output: OutputCallback | None,
    credential: Credential | None,
) -> None:
    await run_git(
        "git fetch",
        [
            "--git-dir",
            str(repo),
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            *(["--prune"] if plan.prune else []),
            *(["--progress"] if on_output is not None else []),
            "--",
            without_password(remote.url),  # a password is in the settings only as ***
            *plan.refspecs,
        ],
        on_output=on_output,
        credential=credential,
    )


async def _resolve(remote: Remote, branch: str | None, commit: str | None, cache: Path) -> str:
    if commit is None:
        ref = _REMOTE_HEAD if branch is None else _BRANCHES + branch
        return await _rev_parse(cache, ref)
    result = await run_git(
        "git rev-parse",
        [
            "--git-dir",
            str(cache),
            "rev-parse",
            "--verify",
            "--end-of-options",
            commit + "^{commit}",
        ],
        check=False,
    )
    sha = result.stdout.decode("ascii", "replace").strip()
    if b"is ambiguous" in result.stderr:
        raise SourceError(
            f"the short commit {commit} is ambiguous in {display(remote)}: give more digits"
        )
    # A tag or branch that happens to be named like the digits must not stand in for them.
    if result.returncode != 0 or not sha.startswith(commit):
        raise SourceError(f"commit {commit} was not found in {display(remote)}")
    if branch is not None:
        on_branch = await run_git(
            "git merge-base",
            ["--git-dir", str(cache), "merge-base", "--is-ancestor", sha, _BRANCHES + branch],
            check=False,
        )
        if on_branch.returncode == 1:
            raise SourceError(f"commit {commit} is not on branch {branch} of {display(remote)}")
        if on_branch.returncode != 0:
            raise SourceError(f"git merge-base failed: {last_line(on_branch.stderr)}")
        return sha
    reachable = await run_git(
        "git for-each-ref",
        [
            "--git-dir",
            str(cache),
            "for-each-ref",
            "--count=1",
            "--format=%(refname)",
            f"--contains={sha}",
            _BRANCHES,
            "refs/tags/",
        ],
    )
    if not reachable.stdout.strip():
        raise SourceError(
            f"commit {commit} is not on any branch or tag of {display(remote)} (any more)"
        )
    return sha


async def _rev_parse(repo: Path, ref: str) -> str:
    result = await run_git(
        "git rev-parse",
        ["--git-dir", str(repo), "rev-parse", "--verify", "--end-of-options", ref + "^{commit}"],
    )
    return result.stdout.decode("ascii").strip()


async def checkout_commit(
    cache: Path, sha: str, release: Path, *, on_output: OutputCallback | None
) -> None:
    # The index is a file of its own beside the release: neither in the release (which
    # holds no repository) nor the cache's (which a checkout must not change).
    index = release.with_name(f"{release.name}.index")
    try:
        await run_git(
            "git checkout",
            [
                f"--git-dir={cache}",
                f"--work-tree={release}",
                "read-tree",
                "--reset",
                "-u",
                sha,
            ],
            on_output=on_output,
            env={"GIT_INDEX_FILE": str(index)},
        )
    finally:
        with trio.CancelScope(shield=True):
            await trio.Path(index).unlink(missing_ok=True)
