"""A service's status, derived from what its actors report. Pure: no trio import.

The service layer turns supervision events of the service's tree (a release's process
started, exited, is restarting; its supervisor gave up) and the deploy's own milestones
into the small events below, and folds them with :func:`advance`. Status is one of exactly
five words, and says what the service is doing now:

* ``deploying`` while a deploy (or rollback) of the service is in progress, whatever runs
  meanwhile (an older release may keep serving: ``process`` says how it fares);
* otherwise what its current release's process does: ``running``; ``restarting`` during a
  restart (a crash's, a health check's or a user's, zero-downtime or not), from the exit
  until the new process has stayed up for the restart policy's ``min_uptime``, so a crash
  loop shows ``restarting`` for its whole backoff and never ``running`` in between;
  ``stopped`` (stopped on purpose, or a clean exit the restart policy does not restart);
  ``failed`` (it gave up, or a crash the policy does not restart).

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
    """What is shown: ``deploying`` during a deploy, else ``process``."""
    since: float
    """Wall-clock time of the last status change; while ``running``, the current process's
    start (a restart, with or without downtime, moves it)."""
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
    process: ServiceStatus | None = None
    """What the current release does, deploy or not (``running``, ``restarting``, ``stopped``
    or ``failed``); None means the same as ``status``."""
    started_at: float | None = None
    """Wall-clock start of the current process, if one runs."""

    @property
    def run_status(self) -> ServiceStatus:
        """The status without the deploy in progress: what the current release does."""
        return self.process if self.process is not None else self.status


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
    at: float = 0.0
    """Its wall-clock start."""
    message: str = ""
    """What a restarted process waits for before it counts as running."""


@attrs.frozen
class ReleaseSettled:
    """A release's process has stayed up for the restart policy's ``min_uptime``."""

    release: str
    pid: int
    message: str = ""
    """What it came back from: "restarted after: exited with code 1"."""


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
class ReleaseDone:
    """A release's process exited and its restart policy does not start it again."""

    release: str
    clean: bool
    """It exited with code 0: the service is ``stopped``, else ``failed``."""
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
    at: float | None = None
    """Its process's wall-clock start."""


@attrs.frozen
class Started:
    """A user started (or restarted) the service: its restart count starts over."""


@attrs.frozen
class RestartBegan:
    """A user's restart began: the service is ``restarting`` until a release is promoted."""


@attrs.frozen
class RestartFailed:
    """A user's restart ended without a new release; the old process, if any, runs on."""

    message: str


@attrs.frozen
class Failed:
    """The service could not be brought up (its tree died, or it could not start)."""

    message: str


@attrs.frozen
class Stopped:
    """The service was stopped on purpose: nothing runs."""


StatusEvent = (
    DeployBegan
    | DeployEnded
    | ReleaseStarted
    | ReleaseSettled
    | ReleaseExited
    | ReleaseRestarting
    | ReleaseDone
    | ReleaseGaveUp
    | Promoted
    | Started
    | RestartBegan
    | RestartFailed
    | Failed
    | Stopped
)

_S = ServiceStatus


def advance(state: ServiceState, event: StatusEvent, now: float) -> ServiceState:
    """The state after ``event``, observed at wall-clock time ``now``."""
    new = _advance(attrs.evolve(state, process=state.run_status), event)
    status = _S.DEPLOYING if new.deploying is not None else new.run_status
    new = attrs.evolve(new, status=status)
    if status is _S.RUNNING and new.started_at is not None:
        return attrs.evolve(new, since=new.started_at)
    if status is not state.status:
        return attrs.evolve(new, since=now)
    return new


def _advance(state: ServiceState, event: StatusEvent) -> ServiceState:
    evolve = attrs.evolve
    match event:
        case DeployBegan(deployment):
            return evolve(state, deploying=deployment, message="")
        case DeployEnded(deployment, succeeded, message):
            state = evolve(state, deploying=None, message=message)
            if succeeded:
                return evolve(state, active_deployment=deployment)
            if state.process is _S.STOPPED and state.pid is None:
                # Nothing was running before this deploy, and nothing runs now.
                return evolve(state, process=_S.FAILED)
            return state
        case ReleaseStarted(release, pid, at, message):
            if release != state.release:
                return state
            # A restarted process counts as running once it has stayed up (ReleaseSettled).
            state = evolve(state, pid=pid, started_at=at)
            if state.process is _S.RESTARTING and message:
                return evolve(state, message=message)
            return state
        case ReleaseSettled(release, pid, message):
            if release != state.release or pid != state.pid:
                return state
            if state.process is not _S.RESTARTING:
                return state
            return evolve(state, process=_S.RUNNING, message=message or state.message)
        case Promoted(release, pid, at):
            if pid is None:  # promoted while its process is between two starts
                return evolve(
                    state,
                    release=release,
                    pid=None,
                    started_at=None,
                    process=_S.RESTARTING,
                    restarts=0,
                )
            return evolve(
                state, release=release, pid=pid, started_at=at, process=_S.RUNNING, restarts=0
            )
        case ReleaseExited(release, expected, message):
            if release != state.release:
                return state
            state = evolve(state, pid=None, started_at=None)
            if expected:  # stopped on purpose: a restart or a stop-first roll-out says more
                running = state.process is _S.RUNNING
                return evolve(state, process=_S.STOPPED) if running else state
            return evolve(state, process=_S.RESTARTING, message=message)
        case ReleaseRestarting(release, message):
            if release != state.release:
                return state
            return evolve(
                state, process=_S.RESTARTING, restarts=state.restarts + 1, message=message
            )
        case ReleaseDone(release, clean, message):
            if release != state.release:
                return state
            process = _S.STOPPED if clean else _S.FAILED
            return evolve(state, process=process, pid=None, started_at=None, message=message)
        case ReleaseGaveUp(release, message):
            if release != state.release:
                return state
            return evolve(
                state, process=_S.FAILED, pid=None, started_at=None, release=None, message=message
            )
        case Started():
            return evolve(state, restarts=0, message="")
        case RestartBegan():
            return evolve(state, process=_S.RESTARTING, message="restarting")
        case RestartFailed(message):
            process = _S.RUNNING if state.pid is not None else _S.FAILED
            return evolve(state, process=process, message=message)
        case Failed(message):
            return evolve(
                state, process=_S.FAILED, pid=None, started_at=None, release=None, message=message
            )
        case Stopped():
            return evolve(
                state, process=_S.STOPPED, pid=None, started_at=None, release=None, message=""
            )
    raise AssertionError(f"unknown status event {event!r}")  # pragma: no cover
