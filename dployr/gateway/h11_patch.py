"""A fix carried for Hypercorn 0.18's HTTP/1.1 connections whose request body is not read.

The bug (Hypercorn 0.18.0, the newest release; its ``main`` has the same code):
``hypercorn/protocol/h11.py``, ``H11Protocol._maybe_recycle``, runs inside the ASGI app's
task (it is reached from the app's last ``send`` through ``HTTPStream.app_send`` and
``stream_send(StreamClosed)``). It first tells the app ``http.disconnect``; Quart-Trio's
receiver task takes that as the end of the request and cancels the app's nursery, which is
the very task running ``_maybe_recycle``. When the app answered without reading the
request's body (a 401 before auth, a 404/405, a handler that takes no body) and that body
arrives in a later TCP packet than the headers, h11 still expects the body
(``their_state`` is ``SEND_BODY``), so ``_maybe_recycle`` closes the connection with
``send(Closed())``: ``hypercorn/trio/tcp_server.py``, ``TCPServer._close``, awaits
``send_eof()`` first, which raises ``Cancelled`` before the socket is shut down or closed.
The reader task is left to read the body into a connection with no stream, h11 pauses at
the next request, the reader waits on ``can_read`` for good: the next request on the
keep-alive connection is never answered, the client's FIN is never read, and the socket
stays in CLOSE-WAIT (one file descriptor leaked per such request). The keep-alive idle
timer (``Updated(idle=True)``) is restarted in the same cancelled task, so it is lost too.
And when that timer does run, a connection the client has closed keeps its socket open
until the timer ends (``TCPServer.run`` closes the socket only once the connection's task
group, which holds the timer, is done): 5 s of a file descriptor per closed connection.

The fix, applied once when the gateway starts (:func:`apply`):

- the end of a request (closing or recycling the connection) runs shielded from the app
  task's cancellation, so a close that is decided is done;
- a body the app did not read is drained (discarded) up to :data:`DRAIN_LIMIT` bytes, then
  the connection is recycled for the next request as usual; a larger body closes it;
- a closed connection stops its keep-alive timer, so its socket is closed at once.

The app also reads every body it is sent (``dployr.gateway.app``), so Hypercorn's path
here is a second line; the tests run the bare stack too. Remove this module when a
Hypercorn release carries the fix.
"""

from __future__ import annotations

from typing import Any

import h11
import trio
from hypercorn.events import Closed, Updated
from hypercorn.protocol.events import Body, EndBody
from hypercorn.protocol.h11 import H11Protocol

from dployr.gateway.responses import MAX_BODY

DRAIN_LIMIT = MAX_BODY
"""The most bytes of an unread request body a connection discards to stay open."""


class _UnreadBody:
    """Stands in for the finished stream while the body it did not read is discarded."""

    def __init__(self, protocol: Any, limit: int) -> None:
        self.protocol = protocol
        self.left = limit
        self.closed = False

    async def handle(self, event: Any) -> None:
        if self.closed:
            return
        if isinstance(event, Body):
            self.left -= len(event.data)
            if self.left < 0:  # too much to discard: close rather than read it all
                self.closed = True
                await self.protocol.send(Closed())
        elif isinstance(event, EndBody):
            self.closed = True
            await self.protocol._maybe_recycle()  # the request is complete: next cycle


async def _maybe_recycle(self: Any) -> None:
    """``H11Protocol._maybe_recycle``, shielded, draining an unread body."""
    await self._close_stream()
    # From here on the app's task may be cancelled (see the module's docstring).
    with trio.CancelScope(shield=True):
        if (
            not self.context.terminated.is_set()
            and self.connection.our_state is h11.DONE
            and self.connection.their_state is h11.SEND_BODY
        ):
            self.stream = _UnreadBody(self, DRAIN_LIMIT)
            await self.can_read.set()
        elif (
            not self.context.terminated.is_set()
            and self.connection.our_state is h11.DONE
            and self.connection.their_state is h11.DONE
        ):
            try:
                self.connection.start_next_cycle()
            except h11.LocalProtocolError:
                await self.send(Closed())
            else:
                self.response = None
                self.scope = None
                await self.can_read.set()
                await self.send(Updated(idle=True))
        else:
            await self.can_read.set()
            await self.send(Closed())


_handle = H11Protocol.handle


async def _handle_then_forget_idle_timer(self: Any, event: Any) -> None:
    """``H11Protocol.handle``; a closed connection also stops its keep-alive idle timer."""
    await _handle(self, event)
    if isinstance(event, Closed):
        with trio.CancelScope(shield=True):
            await self.send(Updated(idle=False))


def apply() -> None:
    """Install the fix into Hypercorn's HTTP/1.1 protocol (idempotent)."""
    H11Protocol._maybe_recycle = _maybe_recycle  # type: ignore[method-assign]
    H11Protocol.handle = _handle_then_forget_idle_timer  # type: ignore[method-assign]
