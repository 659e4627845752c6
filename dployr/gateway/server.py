"""The gateway actor: Hypercorn's trio worker serving the Quart app."""

from __future__ import annotations

import errno
import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from dployr.engine.instance import InstanceHandle
from dployr.errors import DployrError
from dployr.gateway.app import create_app
from dployr.gateway.responses import TokenCheck
from dployr.supervision import ChildContext


class GatewayError(DployrError):
    """The gateway could not listen."""


class Gateway:
    """Serves the API (and later the dashboard) on ``host:port``."""

    def __init__(
        self, handle: InstanceHandle, check_token: TokenCheck, host: str, port: int
    ) -> None:
        self.app = create_app(handle, check_token)
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, report the URL, serve until stopped."""
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("dployr.gateway.hypercorn")
        config.graceful_timeout = 5.0
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(serve, self.app, config)
            except* OSError as group:
                error = group.exceptions[0]
                assert isinstance(error, OSError)
                if error.errno == errno.EADDRINUSE:
                    raise GatewayError(
                        f"port {self.port} on {self.host} is already in use"
                    ) from None
                raise GatewayError(
                    f"cannot listen on {self.host}:{self.port}: {error.strerror}"
                ) from None
            self.url = binds[0]
            self.port = int(self.url.rsplit(":", 1)[1])
            task_status.started(self.url)
