"""API tokens and the audit log as values: what a token may do, and who asked what.

Pure values: the store keeps them, the gateway checks requests against them (through the
small ``Tokens`` protocol of dployr/gateway/access.py, which the daemon wires to the store).
"""

from __future__ import annotations

import enum

import attrs


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
