"""A service's state and the few rules every job of it shares.

:class:`ServiceCore` holds what a service is while the daemon runs (its record, status,
health, tree, releases, the deploy in progress) and the moves every layer above makes on
it: advance the status, set the health, make a process's environment. The layers above
it add one job each: :mod:`.events` (supervision events to status events), :mod:`.tree`
(its supervision tree), :mod:`.readiness`, :mod:`.rolling` (roll-outs), :mod:`.reads` and
:mod:`.commands`. It reaches its instance only through :class:`.port.InstancePort`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from dployr.engine import podman
from dployr.engine import status as st
from dployr.engine.health import HealthState, Watchdog
from dployr.engine.release import ReleaseSpec, Running, process_env
from dployr.engine.service.port import InstancePort
from dployr.engine.webhooks import webhook_body
from dployr.logs.book import LogBook
from dployr.models import (
    Deployment,
    DeploymentStatus,
    Health,
    RestartPolicy,
    ServiceSettings,
    ServiceStatus,
)
from dployr.store.errors import UnknownService
from dployr.store.records import ServiceRecord
from dployr.supervision import Restart, Supervisor

if TYPE_CHECKING:
    from dployr.engine.deploy import DeployRun
    from dployr.engine.jobs import JobRunner
    from dployr.engine.proxy import Proxy


@attrs.define
class LiveRelease:
    """What the service knows of one release child while it exists."""

    spec: ReleaseSpec
    deployment: Deployment
    pid: int | None = None
    exited: str | None = None
    """Why its process last exited, if it did."""
    process_started: float | None = None
    """Wall-clock start of its process, while one runs."""
    failure: str | None = None
    """Why it was last restarted (a crash, or its health check): the reason a give-up gives."""
    restart: Restart = Restart.PERMANENT
    """Its process child's restart type, from the restart policy it was started with."""
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    """The restart policy it was started with."""
    watchdog: Watchdog | None = None
    health: HealthState = attrs.field(factory=HealthState)
    started_at: float | None = None
    """trio time of its process's last start."""
    crashes: int = 0
    """How often its process has exited on its own (a crash, or any exit not asked for)."""
    last_crash: str = ""
    """Why it did, the last time (kept across restarts, unlike ``exited``)."""
    gave_up: bool = False
    """Its supervisor gave up: the restart budget is spent."""
    changed: trio.Event = attrs.field(factory=trio.Event)
    """Set (and replaced) at every change: started, exited, health."""

    def touch(self) -> None:
        """Wake whoever waits for a change of this release (the readiness wait)."""
        self.changed.set()
        self.changed = trio.Event()


class ServiceCore:
    """A service of an instance: its state; the layers above add what it does."""

    def __init__(self, instance: InstancePort, record: ServiceRecord) -> None:
        self.instance = instance
        self.name = record.name
        self.config = instance.config
        self.store = instance.store
        self.dir = instance.config.data_dir / "services" / record.name
        self.book = LogBook(
            self.dir / "logs", max_bytes=instance.config.log_bytes, disk=instance.store.reserve
        )
        self.created_at = record.created_at
        self.state = st.ServiceState(
            status=ServiceStatus.STOPPED,
            since=time.time(),
            active_deployment=record.active_deployment,
        )
        self.health = Health.UNKNOWN
        self.lock = trio.Lock()
        # Invariant: `tree` is the running service supervisor, or None when the service is
        # down; `releases` holds every release child of the tree; `current` names the one
        # that is the service's (running, restarting or failed); `proxy` is the running
        # proxy child, or `listener` the socket handed to releases, if the service has a port.
        self.tree: Supervisor | None = None
        self.proxy: Proxy | None = None
        self.listener: socket.socket | None = None
        self.releases: dict[str, LiveRelease] = {}
        self.current: str | None = None
        self.deploy: DeployRun | None = None
        self._generation = 0
        self.last_deploy_at: float | None = None
        """When the last deploy started: kept in memory, read from the store at start."""
        self._cached: ServiceRecord | None = record
        self.last_deploy_at = self._last_deploy_at()  # survives a daemon restart
        self._stopping = False
        """A stop or delete is under way: a failed roll-out starts nothing again."""
        self.job: JobRunner | None = None
        """A scheduled job's scheduler and runs (dployr/engine/jobs), once it is one."""

    def _last_deploy_at(self) -> float | None:
        """From the store, for a daemon that starts: when the active deployment was made, or
        else the latest one (every deployment has finished by then)."""
        record = self._record()
        if record.active_deployment is not None:
            active = self.store.get_deployment(self.name, record.active_deployment)
            if active is not None:
                return active.created_at
        for deployment in self.store.deployments(self.name, limit=1):
            return deployment.created_at
        return None

    def shown(self) -> tuple[object, ...]:
        """The values the service's info is made of.

        Each is frozen (or compared by identity) and replaced, never changed in place, at
        every change: a reader that keeps the info it built from them (the list of
        services) knows it is stale when they differ, with no change to tell by hand.
        """
        live = self.releases.get(self.current) if self.current else None
        return (
            self._cached,
            self.state,
            self.health,
            self.deploy,
            self.last_deploy_at,
            live.deployment if live is not None else None,
        )

    def serving(self) -> bool:
        """Whether a release of this service is running (or restarting) now."""
        return self.state.run_status in (ServiceStatus.RUNNING, ServiceStatus.RESTARTING)

    def live_pgids(self) -> list[int]:
        """The process groups of the service's live releases and job runs (for metrics)."""
        runs = self.job.pids() if self.job is not None else []
        pgids = [r.pid for r in self.releases.values() if r.pid is not None] + runs
        for live in self.releases.values():  # a container's own groups (engine/podman.py)
            if live.pid is not None and live.deployment.image is not None:
                pgids += podman.container_groups(podman.pidfile(self.dir, live.spec.child_id))
        return pgids

    def environment(self) -> dict[str, str]:
        """The service's variables, secrets decrypted: for a process environment only."""
        return {var.key: var.value for var in self.store.env(self.name)}

    def _record(self) -> ServiceRecord:
        # Kept in memory: every change of it goes through this object, which keeps the
        # record the store returns (reads then cost no query: a list of 100 services is
        # asked for often).
        if self._cached is None:
            record = self.store.get_service(self.name)
            if record is None:  # deleted underneath us
                raise UnknownService(f"no service named {self.name!r}")
            self._cached = record
        return self._cached

    def release_dir(self, deployment: int) -> Path:
        """Where a deployment's release folder is (or was)."""
        return self.dir / "releases" / str(deployment)

    @property
    def data_dir(self) -> Path:
        """The service's own persistent files, outside its releases: kept across deploys,
        rollbacks and restarts, and by a plain ``delete``."""
        return self.dir / "data"

    def process_env(
        self, deployment: int, port: int | None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The whole environment of a process of this service (a release or a build).

        ``extra`` are the variables a deploy in progress brings (they win). ``DPLOYR_INSTANCE``
        marks it as this instance's, so a daemon started after a crash can tell its
        leftovers from unrelated processes that reuse their pids. ``DPLOYR_DATA_DIR`` is
        the data folder, made here if it is missing (one mkdir).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = process_env(
            self.name,
            deployment,
            port,
            {**self.environment(), **(extra or {})},
            passed=self.config.pass_env,
        )
        env["DPLOYR_INSTANCE"] = self.instance.id
        env["DPLOYR_DATA_DIR"] = str(self.data_dir)
        return env

    @property
    def instance_id(self) -> str:
        """The instance's id: every process of the service carries it."""
        return self.instance.id

    def deployment_changed(self, deployment: int, status: DeploymentStatus) -> None:
        """Publish a deployment's new status."""
        self.instance.deployment_changed(self.name, deployment, status)

    def process_started(self, running: Running) -> None:
        """Record a process group (release or build) before anything else can happen."""
        self.instance.record_process(self.name, running)

    def process_ended(self, pid: int) -> None:
        """The process group is gone."""
        self.instance.forget_process(pid)

    def run_as(self, settings: ServiceSettings) -> None:
        """The next processes of the service run as the user ``settings`` names (if any)."""
        if self.instance.users is not None:
            self.instance.users.choose(self.name, settings.user)

    def _advance(self, event: st.StatusEvent) -> None:
        before = self.state
        self.state = st.advance(self.state, event, time.time())
        if self.state.status is not before.status:
            self.instance.status_changed(self.name, self.state.status, before.status)

    def _set_health(self, health: Health, message: str) -> None:
        if health is self.health:
            return
        previous, self.health = self.health, health
        self.instance.health_changed(self.name, health, previous, message)
        live = self.releases.get(self.current) if self.current else None
        webhook = live.deployment.settings.health.webhook if live is not None else None
        if webhook is not None:
            body = webhook_body(self.name, self.instance.name, health, message)
            self.instance.send_webhook(self.name, webhook, body)
