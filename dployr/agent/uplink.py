"""The agent's channels to its control planes: dial, hello, serve, and dial again.

The uplink is one child of the agent's root supervisor, beside the instance; it never
stops or touches a service. It keeps one channel to each control plane of the cluster: the
one it joined, and every other one a control plane names (in its hello_ack, or later in a
``control_planes`` frame; several ``dployr up`` may share one database), each dialled on its
own with its own backoff, so that every control plane reaches the agent directly. A URL
whose control plane turns out to be one already reached (by another URL) is not dialled
again. For each, it dials the control plane's WebSocket
(``/api/v1/agent``, the credential as a bearer token), says :class:`~dployr.protocol.wire.Hello`,
and then, until the channel breaks:

* answers each Call through the instance's LocalHandle, exactly once (the
  :class:`~dployr.agent.outbox.Outbox`, shared by the channels; each control plane's Call
  ids start with its own id): the Call runs in the uplink's own nursery, not the
  channel's, so a channel that breaks half-way never cancels a deploy;
* serves the subscriptions the control plane opens (logs from a cursor, changes, metrics,
  supervision), each in the channel's nursery: they end with it;
* sends an Update snapshot, full at the start, then the services that changed, a short
  while after any change or metrics round (:data:`SETTLE`);
* answers pings; a channel silent for :data:`~dployr.protocol.wire.AWAY_AFTER` is dead.

Then it waits (:func:`~dployr.agent.backoff.reconnect_delay`) and dials again. A channel's
frames go out through one writer task and a bounded queue: a slow control plane slows the
subscriptions' readers (which then see gaps), never the services or the other channels.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import secrets
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
)

from dployr import __version__, tls
from dployr.agent import known
from dployr.agent.backoff import QUICK, reconnect_delay
from dployr.agent.credential import Credential, check_url, reason
from dployr.agent.outbox import Outbox
from dployr.agent.uploads import Received
from dployr.engine.handle import error_of
from dployr.errors import DployrError
from dployr.metrics import InstanceSample
from dployr.protocol import codec
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.feed import Gap
from dployr.protocol.handle import Feed
from dployr.protocol.messages import ServiceInfo
from dployr.supervision import topic as topics

if TYPE_CHECKING:
    from dployr.engine.instance import Instance

log = logging.getLogger("dployr.agent")

CAPABILITIES = ("calls", "updates", "logs", "changes", "metrics", "supervision", "uploads")
SETTLE = 0.2
"""Seconds an Update waits after a change for the next ones: one Update for a burst."""
HELLO_WAIT = 10.0
"""Seconds the control plane has to answer a hello."""
CLOSE_WAIT = 2.0
"""Seconds a closing channel waits for the control plane's answer to its close."""
QUEUE = 64
"""Frames waiting for the writer: beyond it, the senders wait."""
LOG_WINDOW = 0.01
"""Seconds a log subscription waits after sending live lines, letting the next ones gather:
a service writing 10,000 lines/s in 1 ms ticks is sent 100 frames a second of ~100 lines,
not 1,000 of ~10, each of which the control plane decodes, queues and relays on its own
(its queue for a reader is counted in frames: small ones overflowed it into gaps)."""


class ProtocolFault(Exception):
    """The control plane sent what this agent cannot take: the channel is closed."""


@attrs.define(eq=False)
class _Link:
    """The channel to one control plane URL, dialled again and again."""

    peer: Credential
    """The agent's credential, with this control plane's URL."""
    send: trio.MemorySendChannel[str] | None = None
    """The channel's writer queue while a hello has been acked and the channel is open,
    else None."""
    seq: int = 0
    """The sequence number of the last Update sent on this link (in this epoch)."""
    control_plane: str | None = None
    """The id of the control plane this URL reached last (from its hello_ack)."""
    alias_of: str | None = None
    """The other URL that reaches the same control plane, once found: not dialled again."""
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    """Cancelled when the URL is no longer dialled (its control plane was forgotten)."""


class Uplink:
    """The agent's side of the wire (see the module)."""

    def __init__(
        self,
        instance: Instance,
        outbox: Outbox,
        credential: Credential,
        *,
        say: Callable[[str], None] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self._instance = instance
        self._data_dir = data_dir
        """Where the control planes' URLs are kept for the next start (None: not kept)."""
        self._known: tuple[str, ...] = () if data_dir is None else known.load(data_dir)
        """The control planes' URLs as last told (by this run or an earlier one)."""
        self._say = say or log.info
        """Where the uplink tells its user what the channel does (a line each)."""
        self._handle = instance.handle
        self._outbox = outbox
        self._credential = credential
        self._uploads = Received(instance.config.data_dir / "uploads", credential.instance)
        """The folders the control plane uploads (dployr/agent/uploads.py)."""
        credential.ssl_context()  # a CA file it cannot use fails here, at start
        self.epoch = secrets.token_hex(8)
        """This run's boot epoch: a control plane that sees another knows the agent
        started again."""
        self._rng = random.Random()
        self._running: set[str] = set()
        # Invariant: `_running` holds the ids of the Calls being carried out by this
        # process; the outbox says `running` for each (and for those of an earlier run).
        self._links: dict[str, _Link] = {}
        """Every control plane URL dialled (or found to reach one already dialled), by URL."""
        self._nursery: trio.Nursery | None = None
        """Where each link's dialling runs."""

    async def run(
        self, ctx: object = None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Dial every control plane, serve, dial again, until cancelled."""
        async with trio.open_nursery() as calls, trio.open_nursery() as links:
            self._nursery = links
            self._add_link(self._credential.url, calls)
            task_status.started()

    def _add_link(self, url: str, calls: trio.Nursery) -> None:
        """Dial ``url`` (for good) unless it is dialled already."""
        if url in self._links or self._nursery is None:
            return
        link = self._links[url] = _Link(attrs.evolve(self._credential, url=url))
        self._nursery.start_soon(self._keep_dialling, link, calls)

    def _learn(self, planes: tuple[w.ControlPlane, ...], calls: trio.Nursery) -> None:
        """Dial the control planes not reached yet (by their URL or another one), stop
        dialling those no longer listed; keep their URLs for the next start."""
        reached = {link.control_plane for link in self._links.values()}
        urls = tuple(check_url(plane.url) for plane in planes)
        for plane, url in zip(planes, urls, strict=True):
            if plane.id not in reached:
                self._add_link(url, calls)
        if urls and urls != self._known and self._data_dir is not None:
            self._known = urls
            known.save(self._data_dir, urls)
        ids = {plane.id for plane in planes}
        for url, link in list(self._links.items()):
            forgotten = url not in urls and link.control_plane not in ids
            # The URL joined is always dialled, and a channel that is up is kept.
            if forgotten and url != self._credential.url and link.send is None:
                del self._links[url]
                link.scope.cancel()
                self._say(f"no longer dialling {url}: the control planes forgot it")

    def _fall_back(self, calls: trio.Nursery) -> None:
        """The URL joined cannot be reached: dial the control planes last told of too."""
        for url in self._known:
            self._add_link(url, calls)

    async def _keep_dialling(self, link: _Link, calls: trio.Nursery) -> None:
        """Dial one control plane URL, serve, dial again; until cancelled, forgotten, or
        until its control plane turns out to be reached already by another URL."""
        with link.scope:
            await self._dial_again_and_again(link, calls)

    async def _dial_again_and_again(self, link: _Link, calls: trio.Nursery) -> None:
        try:
            link.peer.ssl_context()
        except DployrError as error:  # a CA file that cannot be used: nothing to dial
            self._say(f"cannot dial the control plane {link.peer.url}: {error}")
            return
        attempt = 0
        while True:
            try:
                reason = await self._dial(link, calls)
                attempt = 0  # the channel was up, then broke: start the backoff over
            except (_Refused, _Failed) as failed:
                reason = str(failed)
                if isinstance(failed, _Refused):  # refused: no quick retries, back off
                    attempt = max(attempt, QUICK)
                if link.peer.url == self._credential.url:
                    self._fall_back(calls)
            if link.alias_of is not None:
                self._say(
                    f"{link.peer.url} is the control plane reached at {link.alias_of}: "
                    "not dialled again"
                )
                return
            delay = reconnect_delay(attempt, self._rng)
            attempt += 1
            self._say(f"{reason} ({link.peer.url}); dialling again in {delay:.1f} s")
            await trio.sleep(delay)

    async def _dial(self, link: _Link, calls: trio.Nursery) -> str:
        """One channel: returns why it closed after a hello was acked; else raises."""
        headers = [(b"authorization", f"Bearer {self._credential.credential}".encode())]
        acked = False
        context = link.peer.ssl_context()
        try:
            # wss: one connection, its certificate verified first (a refusal said at once)
            async with tls.open_websocket(
                link.peer.channel_url,
                context,
                extra_headers=headers,
                max_message_size=w.MAX_FRAME,
                message_queue_size=QUEUE,
                connect_timeout=HELLO_WAIT,
                disconnect_timeout=2.0,
            ) as ws:
                ack = await self._hello(ws)
                link.alias_of = self._alias_of(link, ack)
                if link.alias_of is not None:
                    return "reached by another URL"
                acked = True
                link.control_plane = ack.control_plane
                self._learn(ack.control_planes, calls)
                await self._serve(ws, link, calls, silence=3 * ack.heartbeat)
        except ConnectionRejected as error:
            raise _Refused(
                f"the control plane refused this agent ({error.status_code}): "
                f"{_message_of(error.body)}"
            ) from None
        except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as error:
            if acked:
                return f"the channel to the control plane closed: {_describe(error)}"
            hint = ""
            if context is None and isinstance(error, HandshakeError | ConnectionClosed):
                # A TLS server hangs up on a plain handshake: it never gets an answer.
                hint = " (if it serves https, give --join https://... once)"
            raise _Failed(f"cannot reach the control plane: {_describe(error)}{hint}") from None
        except ProtocolFault as fault:
            if acked:
                return f"closed the channel to the control plane: {fault}"
            raise _Failed(f"the control plane broke the protocol: {fault}") from None
        except BaseExceptionGroup as group:  # trio-websocket's own nursery may wrap them
            rejected, _ = group.split(ConnectionRejected)
            if rejected is not None:
                first = _first(rejected)
                assert isinstance(first, ConnectionRejected)
                raise _Refused(
                    f"the control plane refused this agent ({first.status_code}): "
                    f"{_message_of(first.body)}"
                ) from None
            kept = group.split(
                (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError, ProtocolFault)
            )[1]
            if kept is not None:
                raise
            what = _describe(_first(group))
            if acked:
                return f"the channel to the control plane closed: {what}"
            raise _Failed(f"cannot reach the control plane: {what}") from None
        return "the control plane closed the channel"

    def _alias_of(self, link: _Link, ack: w.HelloAck) -> str | None:
        """The other URL by which the control plane that answered is reached already, if
        any (two channels of one agent to one control plane would replace each other)."""
        if ack.control_plane is None:
            return None
        for url, other in self._links.items():
            if (
                other is not link
                and other.send is not None
                and other.control_plane == ack.control_plane
            ):
                return url
        return None

    async def _hello(self, ws: WebSocketConnection) -> w.HelloAck:
        hello = w.Hello(
            instance=self._credential.instance,
            version=__version__,
            protocol=w.WIRE_VERSION,
            capabilities=CAPABILITIES,
            epoch=self.epoch,
        )
        await ws.send_message(w.encode_frame(hello))
        with trio.fail_after(HELLO_WAIT):
            answer = await ws.get_message()
        frame = _decode(answer)
        if not isinstance(frame, w.HelloAck):
            raise ProtocolFault(f"expected a hello_ack, got {w.FRAME_TAGS[type(frame)]}")
        return frame

    async def _serve(
        self, ws: WebSocketConnection, link: _Link, calls: trio.Nursery, *, silence: float
    ) -> None:
        """Serve an acked channel; a ProtocolFault once it stays ``silence`` s silent (the
        control plane pings every third of that)."""
        send, queue = trio.open_memory_channel[str](QUEUE)
        subscriptions: dict[int, trio.CancelScope] = {}
        code, reason = 1000, "the agent closed the channel"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_write, ws, queue)
                await nursery.start(self._updates, send.clone(), link)
                link.send = send
                self._say(
                    f"connected to the control plane {link.peer.url} "
                    f"as instance {self._credential.instance}"
                )
                while True:
                    with trio.move_on_after(silence) as silent:
                        text = await ws.get_message()
                    if silent.cancelled_caught:
                        raise ProtocolFault(f"no frame for {silence:g} s: the channel is dead")
                    try:
                        frame = _decode(text)
                        await self._on_frame(
                            frame,
                            link,
                            send=send,
                            nursery=nursery,
                            calls=calls,
                            subscriptions=subscriptions,
                        )
                    except ProtocolFault as fault:
                        code, reason = 1008, str(fault)[:120]  # the control plane logs why
                        raise
        finally:
            link.send = None
            with trio.move_on_after(CLOSE_WAIT, shield=True), contextlib.suppress(Exception):
                await ws.aclose(code, reason)

    async def _on_frame(
        self,
        frame: w.Frame,
        link: _Link,
        *,
        send: trio.MemorySendChannel[str],
        nursery: trio.Nursery,
        calls: trio.Nursery,
        subscriptions: dict[int, trio.CancelScope],
    ) -> None:
        if isinstance(frame, w.Call):
            await self._on_call(frame, link, send, calls)
        elif isinstance(frame, w.Ack):
            self._outbox.forget(frame.id)
        elif isinstance(frame, w.Ping):
            await send.send(w.encode_frame(w.Pong(frame.seq)))
        elif isinstance(frame, w.UploadChunk):
            await send.send(await self._uploads.take(frame))
        elif isinstance(frame, w.Subscribe):
            if frame.sub in subscriptions:
                raise ProtocolFault(f"subscription {frame.sub} is already open")
            scope = trio.CancelScope()
            subscriptions[frame.sub] = scope
            nursery.start_soon(self._subscription, frame, send.clone(), scope, subscriptions)
        elif isinstance(frame, w.Unsubscribe):
            ended = subscriptions.pop(frame.sub, None)
            if ended is not None:
                ended.cancel()
        elif isinstance(frame, w.ControlPlanes):
            self._learn(frame.control_planes, calls)
        else:
            raise ProtocolFault(f"an agent does not take {w.FRAME_TAGS[type(frame)]} frames")

    # -- calls ---------------------------------------------------------------------------

    async def _on_call(
        self, call: w.Call, link: _Link, send: trio.MemorySendChannel[str], calls: trio.Nursery
    ) -> None:
        kept = self._outbox.get(call.id)
        if kept is None:
            self._outbox.begin(call.id)
            self._running.add(call.id)
            calls.start_soon(self._carry_out, call, link)
        elif kept[0] == "done":
            assert kept[1] is not None
            await send.send(kept[1])  # a repeat: the kept Result, not a second run
        elif call.id not in self._running:
            # Begun by an earlier run of the agent, which stopped before it finished.
            result = w.encode_frame(
                w.Result(
                    call.id,
                    error=Error(
                        "unavailable",
                        "the agent stopped while carrying out this request: "
                        "its outcome is unknown, check before asking again",
                    ),
                )
            )
            self._outbox.finish(call.id, result)
            await send.send(result)
        # else: it is being carried out; its Result goes out when it is done.

    async def _carry_out(self, call: w.Call, link: _Link) -> None:
        try:
            # A deploy of an uploaded folder: unpacked here, then deployed as a folder; a
            # delete removes the service's uploaded folders too.
            reply = await self._uploads.carry_out(call.request, self._handle)
            result = w.Result(call.id, reply=codec.unstructure(reply))
        except Exception as exc:  # an Error, or the engine's: every one answers the Call
            result = w.Result(call.id, error=error_of(exc))
        try:
            text = w.encode_frame(result)
        except w.FrameTooLarge as error:
            text = w.encode_frame(w.Result(call.id, error=Error("unavailable", str(error))))
        self._outbox.finish(call.id, text)
        self._running.discard(call.id)
        send = link.send  # the channel to the control plane that asked, as it is now
        if send is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await send.send(text)
        # else: sent again when the control plane, back, repeats the Call.

    # -- updates -------------------------------------------------------------------------

    async def _updates(
        self,
        send: trio.MemorySendChannel[str],
        link: _Link,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        instance = self._instance
        dirty = trio.Event()

        async def watch(subscription: topics.Subscription[Any]) -> None:
            nonlocal dirty
            with subscription:
                async for _ in subscription:
                    dirty.set()

        async with send, trio.open_nursery() as nursery:
            nursery.start_soon(watch, instance.changes.subscribe())
            nursery.start_soon(watch, instance.metrics.samples.subscribe())
            sent: dict[str, ServiceInfo] = {}
            machine: InstanceSample | None = None
            for frame in self._update(sent, link, full=True):
                await send.send(frame)
            task_status.started()
            while True:
                await dirty.wait()
                await trio.sleep(SETTLE)
                dirty = trio.Event()
                if self._instance.metrics.latest_instance() is machine and not self._changed(sent):
                    continue
                machine = self._instance.metrics.latest_instance()
                for frame in self._update(sent, link, full=False):
                    await send.send(frame)

    def _changed(self, sent: dict[str, ServiceInfo]) -> bool:
        services = self._instance.services
        return set(services) != set(sent) or any(
            s.info() != sent.get(name) for name, s in services.items()
        )

    def _update(self, sent: dict[str, ServiceInfo], link: _Link, *, full: bool) -> list[str]:
        """The next Update frames (one, unless the services need more than a frame's
        room); ``sent`` (the services as last sent) is brought up to date."""
        now = {name: s.info() for name, s in sorted(self._instance.services.items())}
        if full:
            changed = tuple(now.values())
        else:
            changed = tuple(info for name, info in now.items() if sent.get(name) != info)
        removed = tuple(sorted(set(sent) - set(now)))
        sent.clear()
        sent.update(now)
        machine = self._instance.metrics.latest_instance()
        frames = w.encode_updates(
            w.Update(
                seq=link.seq + 1,
                epoch=self.epoch,
                full=full,
                generation=self._instance.generation,
                services=changed,
                removed=removed,
                machine=None if machine is None else codec.unstructure(machine),
                samples=tuple(self._handle.latest_samples()),
            )
        )
        link.seq += len(frames)
        return frames

    # -- subscriptions -------------------------------------------------------------------

    async def _subscription(
        self,
        frame: w.Subscribe,
        send: trio.MemorySendChannel[str],
        scope: trio.CancelScope,
        subscriptions: dict[int, trio.CancelScope],
    ) -> None:
        error: Error | None = None
        async with send:
            with scope:
                try:
                    if frame.kind == "logs":
                        await self._send_logs(frame, send)
                    else:
                        await self._send_feed(frame, send)
                except Error as refused:
                    error = refused
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # the channel is gone
            if subscriptions.pop(frame.sub, None) is not None:  # ended here, not unsubscribed
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await send.send(w.encode_frame(w.Ended(frame.sub, error)))

    async def _send_logs(self, frame: w.Subscribe, send: trio.MemorySendChannel[str]) -> None:
        if frame.service is None:
            raise Error("invalid", "a logs subscription names its service")
        streams = frozenset(frame.streams) if frame.streams is not None else None
        follow: AsyncGenerator[Any, None] = self._handle.follow_logs(
            frame.service, after=frame.after, tail=frame.tail, streams=streams
        )
        async with contextlib.aclosing(follow):
            async for entry in follow:
                if isinstance(entry, Gap):
                    await send.send(
                        w.encode_frame(
                            w.SubscriptionGap(frame.sub, entry.missed, entry.first, entry.last)
                        )
                    )
                    continue
                if isinstance(entry, tuple):  # live batches: encoded without a LogLine each
                    parts = [
                        part
                        for batch in entry
                        for part in codec.encode_log_batch(batch, w.ITEMS_CHARS)
                    ]
                else:
                    parts = codec.encode_log_lines(entry, w.ITEMS_CHARS)
                for text in w.log_items_frames(frame.sub, parts):
                    await send.send(text)
                if isinstance(entry, tuple):  # live: let the next lines gather
                    await trio.sleep(LOG_WINDOW)

    async def _send_feed(self, frame: w.Subscribe, send: trio.MemorySendChannel[str]) -> None:
        handle = self._handle
        feed: Feed[Any]
        if frame.kind == "changes":
            feed = handle.subscribe_changes()
        elif frame.kind == "metrics":
            feed = handle.subscribe_metrics()
        else:
            feed = handle.subscribe_supervision()
        with feed:
            async for entry in feed:
                if isinstance(entry, Gap):
                    message: w.Frame = w.SubscriptionGap(
                        frame.sub, entry.missed, entry.first, entry.last
                    )
                else:
                    message = w.Items(frame.sub, tuple(entry))
                await send.send(w.encode_frame(message))


async def _write(ws: WebSocketConnection, queue: trio.MemoryReceiveChannel[str]) -> None:
    async with queue:
        async for text in queue:
            await ws.send_message(text)


def _decode(text: str | bytes) -> w.Frame:
    try:
        return w.decode_frame(text)
    except Error as error:
        raise ProtocolFault(f"a malformed frame: {error.message}") from None


def _message_of(body: bytes | None) -> str:
    """The message of the control plane's error body, else the body's first line."""
    if not body:
        return "no reason given"
    try:
        data = json.loads(body)
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").splitlines()[0][:200]


def _first(error: BaseException) -> BaseException:
    """The first error of a (nested) exception group, or the error itself."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionTimeout):
        return "no answer to the WebSocket handshake in time"
    if isinstance(error, ConnectionClosed):
        return f"the channel closed ({error.reason})"
    if isinstance(error, trio.TooSlowError):
        return "the control plane did not answer in time"
    if isinstance(error, ProtocolFault):
        return str(error)
    if isinstance(error, HandshakeError) and error.__cause__ is not None:
        return _describe(error.__cause__)  # why the connection failed
    if isinstance(error, OSError):
        return reason(error)
    return str(error) or type(error).__name__


class _Refused(Exception):
    """The control plane refused the channel (a revoked or unknown credential)."""


class _Failed(Exception):
    """The channel could not be opened, or broke before its hello was acked."""
