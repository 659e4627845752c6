"""Supervision events of a service's tree, translated into status events and log lines.

Each event of a release child (its process started, exited, is restarting; its supervisor
gave up; its health check ended it) updates what the service knows of that release, then
advances the service's status (see :mod:`dployr.engine.status`, the pure machine) and only
then writes a system line: what the service shows never depends on its log.
"""

from __future__ import annotations

import trio

from dployr.engine import restarts
from dployr.engine import status as st
from dployr.engine.health import HealthRestart, Verdict
from dployr.engine.release import Running
from dployr.engine.service.core import LiveRelease, ServiceCore
from dployr.models import Health
from dployr.supervision import (
    ChildRestarting,
    ChildStarted,
    ChildTerminated,
    ExitReason,
    MaxIntensityReached,
    Shutdown,
    SupervisionEvent,
)


class TreeEvents:
    """The event sink of a service's tree: status, system log lines, then the instance."""

    def __init__(self, service: ServiceEvents) -> None:
        self._service = service

    def publish(self, event: SupervisionEvent, /) -> None:
        self._service._on_event(event)


class ServiceEvents(ServiceCore):
    """What a service makes of the events of its tree."""

    def _on_event(self, event: SupervisionEvent) -> None:
        path = event.supervisor
        child_id = path[-1] if path else ""
        live = self.releases.get(child_id)
        if live is not None:
            self._on_release_event(live, child_id, event)
        self.instance.supervision_event(event)

    def _on_health(self, live: LiveRelease, verdict: Verdict) -> None:
        live.health = verdict.state
        live.touch()
        if not verdict.changed or self.current != live.spec.child_id:
            return
        state = verdict.state
        text = f"health: {state.health.value}"
        if state.health is Health.DEGRADED:
            text += f" after {state.failures} failed checks ({state.message})"
        elif state.message:
            text += f" ({state.message})"
        self.book.system(text, deployment=live.spec.deployment)
        self._set_health(state.health, state.message)

    def _on_health_restart(self, live: LiveRelease, reason: ExitReason) -> None:
        """The release's health check ended it: its process is restarted with it."""
        error = getattr(reason, "exception", None)
        text = str(error) if isinstance(error, HealthRestart) else reason.describe()
        live.failure = text
        self._advance(st.ReleaseExited(live.spec.child_id, False, text))
        self.book.system(f"restarting: {text}", deployment=live.spec.deployment)

    def _on_process_exit(self, live: LiveRelease, reason: ExitReason) -> None:
        """The release's process exited by itself: restarted, or not by its restart policy."""
        child_id = live.spec.child_id
        text = reason.describe()
        live.pid, live.started_at, live.process_started, live.exited = None, None, None, text
        live.crashes += 1
        live.last_crash = text
        live.touch()
        done = restarts.not_restarted(live.restart, reason)
        if done is None:
            live.failure = text
            self._advance(st.ReleaseExited(child_id, False, text))
            self.book.system(text, deployment=live.spec.deployment)
            return
        if live.watchdog is not None:
            live.watchdog.retire()
        self._advance(st.ReleaseDone(child_id, not reason.abnormal, done))
        if self.current == child_id:
            self._set_health(Health.UNKNOWN, done)
        self.book.system(done, deployment=live.spec.deployment)

    def _on_release_event(self, live: LiveRelease, child_id: str, event: SupervisionEvent) -> None:
        # The status advances first, then the log line is written: what the service shows
        # never depends on its log (a full disk drops the line, never the status change).
        book = self.book
        deployment = live.spec.deployment
        if event.child.id == "health":
            if isinstance(event, ChildTerminated) and event.reason.abnormal:
                self._on_health_restart(live, event.reason)
            if not isinstance(event, ChildRestarting | MaxIntensityReached):
                return
        match event:
            case ChildStarted(value=Running(pid=pid, started_at=started_at)):
                live.pid, live.exited, live.process_started = pid, None, started_at
                live.started_at = trio.current_time()
                live.touch()
                uptime = live.policy.min_uptime
                waits = f"started again (pid {pid}): running once up {uptime:g} s"
                self._advance(st.ReleaseStarted(child_id, pid, started_at, waits))
                book.system(f"release {child_id} started (pid {pid})", deployment=deployment)
            case ChildTerminated(reason=Shutdown()):
                live.pid = live.started_at = live.process_started = None
                live.touch()
                self._advance(st.ReleaseExited(child_id, True, "stopped"))
                book.system(f"release {child_id} stopped", deployment=deployment)
            case ChildTerminated(reason=reason):
                self._on_process_exit(live, reason)
            case ChildRestarting(delay=delay):
                text = "restarting now" if delay <= 0 else f"restarting in {delay:g} s"
                self._advance(st.ReleaseRestarting(child_id, text))
                book.system(text, deployment=deployment)
            case MaxIntensityReached():
                last = f" (last: {live.failure})" if live.failure else ""
                text = f"{event.describe()}{last}"
                live.exited = text
                live.gave_up = True
                live.touch()
                self._advance(st.ReleaseGaveUp(child_id, text))
                if self.current == child_id:
                    self._set_health(Health.UNKNOWN, text)
                book.system(text, deployment=deployment)

    def _settled(self, live: LiveRelease, running: Running) -> None:
        """A process has stayed up its min_uptime: a restarted one counts as running again."""
        after = f"restarted after: {live.failure}" if live.failure else ""
        self._advance(st.ReleaseSettled(live.spec.child_id, running.pid, after))
