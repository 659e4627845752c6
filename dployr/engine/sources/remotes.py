"""Remotes and refs of a source: pure checks, done before git ever runs, and the password
a remote may carry, kept apart from it.

Every remote goes through :func:`check_remote` before git ever runs, so that remote-helper
addresses (``ext::sh -c ...``, ``fd::17``), option injection (``--upload-pack=...``,
``ssh://-oProxyCommand=...``), plain ``http://`` and control characters are refused with one
clear sentence. A remote's password is shown as ``***`` everywhere, kept in the store
(:class:`Credential`), and handed to git through the environment only
(:func:`credential_env`). No trio, no process, no file is touched here, except that a local
path is made absolute.
"""

from __future__ import annotations

import enum
import os
import re
import urllib.parse
from pathlib import Path
from typing import Final

import attrs

from dployr.errors import DployrError
from dployr.models import Source


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
    if any(is_control(ch) for ch in remote):
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


def is_control(ch: str) -> bool:
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


def display(remote: Remote) -> str:
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


def without_password(url: str) -> str:
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


def credential_env(credential: Credential | None) -> dict[str, str]:
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
