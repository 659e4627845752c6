"""A service's status, derived from what its actors report. Pure: no trio import.

The service layer turns supervision events of the service's tree (a release's process
started, exited, is restarting; its supervisor gave up) and the deploy's own milestones
into the small events below, and folds them with :func:`advance`. Status is one of exactly
five words: ``deploying``, ``running``, ``stopped``, ``failed``, ``restarting``.

"The current release" is the release whose process is the service's: the one the last
switch, start or restart promoted. Events about any other
release (the old one stopping after a switch, a candidate that never became ready) do not
change the status.
"""

from __future__ import annotations

import attrs

from dployr.models import ServiceStatus


@attrs.frozen
class ServiceState:
    """What a service is doing, as users see it."""

    status: ServiceStatus
    since: float
    """Wall-clock time of the last status change."""
    active_deployment: int | None = None
    deploying: int | None = None
    """The deployment in progress, if any."""
    release: str | None = None
    """The release (its child id, ``release-7.1``) whose process is the service's current one."""
    pid: int | None = None
    restarts: int = 0
    """Restarts since the last start, restart or deploy."""
    message: str = ""
    """The last thing worth saying: "exited with code 1", "gave up after …"."""


@attrs.frozen
class DeployBegan:
    """A deploy started."""

    deployment: int


@attrs.frozen
class DeployEnded:
    """A deploy ended; when it succeeded, ``deployment`` is now the active one."""

    deployment: int
    succeeded: bool
    message: str = ""


@attrs.frozen
class ReleaseStarted:
    """A release's process started (first start or restart)."""

    release: str
    pid: int


@attrs.frozen
class ReleaseExited:
    """A release's process exited; ``expected`` when it was stopped on purpose."""

    release: str
    expected: bool
    message: str


@attrs.frozen
class ReleaseRestarting:
    """A release's process will be started again after a delay."""

    release: str
    message: str


@attrs.frozen
class ReleaseGaveUp:
    """A release exceeded its restart budget and was stopped for good."""

    release: str
    message: str


@attrs.frozen
class Promoted:
    """A release became the service's current one (a switch, a start or a restart)."""

    release: str
    pid: int | None


@attrs.frozen
class Started:
    """A user started (or restarted) the service: its restart count starts over."""


@attrs.frozen
class Stopped:
    """The service was stopped on purpose: nothing runs."""


StatusEvent = (
    DeployBegan
    | DeployEnded
    | ReleaseStarted
    | ReleaseExited
    | ReleaseRestarting
    | ReleaseGaveUp
    | Promoted
    | Started
    | Stopped
)

_S = ServiceStatus


def advance(state: ServiceState, event: StatusEvent, now: float) -> ServiceState:
    """The state after ``event``, observed at wall-clock time ``now``."""
    new = _advance(state, event)
    if new.status is not state.status:
        new = attrs.evolve(new, since=now)
    return new


def _advance(state: ServiceState, event: StatusEvent) -> ServiceState:
    evolve = attrs.evolve
    match event:
        case DeployBegan(deployment):
            idle = state.pid is None and state.status is not _S.RESTARTING
            return evolve(
                state,
                deploying=deployment,
                status=_S.DEPLOYING if idle else state.status,
                message="",
            )
        case DeployEnded(deployment, succeeded, message):
            state = evolve(state, deploying=None, message=message)
            if succeeded:
                return evolve(state, active_deployment=deployment)
            if state.status is _S.DEPLOYING:
                # Nothing was running before this deploy, and nothing runs now.
                return evolve(state, status=_S.FAILED)
            return state
        case ReleaseStarted(deployment, pid):
            if deployment != state.release:
                return state
            return evolve(state, status=_S.RUNNING, pid=pid)
        case Promoted(deployment, pid):
            status = _S.RUNNING if pid is not None else state.status
            return evolve(state, release=deployment, pid=pid, status=status, restarts=0)
        case ReleaseExited(deployment, expected, message):
            if deployment != state.release:
                return state
            if expected:
                return evolve(state, pid=None)
            return evolve(state, pid=None, status=_S.RESTARTING, message=message)
        case ReleaseRestarting(deployment, message):
            if deployment != state.release:
                return state
            return evolve(state, status=_S.RESTARTING, restarts=state.restarts + 1, message=message)
        case ReleaseGaveUp(deployment, message):
            if deployment != state.release:
                return state
            return evolve(state, status=_S.FAILED, pid=None, release=None, message=message)
        case Started():
            return evolve(state, restarts=0, message="")
        case Stopped():
            return evolve(state, status=_S.STOPPED, pid=None, release=None, message="")
    raise AssertionError(f"unknown status event {event!r}")  # pragma: no cover
