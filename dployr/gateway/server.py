"""The gateway actor: Hypercorn's trio worker serving the Quart app.

The daemon binds the gateway's socket with :meth:`Gateway.bind` before it starts any
service, so a port already in use is one clear error and nothing has started twice.

Quart, Flask and Hypercorn take ~0.2 s to import: they are imported when the gateway
starts (or its :attr:`Gateway.app` is first asked for), not when the daemon does, so the
services of a daemon that starts are launched first and the API follows.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from dployr.engine.instance import InstanceHandle
from dployr.errors import DployrError
from dployr.supervision import ChildContext

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from quart_trio import QuartTrio

    from dployr.gateway.access import Tokens


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
    ) -> None:
        self.handle = handle
        self.tokens = tokens
        """The API tokens, logged-out sessions and audit log (the store)."""
        self.dashboard_key = dashboard_key
        """The key of the dashboard's sessions; or it is read from (or made in) the file."""
        self.dashboard_key_file = dashboard_key_file
        self._app: QuartTrio | None = None
        self.host = host
        self.port = port
        self.url = f"http://{_url_host(host)}:{port}"
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
            self._app = create_app(self.handle, self.tokens, dashboard_key=key)
        return self._app

    def _config(self) -> Config:
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"{_url_host(self.host)}:{self.port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("dployr.gateway.hypercorn")
        config.graceful_timeout = 5.0
        return config

    def bind(self) -> str:
        """Bind the listening socket now (port 0 picks a free one); return the URL.

        Raises GatewayError with a one-line reason (the port is taken, the address is not
        this machine's).
        """
        if self._sockets is None:
            try:
                self._sockets = self._config().create_sockets()
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise GatewayError(
                        f"port {self.port} on {self.host} is already in use by another "
                        "program: choose another with --port"
                    ) from None
                raise GatewayError(
                    f"cannot listen on {self.host}:{self.port}: {error.strerror or error}"
                ) from None
            for sock in self._sockets.insecure_sockets:
                sock.set_inheritable(False)  # never handed down to a service's process
            sock = self._sockets.insecure_sockets[0]
            self.port = int(sock.getsockname()[1])
            self.url = f"http://{_url_host(self.host)}:{self.port}"
        return self.url

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until stopped; report the URL once the server accepts connections."""
        self.bind()  # a restarted gateway binds again, on the same port
        sockets, self._sockets = self._sockets, None
        assert sockets is not None
        config = self._config()
        for sock in sockets.insecure_sockets:
            sock.listen(config.backlog)
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        app = self.app

        async def serve(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await worker_serve(
                wrap_app(app, config.wsgi_max_body_size, None),
                config,
                sockets=sockets,
                task_status=task_status,
            )

        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            task_status.started(self.url)


def _url_host(host: str) -> str:
    """``host`` as it goes into a URL: an IPv6 address in brackets."""
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return host
    return f"[{host}]"
