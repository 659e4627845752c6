"""The control plane's cluster state as one API, and where it is opened from.

:class:`ClusterState` is what the rest of dployr uses (the agents' hub, the cluster router,
the daemon); :func:`open_cluster_state` picks its backend: SQLite (``cluster.db`` in the
data dir) by default, for one control plane, or PostgreSQL, which several control planes
may share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn, Protocol

import trio

from dployr.store.cluster.notices import Changes
from dployr.store.cluster.records import ControlPlaneRecord, InstanceRecord, JoinToken
from dployr.store.cluster.sqlite import CLUSTER_DB_FILE_NAME, SqliteClusterState


class ClusterState(Protocol):
    """The control plane's own state: instances, join tokens, agent credentials, placement
    and the last-known services of each instance.

    Every method is one transaction: it does all it was asked or, raising a
    :class:`~dployr.errors.DployrError`, nothing. ``local`` (the control plane's own
    instance) is always taken, never listed by :meth:`instances`, and may hold placements.
    """

    async def add_instance(self, name: str, *, ttl: float = 3600.0) -> JoinToken:
        """Create the instance and its join token (single use, valid ``ttl`` seconds);
        InstanceExists if the name is taken."""
        ...

    async def redeem(self, token: str) -> tuple[str, str]:
        """Use a join token: (instance name, a new credential); InvalidJoinToken."""
        ...

    async def authenticate(self, credential: str) -> str | None:
        """The instance a credential is of, or None: unknown or revoked."""
        ...

    async def remove_instance(self, name: str) -> None:
        """Remove an instance, revoking its credential at once; UnknownInstance."""
        ...

    async def instances(self) -> list[InstanceRecord]:
        """Every instance added, by name."""
        ...

    async def record_seen(
        self,
        name: str,
        *,
        address: str | None,
        version: str | None,
        machine: Mapping[str, object] | None,
        at: float,
    ) -> None:
        """Record that an instance's agent was heard from; UnknownInstance."""
        ...

    async def placement(self) -> dict[str, str]:
        """service → instance."""
        ...

    async def place(self, service: str, instance: str) -> None:
        """Place a service on ``local`` or a known instance; UnknownInstance."""
        ...

    async def unplace(self, service: str) -> None:
        """Forget a service's placement."""
        ...

    async def record_snapshot(
        self, instance: str, services: list[dict[str, object]], at: float
    ) -> None:
        """Keep the last-known services of an instance (codec JSON)."""
        ...

    async def snapshots(self) -> dict[str, tuple[float, list[dict[str, object]]]]:
        """instance → (when, its last-known services)."""
        ...

    async def announce(self, control_plane: str, url: str) -> None:
        """Record a running control plane and the URL agents reach it at."""
        ...

    async def record_alive(self, control_plane: str, url: str) -> None:
        """Refresh a control plane's last seen (recorded again if it was pruned)."""
        ...

    async def leave(self, control_plane: str) -> None:
        """Forget a control plane that stops."""
        ...

    async def record_leader(self, control_plane: str) -> None:
        """Record that a control plane leads from now on."""
        ...

    async def control_planes(self, *, within: float) -> list[ControlPlaneRecord]:
        """The control planes seen within the last ``within`` seconds, oldest first."""
        ...

    async def prune_control_planes(self, *, after: float) -> int:
        """Forget the control planes not seen for ``after`` seconds; how many."""
        ...

    async def lead(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Lead the control planes sharing this state; run until cancelled.

        ``task_status.started()`` once this control plane is the leader (with SQLite, at
        once; with PostgreSQL, when no other one is). Raises LeadershipLost if it stops
        being the leader. Use it through :func:`~dployr.store.cluster.leader.while_leader`,
        or ``await nursery.start(state.lead)``.
        """
        ...

    def notifications(self) -> contextlib.AbstractAsyncContextManager[Changes]:
        """What changed, as an async iterator of sets of names (``instances``,
        ``placement``, ``snapshots``, ``control_planes``) valid inside ``async with``;
        with PostgreSQL from every control plane on the database, with SQLite from this
        object."""
        ...

    async def aclose(self) -> None:
        """Close the state; closing twice is harmless."""
        ...


def open_cluster_state(url: str | None, data_dir: Path) -> ClusterState:
    """Open the cluster state: in PostgreSQL at ``url`` (``postgresql://...``), or, with
    ``url`` None, in SQLite: ``cluster.db`` in ``data_dir``.

    PostgreSQL is connected to (up to 10 s) and migrated before this returns: call it before
    serving, or through ``trio.to_thread.run_sync``. Raises a
    :class:`~dployr.store.errors.StoreError` whose message is one line a user can act on (a
    URL dployr cannot use, a database it cannot reach or open), never with the URL's password.
    """
    if url is None:
        return SqliteClusterState.open(Path(data_dir) / CLUSTER_DB_FILE_NAME)
    from dployr.store.cluster.postgres import PostgresClusterState  # loads psycopg

    return PostgresClusterState.open(url)
