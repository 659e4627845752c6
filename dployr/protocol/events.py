"""What an instance tells its subscribers: changes of its services, and supervision reports.

Every change is published on the instance's changes topic and sent on the ``/api/v1/events``
feed; the CLI and the dashboard follow them (``dployr deploy`` waits for the
:class:`DeploymentChanged` of its deployment).
"""

from __future__ import annotations

import attrs

from dployr.models import DeploymentStatus, Health, ServiceStatus


@attrs.frozen
class StatusChanged:
    """A service's status changed."""

    service: str
    instance: str
    status: ServiceStatus
    previous: ServiceStatus
    at: float


@attrs.frozen
class DeploymentChanged:
    """A deployment moved to another status."""

    service: str
    instance: str
    deployment: int
    status: DeploymentStatus
    at: float


@attrs.frozen
class HealthChanged:
    """A service's health changed."""

    service: str
    instance: str
    health: Health
    previous: Health
    message: str
    at: float


@attrs.frozen
class DiskChanged:
    """The data dir's disk became full, or has room again (see dployr/store/reserve.py)."""

    instance: str
    full: bool
    at: float


Change = StatusChanged | DeploymentChanged | HealthChanged | DiskChanged
"""What the instance's changes topic carries."""


@attrs.frozen
class SupervisionReport:
    """One report of the instance's supervision tree (OTP-style), as the feeds show it."""

    kind: str
    """``child_started``, ``child_terminated``, ``child_restarting``, ..."""
    supervisor: str
    """The supervisor's path, ``/``-joined: ``local/web``."""
    child: str
    incarnation: int
    message: str
    """The report in words: "web exited with code 1", ..."""
