"""Sources: fetching a service's code, then materializing one revision into a release folder.

A deploy calls :func:`fetch` (which answers *which* revision to deploy) and then
:func:`checkout` (which writes exactly that revision into a new, independent release folder).
A source is a git repository, reached over one of four transports only (``file``, ``https``,
``ssh``, ``git``), or a plain local folder that is not a git repository.

Every remote goes through :func:`check_remote` before git ever runs, so that remote-helper
addresses (``ext::sh -c ...``, ``fd::17``), option injection (``--upload-pack=...``,
``ssh://-oProxyCommand=...``), plain ``http://`` and control characters are refused with one
clear sentence. Git itself then runs hardened: no prompts, no system or global config, only
the four protocols, no hooks, stdin closed, in its own session, killed as a group when it
outlives the timeout (SIGTERM first, so it can remove its lock files).

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

A plain folder's revision is ``"folder:"`` followed by the SHA-256 of a record per entry,
walked in name order without following symlinks: for a folder its path and mode, for a file
its path, mode, size and modification time (ns), for a symlink its path and target. Its
checkout copies the tree, symlinks as symlinks, modes and times kept, and refuses the copy
when the folder no longer has the fetched revision. An entry named ``.git``, at any depth
(a nested repository, a submodule's ``.git`` file), is neither counted nor copied.

A release is built in a hidden sibling folder and renamed into place, so a failed or
cancelled checkout leaves no half-made release behind.
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import os
import re
import secrets
import shutil
import stat
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeVar

import attrs
import trio

from dployr.engine.os import launcher
from dployr.errors import DployrError
from dployr.models import Source

__all__ = [
    "DEFAULT_TIMEOUT",
    "HIDDEN_PASSWORD",
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

TERMINATE_GRACE: Final = 5.0
"""Seconds git gets after SIGTERM to remove its lock files before SIGKILL."""

FOLDER_PREFIX: Final = "folder:"
"""How the revision of a plain folder starts (a git revision is a bare hex SHA)."""

CACHE_MARKER: Final = "dployr-remote"
"""The file in a cache that names the URL it was cloned from."""

_STDERR_TAIL = 64 * 1024
_STDOUT_HEAD = 1024 * 1024
_COPY_CHUNK = 1024 * 1024
_MESSAGE_LIMIT = 300

StrPath = str | os.PathLike[str]
"""A path, as a ``str``, a :class:`pathlib.Path` or a :class:`trio.Path`."""

OutputCallback = Callable[[bytes], None]
"""Receives git's progress output (its stderr), chunk by chunk, as it comes."""

T = TypeVar("T")


class SourceError(DployrError):
    """A service's code could not be fetched or checked out; the message says why."""


# ---------------------------------------------------------------------------------------------
# Remotes and refs: pure checks, done before git runs.


class Transport(enum.Enum):
    """How git reaches a remote: only these four are allowed."""

    FILE = "file"
    HTTPS = "https"
    SSH = "ssh"
    GIT = "git"


@attrs.frozen
class Remote:
    """A remote that :func:`check_remote` accepted."""

    transport: Transport
    url: str
    """What git is given: the URL as written, or the absolute form of a local path."""
    local_path: Path | None = None
    """For a remote written as a local path: that path, absolute (a repository or a folder)."""


ALLOWED_SCHEMES: Final = {  # the URL schemes dployr lets git use, and their transports
    "file": Transport.FILE,
    "https": Transport.HTTPS,
    "ssh": Transport.SSH,
    "git": Transport.GIT,
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# Git hands `<helper>::<address>` to the program git-remote-<helper> (ext:: runs a command).
_HELPER = re.compile(r"[A-Za-z0-9+.-]*::")
_SCP = re.compile(r"(?:(?P<user>[^@/]*)@)?(?P<host>\[[^\]/]*\]|[^@:/\[\]]*):(?P<path>.*)", re.S)
_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]+)?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+~-]*")
_ALLOWED_WORDS = "https, ssh, git or file"


def check_remote(remote: str) -> Remote:
    """Classify ``remote`` and return it as a :class:`Remote`, or raise :class:`SourceError`.

    Accepted: ``https://``, ``ssh://``, ``git://`` and ``file:///`` URLs, scp-style
    ``[user@]host:path`` (which is ssh), and local paths (``file``; a relative path is made
    absolute against the current directory). Everything else is refused, before git runs.
    The refusal shows the remote's password, if any, as ``***``.
    """
    try:
        return _classify(remote)
    except SourceError as error:
        # Not chained: the original message quotes the password. A refused remote may not
        # split as a URL does (a raw '/' in its password), so anything like one is hidden.
        raise SourceError(_LOOSE_PASSWORD.sub(r"\g<head>***@", redact(str(error)))) from None


def _classify(remote: str) -> Remote:
    if not isinstance(remote, str) or not remote.strip():
        raise SourceError("the remote is empty: give a git URL or a local path")
    if any(_is_control(ch) for ch in remote):
        raise SourceError("the remote may not contain control characters or line breaks")
    if remote != remote.strip():
        raise SourceError(f"the remote {remote!r} has leading or trailing spaces")
    if remote.startswith("-"):
        raise SourceError(
            f"the remote {remote!r} starts with '-' (which git would read as an option); "
            "write a local path as ./path"
        )
    if _HELPER.match(remote):
        helper = remote.split("::", 1)[0]
        raise SourceError(
            f"the remote {remote!r} uses git's transport::address form ({helper}::), which "
            f"dployr does not allow: use an {_ALLOWED_WORDS} URL"
        )
    if match := _SCHEME.match(remote):
        scheme = match.group(1).lower()
        return _check_url(scheme + remote[len(scheme) :], scheme)
    if _looks_scp(remote):
        # `file:etc` or `https:host/x` is a URL missing its `//`, not the ssh host `file`.
        word = remote.split(":", 1)[0].lower()
        if word in ("file", "http", "https"):
            raise SourceError(
                f"the remote {remote!r} is not a valid URL: write {word}://..., or ./path "
                "for a local path"
            )
        return _check_scp(remote)
    path = os.path.abspath(remote)
    return Remote(Transport.FILE, path, Path(path))


def _is_control(ch: str) -> bool:
    return ch != " " and not ch.isprintable()


def _looks_scp(remote: str) -> bool:
    # Git's own rule: a ':' before the first '/' makes it `host:path`, not a local path.
    colon, slash = remote.find(":"), remote.find("/")
    return colon != -1 and (slash == -1 or colon < slash)


def _check_url(remote: str, scheme: str) -> Remote:
    if scheme == "http":
        raise SourceError(
            f"the remote {remote!r} uses plain http, which dployr does not allow: use https"
        )
    transport = ALLOWED_SCHEMES.get(scheme)
    if transport is None:
        raise SourceError(
            f"the remote {remote!r} uses the transport {scheme!r}, which dployr does not "
            f"allow: use {_ALLOWED_WORDS}"
        )
    if transport is Transport.FILE:
        if not remote.startswith("file:///") or remote.rstrip("/") == "file:":
            raise SourceError(
                f"the remote {remote!r} must name an absolute path, as in file:///srv/repo.git"
            )
        return Remote(transport, remote)
    try:
        parts = urllib.parse.urlsplit(remote)
        host, user, _ = parts.hostname, parts.username, parts.port
    except ValueError as error:
        raise SourceError(f"the remote {remote!r} is not a valid URL ({error})") from error
    _check_host(remote, host or "")
    if user is not None and transport is not Transport.HTTPS:
        _check_user(remote, user)
    if not parts.path.strip("/"):
        raise SourceError(f"the remote {remote!r} names no repository path")
    return Remote(transport, remote)


def _check_scp(remote: str) -> Remote:
    match = _SCP.fullmatch(remote)
    if match is None:
        raise SourceError(
            f"the remote {remote!r} is not a valid ssh address: use user@host:path, or ./path "
            "for a local path"
        )
    host = match.group("host")
    if host.startswith("["):  # git's [host:port]:path, or an IPv6 address
        host = host[1:-1]
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and not _IPV6.fullmatch(host):
            host = name
    _check_host(remote, host)
    if match.group("user") is not None:
        _check_user(remote, match.group("user"))
    if not match.group("path").strip("/"):
        raise SourceError(f"the remote {remote!r} names no repository path")
    return Remote(Transport.SSH, remote)


def _check_host(remote: str, host: str) -> None:
    # ssh would read a host starting with '-' as an option (-oProxyCommand=...).
    if host.startswith("-") or not (_HOST_NAME.fullmatch(host) or _IPV6.fullmatch(host)):
        raise SourceError(f"the remote {remote!r} does not name a valid host")


def _check_user(remote: str, user: str) -> None:
    if not _USER.fullmatch(user):
        raise SourceError(f"the remote {remote!r} does not name a valid user")


_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_COMMIT = re.compile(r"[0-9a-fA-F]{4,64}")


def check_branch(branch: str) -> str:
    """Return ``branch`` if git accepts it as a branch name, else raise :class:`SourceError`.

    The rules of ``git check-ref-format --branch``, written out so that git never sees a
    branch that could be read as an option or a revision expression.
    """
    parts = branch.split("/")
    if (
        not branch
        or len(branch) > 255
        or branch.startswith(("-", "/"))
        or branch.endswith(("/", ".", ".lock"))
        or branch == "@"
        or ".." in branch
        or "@{" in branch
        or _BAD_REF_CHARS.search(branch)
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in parts)
    ):
        raise SourceError(f"{branch!r} is not a valid git branch name")
    return branch


def check_commit(commit: str) -> str:
    """Return ``commit`` in lower case if it is a commit id (4 to 64 hex digits), else raise."""
    if not _COMMIT.fullmatch(commit):
        raise SourceError(
            f"{commit!r} is not a commit id: give 4 to 64 hexadecimal digits of its SHA"
        )
    return commit.lower()


def _display(remote: Remote) -> str:
    """The remote as shown in messages: its password, if any, as ``***``."""
    return redact(remote.url)


# ---------------------------------------------------------------------------------------------
# Passwords in remotes: kept apart, shown as ***, handed to git outside its command line.

HIDDEN_PASSWORD: Final = "***"
"""What a remote's password is shown as, everywhere; given back, it means "the one kept"."""

# scheme://authority: the authority ends at the path, query or fragment (or a space, in text).
_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#\s]*)")


def _split_authority(authority: str) -> tuple[str, str | None, str]:
    """``user[:password]@host`` as (user, password or None, host), split as urllib does:
    the host follows the last ``@``, the password the first ``:`` of what precedes it."""
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return "", None, authority
    user, colon, password = userinfo.partition(":")
    return user, password if colon else None, host


_LOOSE_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:@/]*:)[^\s@]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***``."""

    def hide(match: re.Match[str]) -> str:
        user, password, host = _split_authority(match["authority"])
        if password is None:
            return match[0]
        return f"{match['scheme']}{user}:{HIDDEN_PASSWORD}@{host}"

    return _AUTHORITY.sub(hide, text)


def take_password(remote: str) -> tuple[str, str | None]:
    """Split ``remote`` into the remote as stored and shown (password ``***``) and the
    password (percent-encoded as written), or ``(remote, None)`` if it has none.

    Only a ``scheme://`` URL carries one; :func:`check_remote` refuses ``:`` in the user of
    an scp-style address.
    """
    match = _AUTHORITY.match(remote)
    if match is None:
        return remote, None
    _, password, _ = _split_authority(match["authority"])
    return redact(remote), password


def _without_password(url: str) -> str:
    """The URL that git is given: ``scheme://user@host/...``, the password left out."""
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    user, password, host = _split_authority(match["authority"])
    if password is None:
        return url
    return f"{match['scheme']}{user}@{host}{url[match.end() :]}"


@attrs.frozen
class Credential:
    """The password of a remote, kept apart from it (in the store, sealed)."""

    remote: str
    """The remote it belongs to, as stored and shown (its password ``***``)."""
    password: str = attrs.field(repr=False)
    """As written in the URL (percent-encoded)."""


def hide_password(source: Source, kept: Credential | None) -> tuple[Source, Credential | None]:
    """``source`` as it may be stored and shown, and the credential to keep for it.

    A remote with a password gives a new credential; one with ``***`` keeps ``kept`` if
    that was given for this very remote (else SourceError: a password is never carried
    over to another host or user); one without a password keeps none.
    """
    shown, password = take_password(source.remote)
    if password is None:
        return source, None
    hidden = attrs.evolve(source, remote=shown)
    if password != HIDDEN_PASSWORD:
        return hidden, Credential(shown, password)
    if kept is None or kept.remote != shown:
        raise SourceError(
            f"the password of {shown} is hidden ({HIDDEN_PASSWORD}) and none is kept for "
            "that remote: give the password in the URL again"
        )
    return hidden, kept


def _credential_env(credential: Credential | None) -> dict[str, str]:
    """What git needs to answer a password prompt with ``credential``: a credential helper
    (configured through the environment) that prints it, from the environment, for ``get``.
    Nothing of it is on git's command line, so ``ps`` never shows it."""
    if credential is None:
        return {}
    helper = '!f() { test "$1" = get && printf \'password=%s\\n\' "$DPLOYR_GIT_PASSWORD"; }; f'
    return {
        "DPLOYR_GIT_PASSWORD": urllib.parse.unquote(credential.password),
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",  # no helper from any config file
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": helper,
    }


def _last_line(stderr: bytes) -> str:
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
    text = "".join(ch for ch in chosen.decode("utf-8", "replace") if not _is_control(ch))
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Running git.

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
class _GitResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    """The last 64 KiB of it."""


async def _git(
    what: str,
    args: Sequence[str],
    *,
    on_output: OutputCallback | None = None,
    check: bool = True,
    credential: Credential | None = None,
    env: Mapping[str, str] = MappingProxyType({}),
) -> _GitResult:
    """Run ``git args``; raise ``SourceError("<what> failed: <git's error>")`` if it fails.

    Git runs as a service process does (:func:`launcher.launch_program`): in a new session
    and, where the instance has them, a cgroup of its own, so that on cancellation (the
    timeout) git and all it started (ssh, upload-pack, remote helpers) is terminated and
    awaited, and a daemon killed meanwhile leaves none of it running.
    """
    try:
        process = await launcher.launch_program(
            ["git", *_GIT_OPTIONS, *args],
            {**_git_env(env), **_credential_env(credential)},  # a password only here
            label="git",
        )
    except OSError as error:
        raise SourceError(f"git could not be started ({error}): is git installed?") from error
    stdout = bytearray()
    stderr = bytearray()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_head, process.stdout, stdout)
            nursery.start_soon(_read_tail, process.stderr, stderr, on_output)
            await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            # The grace if git is still running (cancelled), then whatever is left of it.
            await launcher.stop(process, TERMINATE_GRACE)
            await process.stdout.aclose()
            await process.stderr.aclose()
    result = _GitResult(await process.wait(), bytes(stdout), bytes(stderr))
    if check and result.returncode != 0:
        raise SourceError(f"{what} failed: {_last_line(result.stderr) or _exit(result)}")
    return result


def _exit(result: _GitResult) -> str:
    return f"git exited with code {result.returncode}"


async def _read_head(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    async for chunk in stream:
        into += bytes(chunk[: max(0, _STDOUT_HEAD - len(into))])


async def _read_tail(
    stream: trio.abc.ReceiveStream, into: bytearray, on_output: OutputCallback | None
) -> None:
    async for chunk in stream:
        if on_output is not None:
            on_output(bytes(chunk))
        into += chunk
        if len(into) > _STDERR_TAIL:
            del into[: len(into) - _STDERR_TAIL]


# ---------------------------------------------------------------------------------------------
# Fetch.


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
        folder = await _plain_folder(remote)
        if folder is None:
            return await _within(
                timeout,
                "git fetch",
                partial(
                    _fetch_git, remote, branch, commit, cache_dir, on_output, credential=credential
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
            partial(trio.to_thread.run_sync, _folder_revision, str(folder)),
        )
    except OSError as error:
        raise SourceError(f"fetching {_display(remote)} failed: {error}") from error


async def _fetch_git(
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


def _absolute(path: StrPath) -> Path:
    # Lexical, like check_remote: the path as the user wrote it, made absolute.
    return Path(os.path.abspath(path))


async def _plain_folder(remote: Remote) -> Path | None:
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
    if await _cached_remote(cache) == remote.url:
        await _git_fetch(cache, remote, plan, on_output, credential)
        return
    # A clone is made beside the cache and only then replaces it: a remote that fails to
    # fetch (a typo, a network error) leaves the cache of the previous remote in place.
    await trio.Path(cache.parent).mkdir(parents=True, exist_ok=True)
    fresh = await _new_sibling(cache, "new")
    try:
        await _git("git init", ["init", "--quiet", "--bare", "--template=", "--", str(fresh)])
        # Releases fetch a commit by its id from the cache, whatever the protocol version.
        await _git(
            "git config",
            ["--git-dir", str(fresh), "config", "uploadpack.allowAnySHA1InWant", "true"],
        )
        await trio.Path(fresh, CACHE_MARKER).write_text(remote.url + "\n", encoding="utf-8")
        await _git_fetch(fresh, remote, plan, on_output, credential)
        if await trio.Path(cache).exists():  # the cache of another remote
            old = await _new_sibling(cache, "old")
            await trio.Path(cache).rename(old)  # onto the empty folder
            await trio.Path(fresh).rename(cache)
            await trio.to_thread.run_sync(_remove_tree, old)
        else:
            await trio.Path(fresh).rename(cache)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_remove_tree, fresh)
        raise


async def _cached_remote(cache: Path) -> str | None:
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
    await _git(
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
            _without_password(remote.url),  # a password is in the settings only as ***
            *plan.refspecs,
        ],
        on_output=on_output,
        credential=credential,
    )


async def _resolve(remote: Remote, branch: str | None, commit: str | None, cache: Path) -> str:
    if commit is None:
        ref = _REMOTE_HEAD if branch is None else _BRANCHES + branch
        return await _rev_parse(cache, ref)
    result = await _git(
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
            f"the short commit {commit} is ambiguous in {_display(remote)}: give more digits"
        )
    # A tag or branch that happens to be named like the digits must not stand in for them.
    if result.returncode != 0 or not sha.startswith(commit):
        raise SourceError(f"commit {commit} was not found in {_display(remote)}")
    if branch is not None:
        on_branch = await _git(
            "git merge-base",
            ["--git-dir", str(cache), "merge-base", "--is-ancestor", sha, _BRANCHES + branch],
            check=False,
        )
        if on_branch.returncode == 1:
            raise SourceError(f"commit {commit} is not on branch {branch} of {_display(remote)}")
        if on_branch.returncode != 0:
            raise SourceError(f"git merge-base failed: {_last_line(on_branch.stderr)}")
        return sha
    reachable = await _git(
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
            f"commit {commit} is not on any branch or tag of {_display(remote)} (any more)"
        )
    return sha


async def _rev_parse(repo: Path, ref: str) -> str:
    result = await _git(
        "git rev-parse",
        ["--git-dir", str(repo), "rev-parse", "--verify", "--end-of-options", ref + "^{commit}"],
    )
    return result.stdout.decode("ascii").strip()


# ---------------------------------------------------------------------------------------------
# Checkout.


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
            fill = partial(_copy_folder_in_thread, folder, revision)
        else:
            what = "git checkout"
            fill = partial(_checkout_commit, cache_dir, revision, on_output=on_output)
        await trio.Path(release_dir.parent).mkdir(parents=True, exist_ok=True)
        unfinished = await _new_sibling(release_dir, "partial")
        try:
            await _within(timeout, what, partial(fill, unfinished))
            await _move_into_place(unfinished, release_dir)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove_tree, unfinished)
            raise
    except OSError as error:
        raise SourceError(f"checking out {_display(remote)} failed: {error}") from error


async def _check_checkout(remote: Remote, cache: Path, revision: str, release: Path) -> Path | None:
    """Refuse a checkout that cannot work; return the plain folder to copy, if it is one."""
    if await trio.Path(release).exists() or await trio.Path(release).is_symlink():
        raise SourceError(f"the release folder {release} already exists")
    folder = await _plain_folder(remote)
    if folder is not None:
        if not revision.startswith(FOLDER_PREFIX):
            raise SourceError(f"{revision!r} is not a revision of the plain folder {folder}")
        real_folder = await trio.Path(folder).resolve()
        real_release = await trio.Path(release.parent).resolve() / release.name
        if Path(real_release).is_relative_to(real_folder) or release.is_relative_to(folder):
            raise SourceError(f"the release folder {release} is inside the source folder")
        return folder
    if not _FULL_SHA.fullmatch(revision):
        raise SourceError(f"{revision!r} is not a full commit id of {_display(remote)}")
    if await _cached_remote(cache) != remote.url:
        raise SourceError(f"{cache} holds no fetched copy of {_display(remote)}: fetch first")
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


async def _copy_folder_in_thread(folder: Path, revision: str, into: Path) -> None:
    await trio.to_thread.run_sync(_copy_folder, str(folder), str(into), revision)


async def _checkout_commit(
    cache: Path, sha: str, release: Path, *, on_output: OutputCallback | None
) -> None:
    # The index is a file of its own beside the release: neither in the release (which
    # holds no repository) nor the cache's (which a checkout must not change).
    index = release.with_name(f"{release.name}.index")
    try:
        await _git(
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


async def _new_sibling(path: Path, what: str) -> Path:
    """Create and return an empty hidden folder next to ``path``, to be renamed onto it."""
    sibling = path.with_name(f".{path.name}.{what}-{secrets.token_hex(4)}")
    await trio.Path(sibling).mkdir()
    return sibling


def _remove_tree(path: Path) -> None:
    with suppress(FileNotFoundError):
        shutil.rmtree(path)


# ---------------------------------------------------------------------------------------------
# Plain folders (run in worker threads).


def _entries(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry under ``root`` (relative path, lstat), each folder before its content.

    Names are sorted, symlinks are not followed, and the caller may be cancelled between
    entries. Anything but folders, files and symlinks is refused.
    """
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(os.path.join(root, folder)) as scan:
            children = sorted(scan, key=lambda entry: entry.name)
        folders = []
        for entry in children:
            trio.from_thread.check_cancelled()
            if entry.name == ".git":
                continue  # a release never holds a repository
            relative = os.path.join(folder, entry.name)
            info = entry.stat(follow_symlinks=False)
            if not (
                stat.S_ISDIR(info.st_mode)
                or stat.S_ISREG(info.st_mode)
                or stat.S_ISLNK(info.st_mode)
            ):
                raise SourceError(
                    f"{os.path.join(root, relative)} is not a file, folder or symlink (a pipe, "
                    "socket or device cannot be deployed): remove it from the source folder"
                )
            yield relative, info
            if stat.S_ISDIR(info.st_mode):
                folders.append(relative)
        pending.extend(reversed(folders))


def _record(relative: str, info: os.stat_result, target: str | None = None) -> bytes:
    """One entry's part of a folder revision (see the module docstring)."""
    path = os.fsencode(relative)
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        return b"d %o %s\0" % (mode, path)
    if stat.S_ISLNK(info.st_mode):
        return b"l %s\0%s\0" % (path, os.fsencode(target or ""))
    return b"f %o %d %d %s\0" % (mode, info.st_size, info.st_mtime_ns, path)


def _folder_revision(root: str) -> str:
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


def _copy_folder(root: str, into: str, revision: str) -> None:
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
