"""The CLI's connection to a daemon: REST over httpx, feeds over trio-websocket.

It finds the local daemon through the data dir (``--data-dir`` / ``DPLOYR_HOME``: the URL
the daemon wrote, and the admin token), or a remote one through ``--server`` and
``--token`` (``DPLOYR_SERVER`` / ``DPLOYR_TOKEN``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attrs
import httpx

from dployr.daemon.paths import DataDir, default_data_dir
from dployr.errors import DployrError


class ApiError(DployrError):
    """The daemon refused a request; the message is the daemon's."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(DployrError):
    """The daemon could not be reached."""


@attrs.frozen
class Target:
    """Which daemon to talk to, and with which token."""

    url: str
    token: str

    @classmethod
    def resolve(cls, server: str | None, token: str | None, data_dir: Path | None) -> Target:
        """From ``--server``/``--token`` if given, else from the data dir."""
        if server:
            if not token:
                raise DployrError("--server needs --token (or DPLOYR_TOKEN) as well")
            parts = urlsplit(server)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise DployrError(f"--server must be an http:// or https:// URL, not {server!r}")
            return cls(server.rstrip("/"), token)
        url, admin = DataDir(data_dir or default_data_dir()).read_endpoint()
        return cls(url, token or admin)


class Client:
    """Typed calls to the daemon's REST API; errors become one-line DployrErrors."""

    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.target = target
        self._http = httpx.AsyncClient(
            base_url=target.url + "/api/v1",
            headers={"Authorization": f"Bearer {target.token}"},
            timeout=timeout,
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; returns the decoded JSON, or raises ApiError / Unreachable."""
        try:
            response = await self._http.request(
                method,
                path,
                json=body,
                params={k: v for k, v in (params or {}).items() if v is not None},
            )
        except httpx.ConnectError:
            raise Unreachable(
                f"cannot reach the dployr daemon at {self.target.url}: is `dployr up` running?"
            ) from None
        except httpx.TimeoutException:
            raise Unreachable(
                f"the dployr daemon at {self.target.url} did not answer in time"
            ) from None
        except httpx.HTTPError as error:
            raise Unreachable(f"talking to {self.target.url} failed: {error}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = f"the daemon answered {response.status_code}"
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                message = str(data["error"].get("message", message))
            raise ApiError(message, response.status_code)
        return data

    @staticmethod
    def service(name: str, suffix: str = "") -> str:
        """The API path of a service (the name is quoted: a bad name gets the daemon's error)."""
        return f"/services/{quote(name, safe='')}{suffix}"

    @contextlib.asynccontextmanager
    async def follow(
        self, name: str, *, cursor: int | None = None, tail: int | None = None
    ) -> AsyncIterator[Feed]:
        """The service's log feed over WebSocket: iterate it for one dict per message."""
        from trio_websocket import HandshakeError, open_websocket_url

        query = urlencode(
            {k: v for k, v in {"cursor": cursor, "tail": tail}.items() if v is not None}
        )
        base = self.target.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{base}/api/v1{self.service(name, '/logs/stream')}" + (f"?{query}" if query else "")
        headers = [(b"Authorization", f"Bearer {self.target.token}".encode())]
        try:
            async with open_websocket_url(url, extra_headers=headers) as ws:
                yield Feed(ws)
        except HandshakeError as error:
            raise ApiError(
                _handshake_message(error), getattr(error, "status_code", 0) or 0
            ) from None
        except OSError:
            raise Unreachable(
                f"cannot reach the dployr daemon at {self.target.url}: is `dployr up` running?"
            ) from None


class Feed:
    """The messages of a WebSocket feed, decoded; iteration ends when the feed closes."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        from trio_websocket import ConnectionClosed

        try:
            message = await self._ws.get_message()
        except ConnectionClosed:
            raise StopAsyncIteration from None
        data: dict[str, Any] = json.loads(message)
        return data


def _handshake_message(error: Exception) -> str:
    body = getattr(error, "body", b"") or b""
    try:
        data = json.loads(body)
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        status = getattr(error, "status_code", "?")
        return f"the daemon refused the log feed ({status})"
