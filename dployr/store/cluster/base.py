"""What both backends of the cluster state share: the API, over two transaction runners.

A backend gives :class:`ClusterStateBase` a clock and two ways to run a body of
:mod:`~dployr.store.cluster.tables` in one transaction (``_read``, ``_write``); a write names
what it changed (:data:`INSTANCES`, :data:`PLACEMENT`, :data:`SNAPSHOTS`), so that the
backend can tell other control planes.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Final, NoReturn, TypeVar

import trio

from dployr.store.cluster import tables
from dployr.store.cluster.notices import Changes
from dployr.store.cluster.records import ControlPlaneRecord, InstanceRecord, JoinToken
from dployr.store.cluster.tables import Tx

T = TypeVar("T")

INSTANCES: Final = "instances"
"""A change of the instances: added, joined, seen or removed."""
PLACEMENT: Final = "placement"
"""A change of which instance a service belongs to."""
SNAPSHOTS: Final = "snapshots"
"""A change of an instance's last-known services."""
CONTROL_PLANES: Final = "control_planes"
"""A control plane started, stopped, was pruned, or became the leader."""
CHANGES: Final = (INSTANCES, PLACEMENT, SNAPSHOTS, CONTROL_PLANES)


class ClusterStateBase(abc.ABC):
    """The :class:`~dployr.store.cluster.state.ClusterState` API over a backend's
    transactions."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    async def add_instance(self, name: str, *, ttl: float = 3600.0) -> JoinToken:
        """Create the instance ``name`` and its join token, valid ``ttl`` seconds, used once.

        Raises InstanceExists if the name is taken (``local`` always is).
        """
        return await self._write(
            partial(tables.add_instance, name=name, ttl=ttl, now=self._clock()), INSTANCES
        )

    async def redeem(self, token: str) -> tuple[str, str]:
        """Use a join token: its instance's name and a new credential (shown once).

        Raises InvalidJoinToken for a token that is unknown, already used or expired.
        """
        return await self._write(partial(tables.redeem, token=token, now=self._clock()), INSTANCES)

    async def authenticate(self, credential: str) -> str | None:
        """The name of the instance whose credential this is, or None (unknown, revoked)."""
        return await self._read(partial(tables.authenticate, credential=credential))

    async def remove_instance(self, name: str) -> None:
        """Remove an instance: its credential stops working at once; UnknownInstance."""
        await self._write(
            partial(tables.remove_instance, name=name), INSTANCES, PLACEMENT, SNAPSHOTS
        )

    async def instances(self) -> list[InstanceRecord]:
        """Every instance added (not ``local``), by name."""
        return await self._read(tables.instances)

    async def record_seen(
        self,
        name: str,
        *,
        address: str | None,
        version: str | None,
        machine: Mapping[str, object] | None,
        at: float,
    ) -> None:
        """Record that the agent of ``name`` was heard from at ``at``; UnknownInstance."""
        await self._write(
            partial(
                tables.record_seen,
                name=name,
                address=address,
                version=version,
                machine=machine,
                at=at,
            ),
            INSTANCES,
        )

    async def placement(self) -> dict[str, str]:
        """Which instance each placed service belongs to (service → instance)."""
        return await self._read(tables.placement)

    async def place(self, service: str, instance: str) -> None:
        """Place ``service`` on ``instance`` (``local`` or a known one; UnknownInstance)."""
        await self._write(partial(tables.place, service=service, instance=instance), PLACEMENT)

    async def unplace(self, service: str) -> None:
        """Forget the placement of ``service`` (harmless if it has none)."""
        await self._write(partial(tables.unplace, service=service), PLACEMENT)

    async def record_snapshot(
        self, instance: str, services: list[dict[str, object]], at: float
    ) -> None:
        """Keep ``services`` as the last-known services of ``instance``, unless a newer
        snapshot is already kept."""
        await self._write(
            partial(tables.record_snapshot, instance=instance, services=services, at=at),
            SNAPSHOTS,
        )

    async def snapshots(self) -> dict[str, tuple[float, list[dict[str, object]]]]:
        """The last-known services of every instance that sent some: instance → (at, list)."""
        return await self._read(tables.snapshots)

    async def announce(self, control_plane: str, url: str) -> None:
        """Record that the control plane ``control_plane`` runs and is reached at ``url``."""
        await self._write(
            partial(tables.announce, control_plane=control_plane, url=url, now=self._clock()),
            CONTROL_PLANES,
        )

    async def record_alive(self, control_plane: str, url: str) -> None:
        """Record that the control plane is still running (recorded again if it was pruned
        meanwhile). Tells the others only if it was."""
        refreshed = await self._write(
            partial(tables.record_alive, control_plane=control_plane, now=self._clock())
        )
        if not refreshed:
            await self.announce(control_plane, url)

    async def leave(self, control_plane: str) -> None:
        """Forget the control plane (it stops)."""
        await self._write(partial(tables.leave, control_plane=control_plane), CONTROL_PLANES)

    async def record_leader(self, control_plane: str) -> None:
        """Record that ``control_plane`` leads the cluster from now on."""
        await self._write(
            partial(tables.record_leader, control_plane=control_plane, now=self._clock()),
            CONTROL_PLANES,
        )

    async def control_planes(self, *, within: float) -> list[ControlPlaneRecord]:
        """The control planes seen within the last ``within`` seconds, oldest first."""
        return await self._read(partial(tables.control_planes, since=self._clock() - within))

    async def prune_control_planes(self, *, after: float) -> int:
        """Forget the control planes not seen for ``after`` seconds; how many."""
        before = self._clock() - after
        stale = await self._read(partial(tables.control_planes_before, before=before))
        if not stale:  # nothing to write, nothing to tell
            return 0
        return await self._write(
            partial(tables.prune_control_planes, before=before), CONTROL_PLANES
        )

    @abc.abstractmethod
    async def lead(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Lead the control planes sharing this state; run until cancelled (see the
        ClusterState protocol)."""

    @abc.abstractmethod
    def notifications(self) -> contextlib.AbstractAsyncContextManager[Changes]:
        """What changed (see the ClusterState protocol)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the state; closing twice is harmless."""

    @abc.abstractmethod
    async def _write(self, body: Callable[[Tx], T], *changed: str) -> T:
        """Run ``body`` in a write transaction that changes what ``changed`` names."""

    @abc.abstractmethod
    async def _read(self, body: Callable[[Tx], T]) -> T:
        """Run ``body`` in a read transaction."""
