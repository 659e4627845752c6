"""The proxy actor: a service's public port, forwarding to the active release's private port.

It is what makes the switch between releases atomic: ``switch(port)`` changes where *new*
connections go, in one step, while connections already open keep relaying to the release
they started with until they end. A connection that arrives while the release restarts is
held and retried for a few seconds rather than refused.

The relay is on the hot path of every request a service answers, so it works on plain
non-blocking sockets under trio's scheduler rather than through trio's stream layers: it
reads into one scratch buffer, sends what it read at once, and asks trio to wake it only
when a socket would block (``benchmarks/RESULTS.md``, issue 5, has the figures). Memory per
connection stays bounded: a direction holds at most what it read once while its sink is
full, and reads nothing more until it drains.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import socket
from collections.abc import Callable

import trio

from dployr.errors import DployrError
from dployr.supervision import ChildContext

CHUNK = 256 * 1024
RETRY_INTERVAL = 0.05
ACCEPT_PAUSE = 0.1
"""Seconds the proxy stops accepting when the daemon is out of file descriptors."""

# One scratch buffer for every relay: a relay never awaits between filling it and sending
# from it, and copies what a short send left before it waits.
_SCRATCH = bytearray(CHUNK)
_VIEW = memoryview(_SCRATCH)
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class PortInUse(DployrError):
    """The service's public port is taken by another program."""


class Proxy:
    """Listens on ``host:port`` and relays each connection to ``127.0.0.1:<target>``."""

    def __init__(
        self,
        service: str,
        host: str,
        port: int,
        target: int | None = None,
        *,
        connect_deadline: float,
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.connect_deadline = connect_deadline
        """Seconds a new connection waits for a release to accept it before it is closed
        (``EngineConfig.connect_deadline``)."""
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
        sockets = [socket.socket(fileno=listener.socket.detach()) for listener in listeners]
        try:
            for each in sockets:
                each.setblocking(False)
            task_status.started(self)
            async with trio.open_nursery() as nursery:
                for each in sockets:
                    nursery.start_soon(self._accept, each, nursery)
        finally:
            for each in sockets:
                _close(each)

    async def _accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        """Accept connections on ``listener`` for ever, each relayed in ``nursery``."""
        while True:
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(listener)
                continue
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    # Connections wait in the backlog until descriptors are free again.
                    await trio.sleep(ACCEPT_PAUSE)
                continue  # the peer gave up before we took it (ECONNABORTED and the like)
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(self._serve, client, nursery)

    async def _serve(self, client: socket.socket, nursery: trio.Nursery) -> None:
        """Connect ``client`` to the current release and relay both ways."""
        try:
            connected = await self._connect()
        except BaseException:
            client.close()
            raise
        if connected is None:
            client.close()
            return
        target, upstream = connected
        pair = _Pair(client, upstream, lambda: self._closed(target))
        nursery.start_soon(_relay, client, upstream, pair)
        await _relay(upstream, client, pair)

    async def _connect(self) -> tuple[int, socket.socket] | None:
        """Connect to the current target; the connection counts against it from the start.

        Counting before the connect completes matters: a switch that happens while the
        connect is under way must see this connection when it waits for the old release
        to drain.
        """
        target = self._target
        if target is not None:
            # The common case, without a cancel scope: the release accepts at once.
            upstream = await self._attempt(target)
            if upstream is not None:
                return target, upstream
        with trio.move_on_after(self.connect_deadline):
            while True:
                target = self._target
                if target is None:
                    await self._target_changed.wait()
                    continue
                upstream = await self._attempt(target)
                if upstream is not None:
                    return target, upstream
                # The release is (re)starting: wait for a switch or retry shortly.
                with trio.move_on_after(RETRY_INTERVAL):
                    await self._target_changed.wait()
        return None

    async def _attempt(self, target: int) -> socket.socket | None:
        """One connect to ``target``, counted against it while it is under way."""
        self._opened(target)
        try:
            upstream = await _open(target)
        except BaseException:
            self._closed(target)
            raise
        if upstream is None:
            self._closed(target)
        return upstream

    def _opened(self, target: int) -> None:
        self._open[target] += 1

    def _closed(self, target: int) -> None:
        self._open[target] -= 1
        if not self._open[target]:
            del self._open[target]
            event = self._drained.pop(target, None)
            if event is not None:
                event.set()


class _Pair:
    """A relayed connection: its two sockets, closed once both directions have ended."""

    __slots__ = ("client", "ended", "on_closed", "upstream")

    def __init__(
        self, client: socket.socket, upstream: socket.socket, on_closed: Callable[[], None]
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.on_closed = on_closed
        self.ended = 0

    def end(self) -> None:
        self.ended += 1
        if self.ended == 2:
            _close(self.client)
            _close(self.upstream)
            self.on_closed()

    def fail(self) -> None:
        """One direction failed: end the other one too (it then sees EOF or an error)."""
        for each in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)


async def _open(port: int) -> socket.socket | None:
    """A connected socket to ``127.0.0.1:port``, or None if nothing accepts there."""
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            upstream.connect(("127.0.0.1", port))
        except BlockingIOError:
            await trio.lowlevel.wait_writable(upstream)
            if upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                upstream.close()
                return None
    except OSError:
        upstream.close()
        return None
    except BaseException:
        _close(upstream)
        raise
    return upstream


async def _relay(source: socket.socket, sink: socket.socket, pair: _Pair) -> None:
    """Copy ``source`` to ``sink`` until EOF, then half-close ``sink``."""
    moved = 0
    try:
        while True:
            try:
                size = source.recv_into(_SCRATCH)
            except BlockingIOError:
                moved = 0
                await trio.lowlevel.wait_readable(source)
                continue
            if not size:
                sink.shutdown(socket.SHUT_WR)
                return
            try:
                sent = sink.send(_VIEW[:size])
            except BlockingIOError:
                sent = 0
            if sent < size:
                # The sink is full: keep the rest (the scratch buffer is shared) and wait.
                rest = memoryview(bytes(_VIEW[sent:size]))
                while rest:
                    await trio.lowlevel.wait_writable(sink)
                    with contextlib.suppress(BlockingIOError):
                        rest = rest[sink.send(rest) :]
                moved = 0
                continue
            moved += size
            if moved >= CHUNK:
                moved = 0
                await trio.lowlevel.checkpoint()  # a bulk transfer must not starve the rest
    except OSError:
        pair.fail()
    finally:
        pair.end()


def _close(sock: socket.socket) -> None:
    """Close ``sock``, waking any task trio has waiting on it."""
    if sock.fileno() != -1:
        trio.lowlevel.notify_closing(sock)
        sock.close()
