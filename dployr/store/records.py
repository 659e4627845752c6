"""The values the store returns besides the shared domain values of :mod:`dployr.models`."""

from __future__ import annotations

import enum

import attrs

from dployr.models import DesiredState, ServiceSettings


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


class Scope(enum.Enum):
    """What an API token may do (see docs/security.md for the whole table)."""

    READ = "read"
    """Read status, logs, metrics, settings and the (masked) environment; change nothing."""
    DEPLOY = "deploy"
    """Also deploy, start, stop, restart, roll back, change settings and the environment."""
    ADMIN = "admin"
    """Everything, including deleting services, managing tokens and reading the audit log."""


@attrs.frozen
class TokenRecord:
    """An API token as listed: its name and rights; the token itself is never stored."""

    name: str
    created_at: float
    """Wall-clock seconds (Unix time)."""
    scope: Scope = Scope.ADMIN
    service: str | None = None
    """The one service the token may act on, or None for every service."""
    expires_at: float | None = None
    """When the token stops working (Unix time), or None for never."""
    last_used_at: float | None = None
    """When the token last authenticated a request (to the minute), or None."""


@attrs.frozen
class AuditRecord:
    """One change asked of the API: who asked, what, and what was answered."""

    id: int
    at: float
    """Wall-clock seconds (Unix time)."""
    token: str | None
    """The name of the token (or of the dashboard session's token) that asked."""
    method: str
    path: str
    service: str | None
    """The service the request named, if any."""
    status: int
    """The HTTP status of the answer."""
