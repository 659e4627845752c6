"""Supervision events, after OTP's supervisor reports.

Every supervisor publishes these on its events topic: a child started, a child
terminated (with its reason), a restart scheduled (with its delay), a start error, a
shutdown error, and the supervisor giving up because its restart intensity was exceeded.
Each names the supervisor's path in the tree and the offending child, so the service layer
can derive statuses from them and users can read them.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from dployr.supervision.policy import Restart
from dployr.supervision.reasons import ExitReason

Path = tuple[str, ...]


def _seconds(value: float) -> str:
    return f"{value:g} s"


@attrs.frozen
class Offender:
    """The child an event is about: its id, restart type, shutdown and incarnation."""

    id: str
    restart: Restart
    shutdown: float | None
    """Seconds of grace when stopped; ``None`` means a brutal kill."""
    incarnation: int
    """1 for the first start, 2 after the first restart, and so on."""


@attrs.frozen
class ChildStarted:
    """``child_started``: the child called ``task_status.started()``."""

    supervisor: Path
    child: Offender
    at: float
    value: object = attrs.field(default=None, eq=False)
    """What the child passed to ``started()`` (a process actor passes its pid)."""
    kind = "child_started"

    def describe(self) -> str:
        """A one-line description for logs."""
        return f"{self.child.id} started"


@attrs.frozen
class ChildTerminated:
    """``child_terminated``: the child exited, for ``reason``."""

    supervisor: Path
    child: Offender
    reason: ExitReason
    at: float
    kind = "child_terminated"

    def describe(self) -> str:
        """A one-line description for logs: "worker exited with code 1"."""
        return f"{self.child.id} {self.reason.describe()}"


@attrs.frozen
class ChildRestarting:
    """A restart of the child is scheduled after ``delay`` seconds."""

    supervisor: Path
    child: Offender
    delay: float
    restarts: int
    """Restarts counted in the supervisor's intensity window, this one included."""
    at: float
    kind = "child_restarting"

    def describe(self) -> str:
        """A one-line description for logs: "restarting worker in 2 s"."""
        if self.delay <= 0:
            return f"restarting {self.child.id} now"
        return f"restarting {self.child.id} in {_seconds(self.delay)}"


@attrs.frozen
class StartFailed:
    """``start_error``: the child raised or returned before calling ``started()``."""

    supervisor: Path
    child: Offender
    reason: ExitReason
    at: float
    kind = "start_error"

    def describe(self) -> str:
        """A one-line description for logs."""
        return f"{self.child.id} failed to start: {self.reason.describe()}"


@attrs.frozen
class ShutdownFailed:
    """``shutdown_error``: the child did not stop within its grace, or crashed stopping."""

    supervisor: Path
    child: Offender
    reason: ExitReason
    at: float
    kind = "shutdown_error"

    def describe(self) -> str:
        """A one-line description for logs."""
        return f"{self.child.id} did not stop cleanly: {self.reason.describe()}"


@attrs.frozen
class MaxIntensityReached:
    """``max_intensity_reached``: the supervisor gave up and is stopping its children."""

    supervisor: Path
    child: Offender
    restarts: int
    period: float
    at: float
    kind = "max_intensity_reached"

    def describe(self) -> str:
        """A one-line description for logs: "gave up after 5 restarts in 60 s"."""
        return f"gave up after {self.restarts} restarts in {_seconds(self.period)}"


class EventSink(Protocol):
    """Where a supervisor publishes its events: a Topic, or anything with ``publish``."""

    def publish(self, item: SupervisionEvent, /) -> None:
        """Take one event; must not wait."""


SupervisionEvent = (
    ChildStarted
    | ChildTerminated
    | ChildRestarting
    | StartFailed
    | ShutdownFailed
    | MaxIntensityReached
)
