"""The values the store returns besides the shared domain values of :mod:`dployr.models`."""

from __future__ import annotations

import attrs

from dployr.models import DesiredState, ServiceSettings
from dployr.tokens import AuditRecord, Scope, TokenRecord

__all__ = ["AuditRecord", "ProcessRecord", "Scope", "ServiceRecord", "TokenRecord"]


@attrs.frozen
class ServiceRecord:
    """A service as stored: its settings and what the user last asked of it."""

    name: str
    settings: ServiceSettings
    """The settings the next deploy uses."""
    desired: DesiredState
    """Whether the service should be running; written before the daemon acts on it."""
    active_deployment: int | None
    """The deployment whose release should run, or None before the first good deploy."""
    created_at: float
    """Wall-clock seconds (Unix time)."""
    updated_at: float
    """When its settings, desired state, active deployment or environment last changed."""


@attrs.frozen
class ProcessRecord:
    """A process group the daemon started, kept so that a restarted daemon can find it.

    ``token`` is a random value the daemon also put in the process's environment, so that a
    pid reused by an unrelated process is not mistaken for a leftover.
    """

    service: str
    deployment_id: int
    pid: int
    pgid: int
    started_at: float
    """Wall-clock seconds (Unix time)."""
    token: str
