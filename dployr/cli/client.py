"""The CLI's connection to a daemon: REST over h11, feeds over trio-websocket.

It finds the local daemon through the data dir (``--data-dir`` / ``DPLOYR_HOME``: the URL
the daemon wrote, and the admin token), or a remote one through ``--server`` and
``--token`` (``DPLOYR_SERVER`` / ``DPLOYR_TOKEN``).

Every answer and feed message is decoded into the value it stands for (a
:class:`ServiceInfo`, a :class:`Deployment`, a :class:`LogLine`, a
:class:`~dployr.protocol.DeploymentChanged` ...) by the protocol's codec, the one the
daemon encoded it with: the commands read typed fields, never keys of a dict.

Why one module of ~520 lines: one typed method per API route, a few lines each, over
one connection.
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import attrs
import h11
import trio

from dployr.daemon.paths import DataDir, default_data_dir
from dployr.errors import DployrError
from dployr.logs.values import LogLine
from dployr.models import Deployment
from dployr.protocol import Change, Error, Gap, LogLines, SupervisionReport
from dployr.protocol.messages import (
    ControlPlaneView,
    Deleted,
    EnvListing,
    InstanceView,
    JoinTokenView,
    KeyRotated,
    LogPage,
    MetricsPage,
    ServiceInfo,
    SettingsView,
)
from dployr.tokens import AuditRecord, TokenRecord

if TYPE_CHECKING:
    import ssl

T = TypeVar("T")


class ApiError(DployrError):
    """The daemon refused a request; the message is the daemon's."""

    def __init__(self, message: str, status: int, code: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        """The daemon's error code (``not_found``, ``conflict``, ...)."""


class Unreachable(DployrError):
    """The daemon could not be reached."""


class BadAnswer(DployrError):
    """The daemon answered something this CLI cannot read (another version of dployr?)."""


@attrs.frozen
class NewToken:
    """A token just created, and the token itself: the only time it is shown."""

    record: TokenRecord
    token: str


@attrs.frozen
class TokenRevoked:
    """A token revoked."""

    name: str
    revoked: bool


ServiceAction = Literal["start", "stop", "restart"]


@attrs.frozen
class Target:
    """Which daemon to talk to, and with which token."""

    url: str
    token: str
    ca: str | None = None
    """An ``https://`` daemon's certificate is verified against this CA file (a private
    CA, or its own certificate), else against the system's CAs."""
    pinned: str | None = None
    """The certificate file the local daemon serves: exactly it is trusted."""

    @classmethod
    def resolve(
        cls, server: str | None, token: str | None, data_dir: Path | None, ca: str | None = None
    ) -> Target:
        """From ``--server``/``--token`` (and ``--ca``) if given, else from the data dir."""
        if server:
            if not token:
                raise DployrError("--server needs --token (or DPLOYR_TOKEN) as well")
            parts = urlsplit(server)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise DployrError(f"--server must be an http:// or https:// URL, not {server!r}")
            return cls(server.rstrip("/"), token, ca=ca)
        url, admin, cert = DataDir(data_dir or default_data_dir()).read_endpoint()
        return cls(url, token or admin, pinned=cert)

    def ssl_context(self) -> ssl.SSLContext | None:
        """How an ``https://`` daemon is verified; None for ``http://``."""
        if not self.url.startswith("https://"):
            return None
        from dployr import tls  # only for https: it costs a quick command time

        if self.pinned is not None:
            return tls.pinned_context(self.pinned)
        return tls.client_context(self.ca)


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
        self._tls = target.ssl_context()  # a CA file it cannot use fails here, at once
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls is not None else 80)
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
        """One request; returns its JSON, or raises ApiError / Unreachable.

        The typed methods below decode what they get; this is for a route whose answer has
        no value class yet (a job's runs: dployr/cli/jobs.py).
        """
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
            reset = isinstance(error, ConnectionResetError)
            if not reset and (
                isinstance(error, ConnectionRefusedError) or "connect" in str(error).lower()
            ):
                raise Unreachable(
                    f"cannot reach the dployr daemon at {self.target.url}: is `dployr up` running?"
                ) from None
            raise Unreachable(
                f"talking to {self.target.url} failed: {_failure(error)}{self._plain_hint(error)}"
            ) from None
        except (h11.ProtocolError, trio.BrokenResourceError) as error:
            raise Unreachable(
                f"talking to {self.target.url} failed: {_failure(error)}{self._plain_hint(error)}"
            ) from None
        return _answer(status, raw)

    async def upload(self, archive: Path, on_sent: Callable[[int], None]) -> Any:
        """``POST /uploads`` with the file ``archive`` as its body, streamed from disk;
        ``on_sent`` is told the bytes sent so far. Returns the JSON answer, or raises
        ApiError (an answer that came before the whole body was sent included: a 413).
        """
        size = (await trio.Path(archive).stat()).st_size
        headers = [
            ("Host", self._netloc),
            ("Authorization", f"Bearer {self.target.token}"),
            ("Accept", "application/json"),
            ("Connection", "close"),
            ("Content-Type", "application/gzip"),
            ("Content-Length", str(size)),
        ]
        answer: list[tuple[int, bytes]] = []
        failed: list[BaseException] = []
        # Errors are kept, not raised, inside the nursery: one line each, never a group.
        faults = (OSError, h11.ProtocolError, trio.BrokenResourceError, trio.TooSlowError)
        try:
            stream = await self._open()
        except OSError as error:
            raise Unreachable(
                f"cannot reach the dployr daemon at {self.target.url}: {error}"
            ) from None
        async with stream, trio.open_nursery() as nursery:
            connection = h11.Connection(h11.CLIENT)

            async def read() -> None:
                try:
                    answer.append(await self._answer_of(connection, stream))
                except faults as error:
                    failed.append(error)
                nursery.cancel_scope.cancel()  # an early answer (a 413) stops the sending

            try:
                target = self._base + "/uploads"
                request = h11.Request(method="POST", target=target, headers=headers)
                await stream.send_all(connection.send(request))
                nursery.start_soon(read)
                sent = 0
                async with await trio.open_file(archive, "rb") as file:
                    while chunk := await file.read(_UPLOAD_PART):
                        with trio.fail_after(self.timeout):
                            await stream.send_all(connection.send(h11.Data(data=chunk)))
                        sent += len(chunk)
                        on_sent(sent)
                await stream.send_all(connection.send(h11.EndOfMessage()))
                with trio.fail_after(self.timeout):
                    await trio.sleep_forever()  # until read() has the answer
            except faults as error:  # the daemon may have answered already: read() has it
                failed.append(error)
                with trio.move_on_after(self.timeout):
                    await trio.sleep_forever()  # until read() has the answer, or gave up
                nursery.cancel_scope.cancel()
        if not answer:
            first = failed[0] if failed else None
            if isinstance(first, trio.TooSlowError):
                raise Unreachable(f"the dployr daemon at {self.target.url} did not answer in time")
            why = "no answer" if first is None else _failure(first)
            raise Unreachable(f"uploading to {self.target.url} failed: {why}")
        return _answer(*answer[0])

    def _plain_hint(self, error: BaseException) -> str:
        """A hint when plain http was reset: a TLS server resets what it cannot read."""
        reset = isinstance(error, ConnectionResetError) or isinstance(
            error.__cause__, ConnectionResetError
        )
        return " (if it serves https, use https://)" if self._tls is None and reset else ""

    async def _one(
        self,
        kind: type[T],
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> T:
        """One request, its answer decoded as a ``kind``."""
        return decode(await self.call(method, path, body=body, params=params), kind)

    async def _many(
        self, kind: type[T], path: str, *, params: Mapping[str, Any] | None = None
    ) -> tuple[T, ...]:
        """One GET, its answer decoded as a list of ``kind``."""
        return decode_all(await self.call("GET", path, params=params), kind)

    # -- services --------------------------------------------------------------------------

    async def services(self) -> tuple[ServiceInfo, ...]:
        """Every service of the daemon's instance, by name."""
        return await self._many(ServiceInfo, "/services")

    async def service_info(self, name: str) -> ServiceInfo:
        """One service's status."""
        return await self._one(ServiceInfo, "GET", self.service(name))

    async def act(self, name: str, action: ServiceAction, *, hard: bool = False) -> ServiceInfo:
        """Start, stop or restart a service (``hard``: stop, then start); its status after."""
        params = {"hard": "true"} if hard else None
        path = self.service(name, f"/{action}")
        return await self._one(ServiceInfo, "POST", path, params=params)

    async def delete(self, name: str, *, purge: bool = False, purge_image: bool = False) -> Deleted:
        """Delete a service (``purge``: its data folder too; ``purge_image``: its container
        images)."""
        params = {"purge": "true"} if purge else {}
        if purge_image:
            params["purge_image"] = "true"
        return await self._one(Deleted, "DELETE", self.service(name), params=params or None)

    async def deploy(self, name: str, body: Mapping[str, Any] | None) -> Deployment:
        """Create or update a service and deploy it: the deployment, as it starts."""
        path = self.service(name, "/deploy")
        return await self._one(Deployment, "POST", path, body=body)

    async def rollback(self, name: str, deployment: int | None = None) -> Deployment:
        """Go back to a kept release (``deployment``, else the previous one)."""
        body = {"deployment": deployment} if deployment is not None else None
        path = self.service(name, "/rollback")
        return await self._one(Deployment, "POST", path, body=body)

    async def deployments(self, name: str, *, limit: int = 20) -> tuple[Deployment, ...]:
        """A service's deployments, newest first."""
        path = self.service(name, "/deployments")
        return await self._many(Deployment, path, params={"limit": limit})

    async def settings(self, name: str) -> SettingsView:
        """A service's settings."""
        return await self._one(SettingsView, "GET", self.service(name, "/settings"))

    async def change_settings(self, name: str, changes: Mapping[str, Any]) -> SettingsView:
        """Change settings for the next deploy (the body of ``PATCH .../settings``)."""
        path = self.service(name, "/settings")
        return await self._one(SettingsView, "PATCH", path, body=dict(changes))

    async def env(self, name: str) -> EnvListing:
        """A service's environment variables (secret values masked)."""
        return await self._one(EnvListing, "GET", self.service(name, "/env"))

    async def set_env(
        self, name: str, values: Mapping[str, str], *, secret: bool, restart: bool
    ) -> EnvListing:
        """Set variables (``secret``: sealed, never shown); ``restart`` the service now."""
        body = {"values": dict(values), "secret": secret, "restart": restart}
        path = self.service(name, "/env")
        return await self._one(EnvListing, "PUT", path, body=body)

    async def unset_env(self, name: str, keys: Sequence[str], *, restart: bool) -> EnvListing:
        """Remove variables; ``restart`` the service now."""
        body = {"keys": list(keys), "restart": restart}
        path = self.service(name, "/env/unset")
        return await self._one(EnvListing, "POST", path, body=body)

    async def logs(
        self,
        name: str,
        *,
        tail: int | None = None,
        since: float | None = None,
        limit: int | None = None,
        build: bool = False,
    ) -> LogPage:
        """A page of a service's log history (``build``: build output only)."""
        params = {
            "tail": tail,
            "since": None if since is None else str(since),
            "limit": limit,
            "build": "true" if build else None,
        }
        path = self.service(name, "/logs")
        return await self._one(LogPage, "GET", path, params=params)

    async def metrics(self, name: str, since: str) -> MetricsPage:
        """A service's CPU and memory from ``since`` (``1h``, an RFC 3339 time) on."""
        path = self.service(name, "/metrics")
        return await self._one(MetricsPage, "GET", path, params={"since": since})

    # -- the instance ----------------------------------------------------------------------

    async def instances(self) -> tuple[InstanceView, ...]:
        """The instances (machines) of the cluster and the services each runs."""
        return await self._many(InstanceView, "/instances")

    async def instance(self, id: str) -> InstanceView:
        """One instance, by name or id."""
        path = f"/instances/{quote(id, safe='')}"
        return await self._one(InstanceView, "GET", path)

    async def control_planes(self) -> tuple[ControlPlaneView, ...]:
        """The control planes of the cluster, the leader and the one that answered marked."""
        return await self._many(ControlPlaneView, "/control-planes")

    async def add_instance(self, name: str) -> JoinTokenView:
        """Add an instance: its join token (shown once)."""
        return await self._one(JoinTokenView, "POST", "/instances", body={"name": name})

    async def remove_instance(self, name: str) -> Deleted:
        """Remove an instance, revoking its agent's credential."""
        return await self._one(Deleted, "DELETE", f"/instances/{quote(name, safe='')}")

    async def rotate_key(self) -> KeyRotated:
        """Seal every secret under a new master key."""
        return await self._one(KeyRotated, "POST", "/secrets/rotate-key")

    # -- tokens and the audit log ----------------------------------------------------------

    async def create_token(
        self, name: str, scope: str, *, service: str | None, expires_in: int | None
    ) -> NewToken:
        """Create an API token (admin only)."""
        body: dict[str, Any] = {"name": name, "scope": scope}
        if service is not None:
            body["service"] = service
        if expires_in is not None:
            body["expires_in"] = expires_in
        data = await self.call("POST", "/tokens", body=body)
        token = data.pop("token", None) if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise BadAnswer("the daemon's answer holds no token")
        return NewToken(decode(data, TokenRecord), token)

    async def tokens(self) -> tuple[TokenRecord, ...]:
        """The API tokens (admin only)."""
        return await self._many(TokenRecord, "/tokens")

    async def revoke_token(self, name: str) -> TokenRevoked:
        """Revoke an API token (admin only)."""
        path = f"/tokens/{quote(name, safe='')}"
        return await self._one(TokenRevoked, "DELETE", path)

    async def audit(self, *, service: str | None, limit: int) -> tuple[AuditRecord, ...]:
        """The audit log, newest first (admin only)."""
        params = {"service": service, "limit": limit}
        return await self._many(AuditRecord, "/audit", params=params)

    async def _open(self) -> trio.abc.Stream:
        stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        if self._tls is not None:
            stream = trio.SSLStream(stream, self._tls, server_hostname=self._host)
        return stream

    async def _exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], content: bytes
    ) -> tuple[int, bytes]:
        stream = await self._open()
        async with stream:
            connection = h11.Connection(h11.CLIENT)
            request = h11.Request(method=method, target=target, headers=headers)
            out = connection.send(request) + connection.send(h11.Data(data=content))
            await stream.send_all(out + connection.send(h11.EndOfMessage()))
            return await self._answer_of(connection, stream)

    async def _answer_of(
        self, connection: h11.Connection, stream: trio.abc.Stream
    ) -> tuple[int, bytes]:
        """Read a response: its status and body."""
        status, chunks = 0, []
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = bytes(await stream.receive_some(65536))
                if not data and status == 0:
                    raise h11.RemoteProtocolError(
                        "the daemon closed the connection without an answer"
                        + ("" if self._tls else " (if it serves https, use https://)")
                    )
                connection.receive_data(data)
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
        """The service's log feed: iterate it for its lines and gaps until it closes."""
        # Batched: a fast service's lines come many to a message (Feed hands them out one by one).
        query = {"cursor": cursor, "tail": tail, "batch": 1}
        async with self._websocket(self.service(name, "/logs/stream"), query) as ws:
            yield Feed(ws)

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[Events]:
        """The instance's events feed: iterate it for its changes until it closes.

        Refused (ApiError 403) for a token limited to one service: it shows every service.
        """
        async with self._websocket("/events", {}) as ws:
            yield Events(ws)

    @contextlib.asynccontextmanager
    async def _websocket(self, path: str, params: Mapping[str, Any]) -> AsyncIterator[Any]:
        """A WebSocket of the API; a feed that breaks off once open ends as if it closed."""
        from trio_websocket import (
            ConnectionRejected,
            ConnectionTimeout,
            DisconnectionTimeout,
            HandshakeError,
        )

        from dployr import tls

        query = urlencode({k: v for k, v in params.items() if v is not None})
        base = self.target.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{base}/api/v1{path}" + (f"?{query}" if query else "")
        headers = [(b"Authorization", f"Bearer {self.target.token}".encode())]
        opened = failed = False
        try:
            # wss: one connection, its certificate verified first (a refusal said at once)
            async with tls.open_websocket(
                url,
                self._tls,
                extra_headers=headers,
                connect_timeout=self.timeout,
                disconnect_timeout=2,
            ) as ws:
                opened = True
                try:
                    yield ws
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
            refused = tls.failure(error)
            if refused is not None:
                raise Unreachable(f"talking to {self.target.url} failed: {refused}") from None
            raise Unreachable(
                f"cannot reach the dployr daemon at {self.target.url}: is `dployr up` running?"
            ) from None


class Feed:
    """The messages of a service's log feed, decoded; iteration ends when the feed closes."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._lines: collections.deque[LogLine] = collections.deque()

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> LogLine | Gap:
        """The next line (a ``logs`` message's lines come one by one), or a gap."""
        while not self._lines:
            message = await _next_message(self._ws)
            if isinstance(message, LogLine | Gap):
                return message
            if isinstance(message, LogLines):
                self._lines.extend(message.lines)
            # Another kind of message is for a newer client: it is skipped.
        return self._lines.popleft()


class Events:
    """The messages of the instance's events feed, decoded; iteration ends when it closes.

    Each is a :data:`~dployr.protocol.Change` (a status, health, deployment or disk
    change), a :class:`~dployr.protocol.SupervisionReport`, or a :class:`Gap` for what a
    slow reader missed.
    """

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> Change | SupervisionReport | Gap:
        """The next event."""
        while True:
            message = await _next_message(self._ws)
            if isinstance(message, Change | SupervisionReport | Gap):
                return message
            # Another kind of message is for a newer client: it is skipped.


_UPLOAD_PART = 2**16
"""Bytes of an upload sent at a time (the progress moves by as much)."""


def _answer(status: int, raw: bytes) -> Any:
    """A response's JSON; ApiError (the daemon's message and code) for an error status."""
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


async def _next_message(ws: Any) -> object:
    """The next message of a feed, decoded; StopAsyncIteration once the feed closed."""
    from trio_websocket import ConnectionClosed

    from dployr.protocol import codec

    try:
        text = await ws.get_message()
    except ConnectionClosed:
        raise StopAsyncIteration from None
    try:
        data = json.loads(text)
    except ValueError:
        raise BadAnswer("the daemon sent a feed message that is not JSON") from None
    if isinstance(data, dict) and data.get("type") not in codec.TAGS.values():
        return None  # a kind of message of a newer daemon
    try:
        return codec.decode(data)
    except Error as error:
        raise BadAnswer(f"the daemon sent a feed message this CLI cannot read: {error}") from None


def decode(data: Any, kind: type[T]) -> T:
    """``data`` (the daemon's JSON) as a ``kind``, or BadAnswer naming what is wrong."""
    from dployr.protocol import codec

    try:
        return codec.decode_as(data, kind)
    except Error as error:
        raise BadAnswer(f"the daemon's answer could not be read: {error}") from None


def decode_all(data: Any, kind: type[T]) -> tuple[T, ...]:
    """``data``, a JSON list, as a tuple of ``kind``, or BadAnswer."""
    many: type[tuple[T, ...]] = tuple[kind, ...]  # type: ignore[valid-type]
    return decode(data, many)


def _failure(error: BaseException) -> str:
    """Why a request failed, in one line: a TLS refusal's own words where there is one
    (trio wraps it in a BrokenResourceError that says nothing itself)."""
    from dployr import tls  # only on this error path: it costs a quick command time

    return tls.failure(error) or " ".join(str(error).split()) or type(error).__name__


def _handshake_message(error: Exception) -> str:
    body = getattr(error, "body", b"") or b""
    try:
        data = json.loads(body)
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        status = getattr(error, "status_code", "?")
        return f"the daemon refused the log feed ({status})"
