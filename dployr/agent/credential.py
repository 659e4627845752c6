"""The agent's identity: a join token exchanged once for a credential, kept 0600.

``agent.json`` in the agent's data dir holds the control plane's URL, the instance's name
and the credential. It is written once, at the join; the join token is never needed again
(it is single use). An agent started with a data dir that has it dials at once.

An ``https://`` control plane (``dployr up --tls-cert``, or behind a TLS proxy) is reached
over TLS, its certificate verified against the system's CAs, or against ``--ca FILE``
(kept in ``agent.json``): a private CA, or the control plane's own certificate (a pin).
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx

from dployr.errors import DployrError
from dployr.tls import CertificateFileError, client_context
from dployr.tls import failure as tls_failure

FILE_NAME = "agent.json"
JOIN_PATH = "/api/v1/agent/join"
CHANNEL_PATH = "/api/v1/agent"


class JoinError(DployrError):
    """The control plane refused the join, or could not be reached."""


@attrs.frozen
class Credential:
    """Who this agent is to its control plane."""

    url: str
    """The control plane's base URL (``http://host:port``)."""
    instance: str
    credential: str = attrs.field(repr=False)
    ca: str | None = None
    """The CA file the control plane's certificate is verified against (else the
    system's)."""

    def ssl_context(self) -> ssl.SSLContext | None:
        """How the control plane is reached over TLS: None for ``http://``."""
        return tls_context(self.url, self.ca)

    @property
    def channel_url(self) -> str:
        """The WebSocket URL of the agent channel (``ws://`` or ``wss://``)."""
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + CHANNEL_PATH, "", ""))


def tls_context(url: str, ca: str | None) -> ssl.SSLContext | None:
    """A TLS context verifying the control plane's certificate (against ``ca`` if given),
    or None for an ``http://`` URL."""
    if urlsplit(url).scheme != "https":
        return None
    try:
        return client_context(ca)
    except CertificateFileError as error:
        raise JoinError(str(error)) from None


def reason(error: BaseException) -> str:
    """Why a connection failed, in one line: a TLS refusal's own words where there is one
    (httpx's error often says nothing itself)."""
    return tls_failure(error) or " ".join(str(error).split()) or type(error).__name__


def check_url(url: str) -> str:
    """The control plane's base URL, or a JoinError saying what is wrong with it."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise JoinError(f"not a control plane URL: {url!r} (http://HOST:PORT)")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def tls_upgrade(old: str, new: str) -> bool:
    """Whether ``new`` is the control plane at ``old`` (``http://``) over ``https://``:
    the same host, port and path."""
    before, after = urlsplit(old), urlsplit(new)
    same = (before.netloc, before.path) == (after.netloc, after.path)
    return same and (before.scheme, after.scheme) == ("http", "https")


def load(data_dir: Path) -> Credential | None:
    """The credential kept in ``data_dir``, or None if the agent never joined."""
    path = data_dir / FILE_NAME
    try:
        data: Any = json.loads(path.read_text())
        ca = data.get("ca")
        return Credential(
            str(data["url"]),
            str(data["instance"]),
            str(data["credential"]),
            None if ca is None else str(ca),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise JoinError(f"cannot read {path}: {error}") from None


def save(data_dir: Path, credential: Credential) -> None:
    """Write ``agent.json`` (mode 0600) whole, or leave the old one."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = data_dir / f".{FILE_NAME}.new"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(attrs.asdict(credential), file)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(data_dir / FILE_NAME)


async def join(url: str, token: str, *, ca: str | None = None, wait: float = 30.0) -> Credential:
    """Redeem a join token at the control plane: the instance's name and its credential."""
    base = check_url(url)
    context = tls_context(base, ca)
    try:
        async with httpx.AsyncClient(timeout=wait, verify=context or True) as http:
            response = await http.post(base + JOIN_PATH, json={"token": token})
    except httpx.HTTPError as error:
        hint = ""
        if context is None and isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
            # A TLS server hangs up on plain http, or resets the connection.
            hint = " (if it serves https, use https://)"
        raise JoinError(
            f"cannot reach the control plane at {base}: {reason(error)}{hint}"
        ) from None
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        message = (
            body["error"]["message"]
            if isinstance(body, dict) and isinstance(body.get("error"), dict)
            else f"HTTP {response.status_code}"
        )
        raise JoinError(f"the control plane refused the join: {message}")
    if not isinstance(body, dict) or not {"instance", "credential"} <= set(body):
        raise JoinError("the control plane answered the join with something else")
    return Credential(base, str(body["instance"]), str(body["credential"]), ca)
