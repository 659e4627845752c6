"""The proxy actor: a service's public port, forwarding to the active release's private port.

It is what makes the switch between releases atomic: ``switch(port)`` changes where *new*
connections go, in one step, while connections already open keep relaying to the release
they started with until they end. A connection that arrives while the release restarts is
held and retried for a few seconds rather than refused.
"""

from __future__ import annotations

import collections
import errno

import trio

from dployr.errors import DployrError
from dployr.supervision import ChildContext

CHUNK = 64 * 1024
CONNECT_DEADLINE = 5.0
"""Seconds a new connection waits for a release to accept it before it is closed."""
RETRY_INTERVAL = 0.05


class PortInUse(DployrError):
    """The service's public port is taken by another program."""


class Proxy:
    """Listens on ``host:port`` and relays each connection to ``127.0.0.1:<target>``."""

    def __init__(self, service: str, host: str, port: int, target: int | None = None) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._target = target
        self._target_changed = trio.Event()
        # Open connections per private port, so a switch can wait for the old one to drain.
        self._open: collections.Counter[int] = collections.Counter()
        self._drained: dict[int, trio.Event] = {}

    @property
    def target(self) -> int | None:
        """The private port new connections go to, or None before the first release."""
        return self._target

    def switch(self, target: int | None) -> None:
        """Send new connections to ``target`` from now on."""
        self._target = target
        self._target_changed.set()
        self._target_changed = trio.Event()

    def connections(self, target: int) -> int:
        """How many relayed connections to ``target`` are open."""
        return self._open[target]

    async def drained(self, target: int) -> None:
        """Wait until no connection to ``target`` is open."""
        if self._open[target]:
            await self._drained.setdefault(target, trio.Event()).wait()

    async def run(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind the public port, report started, and serve until stopped."""
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {self.port} is already in use by another program") from None
            raise DployrError(f"cannot listen on port {self.port}: {error.strerror}") from None
        task_status.started(self)
        await trio.serve_listeners(self._serve, listeners)

    async def _connect(self) -> tuple[int, trio.SocketStream] | None:
        """Connect to the current target; the connection counts against it from the start.

        Counting before the connect completes matters: a switch that happens while the
        connect is under way must see this connection when it waits for the old release
        to drain.
        """
        with trio.move_on_after(CONNECT_DEADLINE):
            while True:
                target = self._target
                if target is None:
                    await self._target_changed.wait()
                    continue
                self._opened(target)
                try:
                    return target, await trio.open_tcp_stream("127.0.0.1", target)
                except OSError:
                    self._closed(target)
                    # The release is (re)starting: wait for a switch or retry shortly.
                    with trio.move_on_after(RETRY_INTERVAL):
                        await self._target_changed.wait()
                except BaseException:
                    self._closed(target)
                    raise
        return None

    def _opened(self, target: int) -> None:
        self._open[target] += 1

    def _closed(self, target: int) -> None:
        self._open[target] -= 1
        if not self._open[target]:
            del self._open[target]
            event = self._drained.pop(target, None)
            if event is not None:
                event.set()

    async def _serve(self, client: trio.SocketStream) -> None:
        async with client:
            connected = await self._connect()
            if connected is None:
                return
            target, upstream = connected
            try:
                async with upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(_relay, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(_relay, upstream, client, nursery.cancel_scope)
            finally:
                self._closed(target)


async def _relay(
    source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
) -> None:
    """Copy one direction until EOF, then half-close; an error ends both directions."""
    try:
        while data := await source.receive_some(CHUNK):
            await sink.send_all(data)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        scope.cancel()
