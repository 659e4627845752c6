"""An instance on another machine, driven over its agent's channel: :class:`RemoteHandle`.

A RemoteHandle is an :class:`~dployr.protocol.handle.InstanceHandle`: requests become
Calls, feeds become subscriptions, and what the handle knows without asking (the services,
their samples, the machine, the generation) comes from the agent's last Update.

It outlives the channels of its instance: the hub attaches each new channel
(:meth:`attach`) and detaches it when it breaks. A Call in flight when its channel breaks
is sent again on the next channel (the agent answers a repeated Call id with the kept
Result: it runs once), until the request's timeout; a request made while the instance is
away fails at once with ``unavailable``. Open subscriptions are opened again on the next
channel too, a log follow after the last cursor it delivered, so that a follow crosses a
reconnect without a gap or a duplicate.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import secrets
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Generic, TypeVar

import attrs
import trio

from dployr.cluster.transfer import CAPABILITY as UPLOADS
from dployr.cluster.transfer import Transfers
from dployr.logs.values import LogLine
from dployr.metrics import InstanceSample, ServiceSample
from dployr.models import check_name
from dployr.protocol import codec
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.events import Change, SupervisionReport
from dployr.protocol.feed import Gap
from dployr.protocol.handle import LogEntry
from dployr.protocol.messages import Delete, Deploy, ReadLogs, Request, ServiceInfo

log = logging.getLogger("dployr.cluster")

R = TypeVar("R")
T = TypeVar("T")

REQUEST_TIMEOUT = 60.0
"""Seconds a request waits for its Result, across reconnects, before ``unavailable``."""
LOG_PAGE_CHARS = w.MAX_FRAME // 8
"""The most characters of log lines a page read from an agent holds (a line escaped in
JSON takes at most six bytes a character, plus its fields): the page fits in a frame."""
UPDATE_WAIT = 5.0
"""Seconds a deploy of a new service (or a delete) waits for the agent's Update showing it."""
SUBSCRIPTION_ENTRIES = 256
"""Entries (runs of items) a subscription holds for a slow reader; beyond, a gap."""


class Outgoing:
    """The frames waiting for one channel's writer (the hub's session owns the writer).

    Unbounded on purpose: what the control plane sends (Calls, acks, pings, subscribes)
    is small and made by users' requests; the agent's heavy traffic flows the other way.
    """

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[str](math.inf)

    def put(self, text: str) -> None:
        """Queue a frame; dropped quietly once the channel is gone."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self.send.send_nowait(text)


class _Pending:
    def __init__(self, frame: str) -> None:
        self.frame = frame
        self.done = trio.Event()
        self.reply: Any = None
        self.error: Error | None = None


class _Subscription(Generic[T]):
    """One open subscription: its Subscribe (kept to open it again) and its entries."""

    def __init__(self, handle: RemoteHandle, subscribe: w.Subscribe) -> None:
        self.handle = handle
        self.subscribe = subscribe
        self.send, self.receive = trio.open_memory_channel[Sequence[T] | Gap](SUBSCRIPTION_ENTRIES)
        self.last_cursor: int | None = None
        """The last log cursor delivered (logs only): where a reopened follow resumes."""
        self.missed = 0
        self.missed_first = 0
        self.missed_last = 0
        # Invariant: `missed` counts items dropped since the last delivered entry; their
        # log cursors (or sequence numbers) span `missed_first` to `missed_last`.

    def frame(self) -> w.Subscribe:
        """The Subscribe that opens it again after a reconnect."""
        s = self.subscribe
        if s.kind == "logs" and self.last_cursor is not None:
            return w.Subscribe(s.sub, s.kind, s.service, self.last_cursor, None, s.streams)
        return s

    def deliver(self, entry: Sequence[T] | Gap) -> None:
        """Hand an entry to the reader, or count it as missed (never wait)."""
        if self.missed:
            try:
                self.send.send_nowait(Gap(self.missed, self.missed_first, self.missed_last))
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            else:
                self.missed = 0
        first, last, count = _span(entry)
        if not self.missed:
            try:
                self.send.send_nowait(entry)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            else:
                if last is not None and self.subscribe.kind == "logs":
                    self.last_cursor = last
                return
        if not self.missed:
            self.missed_first = first or 0
        self.missed += count
        self.missed_last = last or self.missed_last
        if self.subscribe.kind == "logs" and last is not None:
            self.last_cursor = last  # a reader that catches up reads the gap over REST

    def end(self) -> None:
        """No more entries: the reader's iteration ends."""
        self.send.close()


def _span(entry: Sequence[Any] | Gap) -> tuple[int | None, int | None, int]:
    if isinstance(entry, Gap):
        return entry.first, entry.last, entry.missed
    cursors = [item.cursor for item in entry if isinstance(item, LogLine)]
    if cursors:
        return cursors[0], cursors[-1], len(entry)
    return None, None, len(entry)


class RemoteFeed(Generic[T]):
    """A subscription as a :class:`~dployr.protocol.handle.Feed`."""

    def __init__(self, subscription: _Subscription[T]) -> None:
        self._subscription = subscription

    def __enter__(self) -> RemoteFeed[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the subscription (the agent is told)."""
        self._subscription.handle.unsubscribe(self._subscription)

    def __aiter__(self) -> RemoteFeed[T]:
        # An iterator, not an async generator: a reader that stops early leaves nothing
        # suspended behind to be finalized.
        return self

    async def __anext__(self) -> Sequence[T] | Gap:
        try:
            return await self._subscription.receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


class RemoteHandle:
    """An agent's instance as an InstanceHandle (see the module)."""

    def __init__(
        self, name: str, *, timeout: float = REQUEST_TIMEOUT, call_prefix: str = ""
    ) -> None:
        self._name = name
        self.timeout = timeout
        self._call_prefix = call_prefix
        """What this control plane's Call ids start with (its id): two control planes'
        Calls to one agent never share an id."""
        self._outgoing: Outgoing | None = None
        # Invariant: `_outgoing` is the attached channel's queue, or None while away.
        self._pending: dict[str, _Pending] = {}
        self._subscriptions: dict[int, _Subscription[Any]] = {}
        self._subs = itertools.count(1)
        self._services: dict[str, ServiceInfo] = {}
        self._samples: tuple[ServiceSample, ...] = ()
        self._machine: InstanceSample | None = None
        self._generation = 0
        self.epoch: str | None = None
        """The agent's boot epoch, from its last Update."""
        self.seq = 0
        """The sequence number of the agent's last Update."""
        self.updated = trio.Event()
        """Set (and replaced by a fresh one) at every Update from the agent."""
        self.uploads = Transfers(name, timeout=timeout)
        """The uploaded folders being sent to the agent (dployr/cluster/transfer.py)."""

    # -- the channel ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a channel is attached."""
        return self._outgoing is not None

    def attach(self, outgoing: Outgoing, capabilities: Sequence[str] = ()) -> None:
        """A new channel (of an agent with these capabilities): send it the Calls still
        unanswered and open the subscriptions."""
        self._outgoing = outgoing
        self._generation += 1
        self.uploads.attach(outgoing, capable=UPLOADS in capabilities)
        for pending in self._pending.values():
            outgoing.put(pending.frame)
        for subscription in self._subscriptions.values():
            outgoing.put(w.encode_frame(subscription.frame()))

    def detach(self, outgoing: Outgoing) -> None:
        """The channel broke (its Calls wait for the next one, within their timeout)."""
        if self._outgoing is outgoing:
            self._outgoing = None
            self._generation += 1
            self.uploads.detach()

    def close(self) -> None:
        """The instance is gone: every waiting request fails, every feed ends."""
        self._outgoing = None
        self.uploads.close()
        for pending in self._pending.values():
            pending.error = Error("unavailable", f"instance {self._name} was removed")
            pending.done.set()
        for subscription in self._subscriptions.values():
            subscription.end()
        self._subscriptions.clear()

    # -- frames from the agent (the hub's reader calls these) ----------------------------

    def on_result(self, result: w.Result) -> None:
        """The Result of a Call."""
        pending = self._pending.get(result.id)
        if pending is None:
            return  # timed out meanwhile, or a repeat's answer
        pending.reply, pending.error = result.reply, result.error
        pending.done.set()

    def on_update(self, update: w.Update) -> bool:
        """An Update snapshot; False if it does not follow the last one (a seq skipped)."""
        follows = update.full or (update.epoch == self.epoch and update.seq == self.seq + 1)
        if update.full:
            self._services = {}
        for info in update.services:
            self._services[info.name] = info
        for name in update.removed:
            self._services.pop(name, None)
        self._samples = update.samples
        if update.machine is not None:
            with contextlib.suppress(Error):
                self._machine = codec.decode_as(update.machine, InstanceSample)
        self.epoch, self.seq = update.epoch, update.seq
        if update.full or update.services or update.removed:
            self._generation += 1  # not for samples alone: the services' info is the same
        updated, self.updated = self.updated, trio.Event()
        updated.set()
        return follows

    def on_items(self, sub: int, entry: Sequence[Any] | Gap) -> None:
        """Items (or a gap) of a subscription."""
        subscription = self._subscriptions.get(sub)
        if subscription is not None:
            subscription.deliver(entry)

    def on_ended(self, ended: w.Ended) -> None:
        """The agent ended a subscription."""
        subscription = self._subscriptions.pop(ended.sub, None)
        if subscription is not None:
            if ended.error is not None:
                log.info("instance %s ended a subscription: %s", self._name, ended.error)
            subscription.end()

    # -- InstanceHandle ------------------------------------------------------------------

    @property
    def instance_name(self) -> str:
        """The name of the instance behind the handle."""
        return self._name

    @property
    def generation(self) -> int:
        """Grows with every Update that changes a service, and every connect or disconnect."""
        return self._generation

    def services(self) -> list[ServiceInfo]:
        """The services as the agent's last Update showed them, by name."""
        return [self._services[name] for name in sorted(self._services)]

    async def request(self, request: Request[R], /) -> R:
        """Carry out one request on the agent; ``unavailable`` if it is away or silent."""
        if self._outgoing is None:
            raise Error("unavailable", f"instance {self._name} is away")
        if isinstance(request, ReadLogs) and (request.max_text or LOG_PAGE_CHARS) >= LOG_PAGE_CHARS:
            # A page within one frame however its lines encode; the reader reads on.
            request = attrs.evolve(request, max_text=LOG_PAGE_CHARS)  # type: ignore[assignment]
        call = self._call_prefix + secrets.token_hex(12)
        pending = _Pending(w.encode_frame(w.Call(call, request)))
        self._pending[call] = pending
        try:
            self._outgoing.put(pending.frame)
            with trio.move_on_after(self.timeout):
                await pending.done.wait()
        finally:
            del self._pending[call]
        if not pending.done.is_set():
            raise Error(
                "unavailable", f"instance {self._name} did not answer within {self.timeout:g} s"
            )
        if pending.error is not None:
            raise pending.error
        reply: R = codec.decode_reply(type(request), pending.reply)
        await self._seen(request)
        return reply

    async def _seen(self, request: Request[Any]) -> None:
        """After a deploy of a new service (or a delete), wait for the Update that shows it:
        a log follow or a status asked right after the reply then finds it."""
        if isinstance(request, Deploy):

            def waiting() -> bool:
                return request.name not in self._services
        elif isinstance(request, Delete):

            def waiting() -> bool:
                return request.name in self._services
        else:
            return
        with trio.move_on_after(UPDATE_WAIT):
            while waiting() and self._outgoing is not None:
                await self.updated.wait()

    def check_service(self, name: str, /) -> None:
        """Raise an Error unless ``name`` is a service of the instance (as last seen)."""
        try:
            check_name(name)
        except Exception as error:
            raise Error("invalid", str(error)) from None
        if name not in self._services:
            raise Error("not_found", f"no service named {name!r} on instance {self._name}")

    def follow_logs(
        self,
        name: str,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: frozenset[str] | None = None,
    ) -> AsyncGenerator[LogEntry, None]:
        """A service's log on the agent: history, then live lines (a subscription)."""
        self.check_service(name)
        subscription = self._subscribe(
            "logs", name, after, tail, tuple(sorted(streams)) if streams is not None else None
        )
        return self._follow(subscription)

    async def _follow(self, subscription: _Subscription[LogLine]) -> AsyncGenerator[LogEntry, None]:
        try:
            async for entry in RemoteFeed(subscription):
                yield entry if isinstance(entry, Gap) else list(entry)
        finally:
            self.unsubscribe(subscription)

    def subscribe_changes(self) -> RemoteFeed[Change]:
        """Every service's changes on the agent."""
        return RemoteFeed(self._subscribe("changes"))

    def subscribe_supervision(self) -> RemoteFeed[SupervisionReport]:
        """The supervision reports of the agent's tree."""
        return RemoteFeed(self._subscribe("supervision"))

    def subscribe_metrics(self) -> RemoteFeed[ServiceSample]:
        """Each service's sample on the agent, every metrics round."""
        return RemoteFeed(self._subscribe("metrics"))

    def latest_samples(self) -> list[ServiceSample]:
        """The last sample of every running service, from the last Update."""
        return list(self._samples)

    def latest_machine(self) -> InstanceSample | None:
        """The agent's machine, from the last Update."""
        return self._machine

    def _subscribe(
        self,
        kind: w.SubscriptionKind,
        service: str | None = None,
        after: int | None = None,
        tail: int | None = None,
        streams: tuple[str, ...] | None = None,
    ) -> _Subscription[Any]:
        subscription: _Subscription[Any] = _Subscription(
            self, w.Subscribe(next(self._subs), kind, service, after, tail, streams)
        )
        self._subscriptions[subscription.subscribe.sub] = subscription
        if self._outgoing is not None:
            self._outgoing.put(w.encode_frame(subscription.subscribe))
        return subscription

    def unsubscribe(self, subscription: _Subscription[Any]) -> None:
        """Close a subscription; the agent is told if it is connected."""
        sub = subscription.subscribe.sub
        if self._subscriptions.pop(sub, None) is not None and self._outgoing is not None:
            self._outgoing.put(w.encode_frame(w.Unsubscribe(sub)))
        subscription.end()
