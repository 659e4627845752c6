"""Errors of the service engine, each with a message a user can act on."""

from __future__ import annotations

from dployr.errors import DployrError
from dployr.store.errors import UnknownService

__all__ = ["Conflict", "DeployFailed", "DeployInProgress", "NotDeployed", "UnknownService"]


class Conflict(DployrError):
    """The request cannot be done in the service's current state."""


class DeployInProgress(Conflict):
    """A deploy of the service is already running (one at a time per service)."""


class NotDeployed(Conflict):
    """The service has no successful deployment to start."""


class DeployFailed(DployrError):
    """A step of a deploy failed; the message says which and why."""

    def __init__(
        self, message: str, *, exit_code: int | None = None, output_tail: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output_tail = output_tail
