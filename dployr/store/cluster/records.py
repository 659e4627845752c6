"""The values the cluster state returns: instances as recorded, and join tokens."""

from __future__ import annotations

import attrs


@attrs.frozen
class InstanceRecord:
    """An instance (a machine running ``dployr agent``) as the control plane knows it."""

    name: str
    created_at: float
    """When ``dployr instances add`` created it (Unix time)."""
    joined_at: float | None
    """When its join token was redeemed, or None until then."""
    address: str | None
    """The agent's peer address as last seen."""
    version: str | None
    """The agent's dployr version as last seen."""
    last_seen: float | None
    """When the control plane last heard from the agent (Unix time)."""
    machine: dict[str, object] | None
    """The last sample of the agent's machine (cpu, memory, disk), as JSON values."""


@attrs.frozen
class JoinToken:
    """What ``dployr instances add`` answers: the token an agent joins with, once."""

    instance: str
    token: str = attrs.field(repr=False)
    """The secret, shown once: only its SHA-256 digest is stored."""
    expires_at: float
    """When it stops working, if not used before (Unix time)."""


@attrs.frozen
class ControlPlaneRecord:
    """A control plane (``dployr up``) sharing the cluster state, as it recorded itself."""

    id: str
    """Its id, new at each start."""
    url: str
    """Where agents and the other control planes reach it (``dployr up --advertise``)."""
    started_at: float
    last_seen: float
    """When it last said it was alive (Unix time)."""
    leader_since: float | None
    """Since when it leads the cluster, or None (it does not, as far as it recorded)."""
