"""The control plane's side of the agents' channels: :class:`AgentHub`.

The gateway's agent door (dployr/gateway/agents.py) hands the hub each accepted agent
WebSocket (:meth:`AgentHub.serve`); the hub checks the agent's hello, attaches the channel
to the instance's :class:`~dployr.cluster.remote.RemoteHandle` and serves it until it
ends: it routes the agent's frames (Results, Updates, subscription items) to the handle,
acks each Result, pings every :data:`~dployr.protocol.wire.HEARTBEAT` seconds, and closes
a channel that stays silent for :data:`~dployr.protocol.wire.AWAY_AFTER` seconds, whose
credential was revoked, or that sends a malformed frame (with a logged reason: the
control plane and the other channels go on). What it learns (last seen, version,
address, machine, the services) it records in the cluster state.

The router (dployr/cluster/router.py) reaches the connected instances through
:meth:`AgentHub.member` and :meth:`AgentHub.connected`, and waits on :attr:`AgentHub.changed`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time
from typing import Protocol

import trio

from dployr.cluster.remote import REQUEST_TIMEOUT, Outgoing, RemoteHandle
from dployr.errors import DployrError
from dployr.protocol import codec
from dployr.protocol import wire as w
from dployr.protocol.errors import Error
from dployr.protocol.feed import Gap
from dployr.store import codes as store_codes

log = logging.getLogger("dployr.cluster")

HELLO_WAIT = 10.0
"""Seconds an accepted agent has to say hello."""

CLOSE_POLICY = 1008
"""WebSocket close code: the agent broke the protocol (a malformed or unexpected frame)."""
CLOSE_REVOKED = 4403
"""WebSocket close code: the agent's credential is unknown or was revoked."""
CLOSE_AWAY = 4408
"""WebSocket close code: the agent stayed silent past the heartbeat's timeout."""
CLOSE_REPLACED = 4409
"""WebSocket close code: a newer channel of the same instance replaced this one."""


class AgentState(Protocol):
    """What the hub needs of the cluster state (``dployr.store.cluster.ClusterState``)."""

    async def redeem(self, token: str) -> tuple[str, str]:
        """(instance name, credential) for a join token, single use."""
        ...

    async def authenticate(self, credential: str) -> str | None:
        """The instance of a credential, or None (unknown or revoked)."""
        ...

    async def record_seen(
        self,
        name: str,
        *,
        address: str | None,
        version: str | None,
        machine: dict[str, object] | None,
        at: float,
    ) -> None:
        """When an instance was last seen, from where, running what."""
        ...

    async def record_snapshot(
        self, instance: str, services: list[dict[str, object]], at: float
    ) -> None:
        """An instance's services as last known."""
        ...


class _Closing(Exception):
    """Close the channel with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Session:
    """One served channel of one instance."""

    def __init__(self, name: str, address: str, hello: w.Hello) -> None:
        self.name = name
        self.address = address
        self.hello = hello
        self.outgoing = Outgoing()
        self.scope = trio.CancelScope()
        self.closing: _Closing | None = None
        self.last_frame = trio.current_time()

    def close(self, code: int, reason: str) -> None:
        """End the session from outside (a newer channel, a removed instance)."""
        if self.closing is None:
            self.closing = _Closing(code, reason)
        self.scope.cancel()


class AgentHub:
    """The connected agents, as RemoteHandles (see the module)."""

    def __init__(
        self,
        state: AgentState,
        *,
        heartbeat: float = w.HEARTBEAT,
        away_after: float = w.AWAY_AFTER,
        request_timeout: float = REQUEST_TIMEOUT,
        control_plane: str | None = None,
    ) -> None:
        self._state = state
        self.control_plane = control_plane or secrets.token_hex(8)
        """This control plane's id, new at each start unless given: in the hello_ack, and
        first in its Calls' ids (so that Calls of two control planes to one agent never
        share an id)."""
        self._control_planes: tuple[w.ControlPlane, ...] = ()
        """Every control plane of the cluster, as the agents are told (peers.py sets it)."""
        self.heartbeat = heartbeat
        self.away_after = away_after
        self.request_timeout = request_timeout
        self._handles: dict[str, RemoteHandle] = {}
        self._sessions: dict[str, _Session] = {}
        # Invariant: every name in `_sessions` has a handle in `_handles`, attached to that
        # session's queue; a handle without a session is away (its Calls wait).
        self.changed = trio.Event()
        """Set (and replaced by a fresh one) whenever an agent connects or disconnects."""

    # -- what the router sees ------------------------------------------------------------

    def member(self, name: str) -> RemoteHandle | None:
        """The connected instance ``name``, or None (away, or never joined)."""
        return self._handles.get(name) if name in self._sessions else None

    def connected(self) -> dict[str, RemoteHandle]:
        """Every connected instance, by name."""
        return {name: self._handles[name] for name in sorted(self._sessions)}

    def session_of(self, name: str) -> tuple[str, str, str] | None:
        """The connected instance's address, dployr version and boot epoch."""
        session = self._sessions.get(name)
        if session is None:
            return None
        return session.address, session.hello.version, session.hello.epoch

    def drop(self, name: str, reason: str) -> None:
        """Close the instance's channel now, keeping its handle: its Calls are sent again
        when the agent dials back (as after a broken connection)."""
        session = self._sessions.get(name)
        if session is not None:
            session.close(CLOSE_AWAY, reason)

    def disconnect(self, name: str, reason: str) -> None:
        """Close the instance's channel now and forget it (it was removed)."""
        session = self._sessions.get(name)
        if session is not None:
            session.close(CLOSE_REVOKED, reason)
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.close()

    @property
    def control_planes(self) -> tuple[w.ControlPlane, ...]:
        """Every control plane of the cluster, as the agents are told."""
        return self._control_planes

    def set_control_planes(self, planes: tuple[w.ControlPlane, ...]) -> None:
        """The control planes of the cluster changed: tell every connected agent."""
        if planes == self._control_planes:
            return
        self._control_planes = planes
        frame = w.encode_frame(w.ControlPlanes(planes))
        for session in self._sessions.values():
            session.outgoing.put(frame)

    def _changed(self) -> None:
        changed, self.changed = self.changed, trio.Event()
        changed.set()

    # -- the door ------------------------------------------------------------------------

    async def join(self, token: str, address: str) -> tuple[str, str]:
        """Redeem a join token: (instance name, credential); an ``invalid`` Error if the
        token is unknown, expired or spent (the door refuses any Error with 401)."""
        try:
            with store_codes.protocol_errors():  # an InvalidJoinToken is `invalid`
                name, credential = await self._state.redeem(token)
        except Error as error:
            log.info("a join from %s was refused: %s", address, error.message)
            raise
        log.info("instance %s joined from %s", name, address)
        return name, credential

    async def admit(self, credential: str) -> str | None:
        """The instance a credential belongs to, or None (unknown or revoked)."""
        return await self._state.authenticate(credential)

    async def serve(self, credential: str, channel: w.AgentChannel, address: str) -> None:
        """Serve one accepted agent channel until it ends (see the module)."""
        name = await self._state.authenticate(credential)
        if name is None:
            await channel.close(CLOSE_REVOKED, "unknown or revoked agent credential")
            return
        try:
            hello = await self._hello(channel, name)
        except _Closing as closing:
            log.warning("refused a channel of instance %s from %s: %s", name, address, closing)
            await channel.close(closing.code, closing.reason)
            return
        session = _Session(name, address, hello)
        old = self._sessions.get(name)
        if old is not None:
            old.close(CLOSE_REPLACED, "a newer channel of this instance replaced this one")
        handle = self._handle_of(name)
        await channel.send(w.encode_frame(self._ack(name)))
        self._sessions[name] = session
        handle.attach(session.outgoing, hello.capabilities)
        self._changed()
        log.info(
            "instance %s connected from %s (dployr %s, epoch %s)",
            name,
            address,
            hello.version,
            hello.epoch,
        )
        try:
            with session.scope:
                await self._record_seen(session, handle)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_write, channel, session.outgoing)
                    nursery.start_soon(self._heartbeat, session, credential)
                    await self._read(channel, session, handle)
                    nursery.cancel_scope.cancel()
        except* _Closing as group:  # from the reader or the heartbeat, in their nursery
            first = group.exceptions[0]
            assert isinstance(first, _Closing)
            session.closing = first
        finally:
            if self._sessions.get(name) is session:
                del self._sessions[name]
                handle.detach(session.outgoing)
                self._changed()
            session.outgoing.send.close()
            reason = session.closing
            with trio.CancelScope(shield=True):
                if reason is not None:
                    log.warning("closed the channel of instance %s: %s", name, reason.reason)
                    with trio.move_on_after(2), contextlib.suppress(Exception):
                        await channel.close(reason.code, reason.reason)
                else:
                    log.info("instance %s disconnected", name)
                with trio.move_on_after(5), contextlib.suppress(DployrError, OSError):
                    await self._record_seen(session, handle)

    def _handle_of(self, name: str) -> RemoteHandle:
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = RemoteHandle(
                name, timeout=self.request_timeout, call_prefix=f"{self.control_plane}-"
            )
        return handle

    def _ack(self, name: str) -> w.HelloAck:
        """The hello_ack: with every control plane, so that the agent dials each."""
        return w.HelloAck(
            name, w.WIRE_VERSION, self.heartbeat, self.control_plane, self._control_planes
        )

    async def _hello(self, channel: w.AgentChannel, name: str) -> w.Hello:
        with trio.move_on_after(HELLO_WAIT):
            text = await channel.receive()
            try:
                frame = w.decode_frame(text)
            except Error as error:
                raise _Closing(CLOSE_POLICY, f"a malformed hello: {error.message}") from None
            if not isinstance(frame, w.Hello):
                raise _Closing(CLOSE_POLICY, f"expected a hello, got {w.FRAME_TAGS[type(frame)]}")
            try:
                w.check_hello(frame)
            except Error as error:
                raise _Closing(CLOSE_POLICY, error.message) from None
            if frame.instance != name:
                raise _Closing(
                    CLOSE_POLICY,
                    f"the hello names instance {frame.instance!r}, the credential {name!r}",
                )
            return frame
        raise _Closing(CLOSE_POLICY, f"no hello within {HELLO_WAIT:g} s")

    async def _read(self, channel: w.AgentChannel, session: _Session, handle: RemoteHandle) -> None:
        while True:
            text = await channel.receive()
            session.last_frame = trio.current_time()
            try:
                frame = w.decode_frame(text)
            except Error as error:
                raise _Closing(CLOSE_POLICY, f"a malformed frame: {error.message}") from None
            if isinstance(frame, w.Result):
                handle.on_result(frame)
                session.outgoing.put(w.encode_frame(w.Ack(frame.id)))
            elif isinstance(frame, w.Update):
                if not handle.on_update(frame):
                    log.info(
                        "instance %s: update %d does not follow the last", session.name, frame.seq
                    )
                await self._record_seen(session, handle)
                if frame.full or frame.services or frame.removed:  # not for samples alone
                    await self._state.record_snapshot(
                        session.name, [codec.unstructure(s) for s in handle.services()], time.time()
                    )
            elif isinstance(frame, w.Items):
                handle.on_items(frame.sub, frame.items)
            elif isinstance(frame, w.SubscriptionGap):
                handle.on_items(frame.sub, Gap(frame.missed, frame.first, frame.last))
            elif isinstance(frame, w.Ended):
                handle.on_ended(frame)
            elif isinstance(frame, w.Pong):
                pass
            elif isinstance(frame, w.UploadAck):
                handle.uploads.on_ack(frame)
            else:
                raise _Closing(
                    CLOSE_POLICY,
                    f"a control plane does not take {w.FRAME_TAGS[type(frame)]} frames",
                )

    async def _heartbeat(self, session: _Session, credential: str) -> None:
        for seq in itertools.count(1):
            await trio.sleep(self.heartbeat)
            silent = trio.current_time() - session.last_frame
            if silent > self.away_after:
                raise _Closing(CLOSE_AWAY, f"no frame for {silent:.0f} s: away")
            if await self._state.authenticate(credential) != session.name:
                raise _Closing(CLOSE_REVOKED, "the agent's credential was revoked")
            session.outgoing.put(w.encode_frame(w.Ping(seq)))

    async def _record_seen(self, session: _Session, handle: RemoteHandle) -> None:
        machine = handle.latest_machine()
        await self._state.record_seen(
            session.name,
            address=session.address,
            version=session.hello.version,
            machine=None if machine is None else codec.unstructure(machine),
            at=time.time(),
        )


async def _write(channel: w.AgentChannel, outgoing: Outgoing) -> None:
    async with outgoing.receive:
        async for text in outgoing.receive:
            await channel.send(text)
