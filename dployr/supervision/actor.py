"""Actors: a trio task that owns its state and is reached only through a bounded mailbox.

``tell`` sends a message (waiting while the mailbox is full: back-pressure) and
``tell_nowait`` raises :class:`MailboxFull` instead. ``ask`` sends a :class:`Query` and
waits for the reply, with a timeout; it fails with :class:`ActorDead` when the actor is
not running or stops before answering, and with :class:`AskTimeout` when it is too slow. A
reply that arrives after the asker gave up is dropped quietly.

A handler that raises a :class:`DployrError` while answering a query refuses that query
(the asker gets the error) and the actor carries on; any other exception crashes the
actor, as it should: its supervisor decides what happens next.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

import trio

from dployr.errors import ActorDead, AskTimeout, DployrError, MailboxFull
from dployr.supervision.context import ChildContext
from dployr.supervision.policy import DEFAULT_ASK_TIMEOUT, DEFAULT_MAILBOX_SIZE
from dployr.supervision.reasons import ExitReason

M = TypeVar("M")
R = TypeVar("R")


class Query(Generic[R]):
    """Base class of messages that expect a reply of type ``R`` (see ``ActorRef.ask``)."""


class _Reply:
    """The one-shot slot a reply is put into."""

    __slots__ = ("abandoned", "error", "event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: object = None
        self.error: BaseException | None = None
        self.abandoned = False

    def set(self, value: object) -> None:
        if not self.abandoned and not self.event.is_set():
            self.value = value
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.abandoned and not self.event.is_set():
            self.error = error
            self.event.set()


class _Envelope:
    __slots__ = ("message", "reply")

    def __init__(self, message: object, reply: _Reply | None) -> None:
        self.message = message
        self.reply = reply


class ActorRef(Generic[M]):
    """The handle through which the world reaches one actor."""

    def __init__(self, name: str, send: trio.MemorySendChannel[_Envelope]) -> None:
        self.name = name
        self._send = send
        # Invariant: every reply an asker is still waiting for, so a dying actor fails them.
        self._pending: set[_Reply] = set()
        self._dead = False

    @property
    def alive(self) -> bool:
        """Whether the actor still takes messages."""
        return not self._dead

    def _dead_error(self) -> ActorDead:
        return ActorDead(f"{self.name} is not running")

    async def tell(self, message: M) -> None:
        """Send ``message``, waiting while the mailbox is full."""
        try:
            await self._send.send(_Envelope(message, None))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._dead_error() from None

    def tell_nowait(self, message: M) -> None:
        """Send ``message`` or raise :class:`MailboxFull` at once."""
        try:
            self._send.send_nowait(_Envelope(message, None))
        except trio.WouldBlock:
            raise MailboxFull(f"{self.name}'s mailbox is full") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._dead_error() from None

    async def ask(
        self,
        query: Query[R],
        *,
        timeout: float = DEFAULT_ASK_TIMEOUT,  # noqa: ASYNC109 (part of the request, as in OTP)
    ) -> R:
        """Send ``query`` and wait up to ``timeout`` seconds for its reply."""
        if self._dead:
            raise self._dead_error()
        reply = _Reply()
        self._pending.add(reply)
        try:
            with trio.move_on_after(timeout):
                try:
                    await self._send.send(_Envelope(query, reply))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise self._dead_error() from None
                await reply.event.wait()
        finally:
            self._pending.discard(reply)
        if not reply.event.is_set():
            reply.abandoned = True
            raise AskTimeout(
                f"{self.name} did not answer {type(query).__name__} within {timeout:g} s"
            )
        if reply.error is not None:
            raise reply.error
        return reply.value  # type: ignore[return-value]

    def _die(self) -> None:
        self._dead = True
        error = ActorDead(f"{self.name} stopped before answering")
        for reply in self._pending:
            reply.fail(error)


class Actor(Generic[M]):
    """Base class of actors: override :meth:`handle` (and :meth:`on_start` if needed).

    One object serves one incarnation; a supervisor restarts an actor by building a new
    one, so the state of a crashed incarnation never leaks into the next.
    """

    def __init__(self, name: str, *, mailbox_size: int = DEFAULT_MAILBOX_SIZE) -> None:
        send, self._inbox = trio.open_memory_channel[_Envelope](mailbox_size)
        self.ref: ActorRef[M] = ActorRef(name, send)
        self._stop_after_message = False

    async def on_start(self) -> None:
        """Get ready before ``started()``; the default does nothing."""

    async def handle(self, message: M) -> Any:
        """Handle one message; for a :class:`Query`, return the reply."""
        raise NotImplementedError

    def stop(self) -> None:
        """Exit normally once the current message is handled."""
        self._stop_after_message = True

    async def run(
        self,
        ctx: ChildContext | None = None,
        *,
        task_status: trio.TaskStatus[ActorRef[M]] = trio.TASK_STATUS_IGNORED,
    ) -> ExitReason | None:
        """Serve the mailbox until stopped, cancelled or crashed."""
        try:
            await self.on_start()
            task_status.started(self.ref)
            async for envelope in self._inbox:
                reply = envelope.reply
                try:
                    result = await self.handle(cast(M, envelope.message))
                except DployrError as error:
                    if reply is None:
                        raise
                    reply.fail(error)
                else:
                    if reply is not None:
                        reply.set(result)
                if self._stop_after_message:
                    break
            return None
        finally:
            # Closing the mailbox makes later sends fail; _die fails every waiting asker,
            # including those whose queries are still queued.
            self._inbox.close()
            self.ref._die()
