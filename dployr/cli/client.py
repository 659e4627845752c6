"""The CLI's connection to a daemon: REST over h11, feeds over trio-websocket.

It finds the local daemon through the data dir (``--data-dir`` / ``DPLOYR_HOME``: the URL
the daemon wrote, and the admin token), or a remote one through ``--server`` and
``--token`` (``DPLOYR_SERVER`` / ``DPLOYR_TOKEN``).
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attrs
import h11
import trio

from dployr.daemon.paths import DataDir, default_data_dir
from dployr.errors import DployrError


class ApiError(DployrError):
    """The daemon refused a request; the message is the daemon's."""

    def __init__(self, message: str, status: int, code: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        """The daemon's error code (``not_found``, ``conflict``, ...)."""


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
    """Typed calls to the daemon's REST API; errors become one-line DployrErrors.

    A request is HTTP/1.1 spoken with h11 over a trio stream (TLS for ``https://``): a
    quick command such as ``dployr service status`` then starts in a fraction of the time
    a full HTTP client library takes to import.
    """

    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        parts = urlsplit(target.url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._netloc = parts.netloc
        self._base = parts.path.rstrip("/") + "/api/v1"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One request; returns the decoded JSON, or raises ApiError / Unreachable."""
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        target = self._base + path + (f"?{query}" if query else "")
        content = b"" if body is None else json.dumps(body).encode()
        headers = [
            ("Host", self._netloc),
            ("Authorization", f"Bearer {self.target.token}"),
            ("Accept", "application/json"),
            ("Connection", "close"),
            ("Content-Length", str(len(content))),
        ]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        try:
            with trio.fail_after(self.timeout):
                status, raw = await self._exchange(method, target, headers, content)
        except trio.TooSlowError:
            raise Unreachable(
                f"the dployr daemon at {self.target.url} did not answer in time"
            ) from None
        except OSError as error:  # ssl.SSLError included
            if isinstance(error, ConnectionRefusedError) or "connect" in str(error).lower():
                raise Unreachable(
                    f"cannot reach the dployr daemon at {self.target.url}: is `dployr up` running?"
                ) from None
            raise Unreachable(f"talking to {self.target.url} failed: {error}") from None
        except (h11.ProtocolError, trio.BrokenResourceError) as error:
            raise Unreachable(f"talking to {self.target.url} failed: {error}") from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status >= 400:
            message, code = f"the daemon answered {status}", "refused"
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                message = str(data["error"].get("message", message))
                code = str(data["error"].get("code", code))
            raise ApiError(message, status, code)
        return data

    async def _exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], content: bytes
    ) -> tuple[int, bytes]:
        stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        if self._tls:
            import ssl  # only for https: it costs a quick command time

            stream = trio.SSLStream(
                stream, ssl.create_default_context(), server_hostname=self._host
            )
        async with stream:
            connection = h11.Connection(h11.CLIENT)
            request = h11.Request(method=method, target=target, headers=headers)
            out = connection.send(request) + connection.send(h11.Data(data=content))
            await stream.send_all(out + connection.send(h11.EndOfMessage()))
            status, chunks = 0, []
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return status, b"".join(chunks)
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("the daemon closed the connection early")

    @staticmethod
    def service(name: str, suffix: str = "") -> str:
        """The API path of a service, or InvalidName before anything is sent."""
        from dployr.models import check_name

        return f"/services/{quote(check_name(name), safe='')}{suffix}"

    @contextlib.asynccontextmanager
    async def follow(
        self, name: str, *, cursor: int | None = None, tail: int | None = None
    ) -> AsyncIterator[Feed]:
        """The service's log feed over WebSocket: iterate it for one dict per message."""
        from trio_websocket import (
            ConnectionRejected,
            ConnectionTimeout,
            DisconnectionTimeout,
            HandshakeError,
            open_websocket_url,
        )

        # Batched: a fast service's lines come many to a message (Feed hands them out one by one).
        query = urlencode(
            {k: v for k, v in {"cursor": cursor, "tail": tail, "batch": 1}.items() if v is not None}
        )
        base = self.target.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{base}/api/v1{self.service(name, '/logs/stream')}" + (f"?{query}" if query else "")
        headers = [(b"Authorization", f"Bearer {self.target.token}".encode())]
        opened = failed = False
        try:
            async with open_websocket_url(
                url, extra_headers=headers, connect_timeout=self.timeout, disconnect_timeout=2
            ) as ws:
                opened = True
                try:
                    yield Feed(ws)
                except BaseException:
                    failed = True  # the caller's own error: it goes on as it is
                    raise
        except (HandshakeError, OSError) as error:
            if failed:
                raise  # the caller's own error (a closed stdout, say)
            if opened or isinstance(error, DisconnectionTimeout):
                return  # the feed was open and broke off: it is over, as if it had closed
            if isinstance(error, ConnectionRejected):
                raise ApiError(_handshake_message(error), error.status_code) from None
            if isinstance(error, ConnectionTimeout):
                raise Unreachable(
                    f"the dployr daemon at {self.target.url} did not answer in time"
                ) from None
            raise Unreachable(
                f"cannot reach the dployr daemon at {self.target.url}: is `dployr up` running?"
            ) from None


class Feed:
    """The messages of a WebSocket feed, decoded; iteration ends when the feed closes."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._lines: collections.deque[dict[str, Any]] = collections.deque()

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next message; the lines of a ``logs`` message come as ``log`` messages."""
        from trio_websocket import ConnectionClosed

        while not self._lines:
            try:
                message = await self._ws.get_message()
            except ConnectionClosed:
                raise StopAsyncIteration from None
            data: dict[str, Any] = json.loads(message)
            if data.get("type") != "logs":
                return data
            self._lines.extend(data.get("lines", ()))
        return self._lines.popleft()


def _handshake_message(error: Exception) -> str:
    body = getattr(error, "body", b"") or b""
    try:
        data = json.loads(body)
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        status = getattr(error, "status_code", "?")
        return f"the daemon refused the log feed ({status})"
