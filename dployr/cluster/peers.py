"""This control plane among the others sharing the cluster state: :class:`Peers`.

Several ``dployr up`` may share one PostgreSQL database (``--database``). Each serves the
whole API, because every agent keeps a channel to each of them; for that, each control
plane records itself in the shared state (an id new at each start, the URL agents reach it
at, when it was last alive), and tells its agents every control plane's URL (through the
:class:`~dployr.cluster.hub.AgentHub`: in the hello_ack, then in a ``control_planes``
frame whenever the list changes, learnt from the state's change notices).

One of them, the leader (``ClusterState.lead``: an advisory lock), runs the cluster's
background work: it records itself as the leader, and forgets the control planes that
stopped saying they are alive (killed: a control plane that stops normally forgets itself).
Killing the leader lets another lead within a second or so; nothing an agent runs is
touched by it.

Any control plane answers :meth:`Peers.listing` (``GET /api/v1/control-planes``,
``dployr control-planes``): every control plane the cluster has, which one leads, and
which one answered. All of them answer it from the shared state, so each names the same
leader.

With SQLite (one control plane) the same runs: it always leads, and lists itself alone.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import trio

from dployr.cluster.hub import AgentHub
from dployr.errors import DployrError
from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.store.cluster import CONTROL_PLANES, ClusterState, while_leader

log = logging.getLogger("dployr.cluster")

ALIVE_EVERY = 5.0
"""Seconds between a control plane's records that it is alive."""
FORGET_AFTER = 30.0
"""Seconds after its last record of being alive when a control plane is taken for gone:
no longer told to agents, and forgotten by the leader."""


WILDCARDS = frozenset({"0.0.0.0", "::", ""})
"""Hosts that mean "every address": no agent can dial them."""


def default_url(url: str, host: str, port: int, hostname: str) -> str:
    """The URL a control plane serving at ``url`` (on ``host``:``port``) is told to agents
    at when ``--advertise`` is not given: ``url`` itself, unless it listens on every
    address (``0.0.0.0``): then this machine's ``hostname``."""
    if host not in WILDCARDS:
        return url
    scheme = url.partition("://")[0]
    return f"{scheme}://{hostname}:{port}"


class Peers:
    """Records this control plane, follows the others, and does the leader's work when it
    leads (see the module)."""

    def __init__(
        self,
        state: ClusterState,
        hub: AgentHub,
        url: str,
        *,
        alive_every: float = ALIVE_EVERY,
        forget_after: float = FORGET_AFTER,
    ) -> None:
        self._state = state
        self._hub = hub
        self.id = hub.control_plane
        """This control plane's id (the hub's: its Calls' ids start with it)."""
        self.url = url
        """Where agents and the other control planes reach this one."""
        self._say: Callable[[str], None] = log.info
        self._alive_every = alive_every
        self._forget_after = forget_after
        self.leading = False
        """Whether this control plane leads the cluster now."""
        self._started_at = time.time()

    def tell(self, say: Callable[[str], None]) -> None:
        """From now on, tell ``say`` (a line) whenever this control plane starts leading;
        at once if it leads now."""
        self._say = say
        if self.leading:
            say(self._leads())

    def _leads(self) -> str:
        return f"this control plane ({self.id}, {self.url}) leads the cluster"

    async def listing(self) -> tuple[m.ControlPlaneView, ...]:
        """Every control plane seen within :data:`FORGET_AFTER`, oldest first, as the shared
        state records them: which one leads, and this one marked ``is_self``.

        Whether one leads is what the state says (the leader records itself as it starts
        leading, clearing the others), so every control plane names the same leader. A
        leader killed stays listed, no longer said alive, until the next leader forgets it.
        """
        records = await self._state.control_planes(within=self._forget_after)
        views = tuple(
            m.ControlPlaneView(
                id=r.id,
                url=r.url,
                started_at=r.started_at,
                last_seen=r.last_seen,
                leads=r.leader_since is not None,
                leader_since=r.leader_since,
                is_self=r.id == self.id,
            )
            for r in records
        )
        if all(not view.is_self for view in views):  # pruned meanwhile: still here
            me = m.ControlPlaneView(
                self.id, self.url, self._started_at, time.time(), self.leading, is_self=True
            )
            views += (me,)
        return views

    async def run(
        self, ctx: object = None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Record this control plane, keep the hub's list of control planes current, and
        lead whenever this control plane is the leader; forget it when cancelled."""
        await self._state.announce(self.id, self.url)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._follow)
                nursery.start_soon(self._alive)
                nursery.start_soon(while_leader, self._state, self._lead)
                task_status.started()
        finally:
            with trio.move_on_after(5, shield=True), contextlib.suppress(DployrError):
                await self._state.leave(self.id)

    async def _follow(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Tell the hub every control plane: now, and whenever they change."""
        async with self._state.notifications() as changes:
            await self._tell_hub()
            task_status.started()
            async for parts in changes:
                if CONTROL_PLANES in parts:
                    await self._tell_hub()

    async def _tell_hub(self) -> None:
        try:
            records = await self._state.control_planes(within=self._forget_after)
        except DployrError as error:  # the database is away: the agents keep what they have
            log.warning("could not read the control planes: %s", error)
            return
        planes = tuple(w.ControlPlane(r.id, r.url) for r in records)
        if all(plane.id != self.id for plane in planes):  # pruned meanwhile: still here
            planes += (w.ControlPlane(self.id, self.url),)
        self._hub.set_control_planes(planes)

    async def _alive(self) -> None:
        while True:
            await trio.sleep(self._alive_every)
            try:
                await self._state.record_alive(self.id, self.url)
            except DployrError as error:  # the database is away: the others may forget it
                log.warning("could not record that this control plane is alive: %s", error)

    async def _lead(self) -> None:
        """The leader's background work, while this control plane leads."""
        try:
            await self._state.record_leader(self.id)
            self.leading = True  # with the line below, at once: `tell` says it once
            self._say(self._leads())
            while True:
                forgotten = await self._state.prune_control_planes(after=self._forget_after)
                if forgotten:
                    log.info("forgot %d silent control plane(s)", forgotten)
                await trio.sleep(self._alive_every)
        finally:
            self.leading = False
