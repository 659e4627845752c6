"""The gateway actor: Hypercorn's trio worker serving the Quart app.

The daemon binds the gateway's socket with :meth:`Gateway.bind` before it starts any
service, so a port already in use is one clear error and nothing has started twice.
With a certificate and its key (``dployr up --tls-cert/--tls-key``) everything is served
over https/wss; ``bind`` loads them first, so a missing, unreadable or mismatched file is
one clear error too.

Quart, Flask and Hypercorn take ~0.2 s to import: they are imported when the gateway
starts (or its :attr:`Gateway.app` is first asked for), not when the daemon does, so the
services of a daemon that starts are launched first and the API follows.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import trio

from dployr.errors import DployrError
from dployr.protocol.handle import InstanceHandle
from dployr.protocol.wire import AgentDoor
from dployr.supervision import ChildContext

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.typing import ASGIFramework
    from quart_trio import QuartTrio

    from dployr.gateway.access import Tokens
    from dployr.gateway.instances import ControlPlanes
    from dployr.gateway.uploads import UploadStore


class GatewayError(DployrError):
    """The gateway could not listen."""


class Gateway:
    """Serves the API, the feeds and the dashboard on ``host:port``."""

    def __init__(
        self,
        handle: InstanceHandle,
        tokens: Tokens,
        host: str,
        port: int,
        *,
        dashboard_key: bytes | None = None,
        dashboard_key_file: Path | None = None,
        door: AgentDoor | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        uploads: UploadStore | None = None,
        control_planes: ControlPlanes | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise GatewayError("--tls-cert and --tls-key go together: give both, or neither")
        self.handle = handle
        self.door = door
        """The agents' door (a control plane's), or None: no agent may dial in."""
        self.uploads = uploads
        """Where uploaded folders are kept (a control plane's), or None: no uploads."""
        self.control_planes = control_planes
        """The cluster's control planes (a control plane's: set before the app is made),
        or None: ``GET /api/v1/control-planes`` answers 404."""
        self.tokens = tokens
        """The API tokens, logged-out sessions and audit log (the store)."""
        self.dashboard_key = dashboard_key
        """The key of the dashboard's sessions; or it is read from (or made in) the file."""
        self.dashboard_key_file = dashboard_key_file
        self._app: QuartTrio | None = None
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        """The certificate served (https/wss), or None (http/ws)."""
        self.tls_key = tls_key
        self.scheme = "http" if tls_cert is None else "https"
        self.url = f"{self.scheme}://{_url_host(host)}:{port}"
        self._sockets: Sockets | None = None
        # Invariant: `_sockets` holds bound sockets no server has taken yet, or None.

    @property
    def app(self) -> QuartTrio:
        """The Quart application (made on first use)."""
        if self._app is None:
            from dployr.gateway import dashboard
            from dployr.gateway.app import create_app

            key = self.dashboard_key
            if key is None and self.dashboard_key_file is not None:
                key = dashboard.load_key(self.dashboard_key_file)
            self._app = create_app(
                self.handle,
                self.tokens,
                dashboard_key=key,
                door=self.door,
                uploads=self.uploads,
                control_planes=self.control_planes,
            )
        return self._app

    def _config(self) -> Config:
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"{_url_host(self.host)}:{self.port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("dployr.gateway.hypercorn")
        config.graceful_timeout = 5.0
        if self.tls_cert is not None and self.tls_key is not None:
            config.certfile, config.keyfile = str(self.tls_cert), str(self.tls_key)
            # HTTP/1.1 only, as over plain http: the h11 fixes (h11_patch) and the body
            # guard (read_whole_bodies) are what the API is served with either way.
            config.alpn_protocols = ["http/1.1"]
        return config

    def _check_tls(self, config: Config) -> None:
        """Load the certificate and key once: GatewayError with a one-line reason if they
        cannot serve (missing, unreadable, not PEM, the key not the certificate's)."""
        if not config.ssl_enabled:
            return
        files = (
            ("--tls-cert", self.tls_cert, b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
            ("--tls-key", self.tls_key, b"PRIVATE KEY-----", "a PEM private key"),
        )
        for flag, path, marker, what in files:
            try:
                text = Path(str(path)).read_bytes()
            except OSError as error:
                reason = error.strerror or error
                raise GatewayError(f"cannot read {flag} {path}: {reason}") from None
            if marker not in text:
                raise GatewayError(f"{flag} {path} is not {what}")
            if flag == "--tls-key" and b"ENCRYPTED" in text:  # OpenSSL would ask on the tty
                raise GatewayError(
                    f"--tls-key {path} is encrypted: give dployr the key unencrypted "
                    "(a file only its user can read)"
                )
        try:
            config.create_ssl_context()
        except ssl.SSLError as error:
            raise GatewayError(
                f"cannot serve TLS with --tls-cert {self.tls_cert} and --tls-key "
                f"{self.tls_key}: {_tls_reason(error)}"
            ) from None

    def bind(self) -> str:
        """Bind the listening socket now (port 0 picks a free one); return the URL.

        Raises GatewayError with a one-line reason (the port is taken, the address is not
        this machine's).
        """
        if self._sockets is None:
            config = self._config()
            self._check_tls(config)
            try:
                self._sockets = config.create_sockets()
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise GatewayError(
                        f"port {self.port} on {self.host} is already in use by another "
                        "program: choose another with --port"
                    ) from None
                raise GatewayError(
                    f"cannot listen on {self.host}:{self.port}: {error.strerror or error}"
                ) from None
            listening = self._sockets.secure_sockets + self._sockets.insecure_sockets
            for sock in listening:
                sock.set_inheritable(False)  # never handed down to a service's process
            self.port = int(listening[0].getsockname()[1])
            self.url = f"{self.scheme}://{_url_host(self.host)}:{self.port}"
        return self.url

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until stopped; report the URL once the server accepts connections."""
        self.bind()  # a restarted gateway binds again, on the same port
        sockets, self._sockets = self._sockets, None
        assert sockets is not None
        config = self._config()
        for sock in sockets.secure_sockets + sockets.insecure_sockets:
            sock.listen(config.backlog)
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        from dployr.gateway import h11_patch
        from dployr.gateway.responses import MAX_BODY

        h11_patch.apply()
        app = read_whole_bodies(self.app, MAX_BODY)

        async def serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await worker_serve(
                wrap_app(cast("ASGIFramework", app), config.wsgi_max_body_size, "asgi"),
                config,
                sockets=sockets,
                task_status=task_status,
            )

        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            task_status.started(self.url)


Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

BODY_WAIT = 10.0
"""How long an answer waits for the rest of a request body it did not read (seconds)."""


def read_whole_bodies(app: Any, limit: int) -> ASGIApp:
    """``app``, whose HTTP answers wait for the request's body to arrive before they end.

    A handler that answers without reading the body (a 401, a 404/405, a route that takes
    none) would end its answer while the body is still on its way; HTTP/1.1 can only take
    the connection's next request once the body is read. So the end of such an answer
    waits until the app's receiver has the whole body (Quart keeps receiving, and keeps at
    most ``limit`` bytes), for at most :data:`BODY_WAIT` seconds; a body declared larger
    than ``limit`` is not waited for and its answer closes the connection. Hypercorn's own
    handling of what is left is fixed by :mod:`dployr.gateway.h11_patch`.
    """

    async def guarded(
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        length, chunked = _declared_body(scope)
        too_large = length is not None and length > limit
        received = trio.Event()
        if too_large or (length in (None, 0) and not chunked):
            received.set()
        seen = 0

        async def receive_body() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if not message.get("more_body", False) or seen > limit:
                    received.set()
            elif message["type"] == "http.disconnect":
                received.set()
            return message

        async def send_after_body(message: Message) -> None:
            if message["type"] == "http.response.start" and too_large:
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.move_on_after(BODY_WAIT):
                    await received.wait()
            await send(message)

        await app(scope, receive_body, send_after_body)

    return guarded


def _declared_body(scope: Message) -> tuple[int | None, bool]:
    """The request's Content-Length (None if absent or unreadable) and whether it is chunked."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name.lower() == b"transfer-encoding":
            chunked = True
    return length, chunked


def _tls_reason(error: ssl.SSLError) -> str:
    """Why OpenSSL refused a certificate or key, in the user's words where it is known."""
    if error.reason == "KEY_VALUES_MISMATCH":
        return "the key is not the certificate's"
    return " ".join(str(error.reason or error).split())


def _url_host(host: str) -> str:
    """``host`` as it goes into a URL: an IPv6 address in brackets."""
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return host
    return f"[{host}]"
