"""One service on an instance: its supervision tree, its log book, its status and health.

While a service is up, its tree is a child of the instance supervisor::

    service "my-api" supervisor (one_for_one; a temporary child of the instance)
    ├─ proxy            the public port -> the current release's private port (if a port)
    ├─ release-7.1      a supervisor (one_for_all): ``process`` (restarted as the service's
    │                   restart policy says, with its backoff) and, with a health check,
    │                   ``health`` (Watchdog)
    └─ deploy-8         the builder of a deploy in progress (temporary)

Each release has a supervisor of its own, whose restart intensity is the service's restart
budget (``max_restarts`` in ``window`` of its restart policy, see :mod:`dployr.engine.restarts`):
a release that crash-loops, or fails its health check again and again, exhausts only its own
budget, its supervisor gives up (the service becomes ``failed``), and nothing else notices,
neither another service nor the previous release that a failing deploy must leave serving.
The policy a release gets is the deploy's own for a deploy, and the stored settings' for a
start, a restart, a rollback and the recovery at daemon start.

Every change of the running release takes one path, :meth:`Service.roll_out`: the new
release starts beside the current one on its own private port, new connections go to it
only once it is ready (its health check passes, or without one its port accepts), the old
release drains (connections in flight finish, up to its stop grace) and stops. A deploy,
a rollback and a restart of a service with a port take this path with its readiness
check; a start, a hard restart and the recovery at daemon start (with nothing else
serving) switch without waiting.

The :class:`Service` object is not an actor with a mailbox: commands on one service are
serialised by a lock, and reads (status, logs, settings) never wait behind a 10-second stop.
Every task it causes lives in its supervision tree.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from dployr.engine import launcher, podman, ports, restarts, users
from dployr.engine import status as st
from dployr.engine.deploy import DeployRun
from dployr.engine.errors import Conflict, DeployFailed, DeployInProgress, NotDeployed
from dployr.engine.health import Check, HealthRestart, HealthState, Verdict, Watchdog
from dployr.engine.messages import EnvListing, ServiceInfo, SettingsChange, SettingsView
from dployr.engine.proxy import PortInUse, Proxy
from dployr.engine.release import Release, ReleaseSpec, Running, process_env
from dployr.engine.sources import HIDDEN_PASSWORD, Credential, hide_password, take_password
from dployr.errors import ActorDead, StartError
from dployr.logs.book import LogBook
from dployr.models import (
    Deployment,
    DeploymentStatus,
    DesiredState,
    Health,
    HealthKind,
    InvalidSetting,
    RestartMode,
    RestartPolicy,
    RolloutMode,
    ServiceSettings,
    ServiceStatus,
)
from dployr.store.errors import DiskFull, UnknownService
from dployr.store.records import ServiceRecord
from dployr.supervision import (
    INFINITY,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildTerminated,
    ExitReason,
    MaxIntensityReached,
    Restart,
    Shutdown,
    Strategy,
    SupervisionEvent,
    Supervisor,
)

if TYPE_CHECKING:
    from dployr.engine.instance import Instance

APPLIES_LATER = "at the next start, restart or deploy"
APPLIES_NOW = "now: the service was restarted"
_CLEARABLE = frozenset({"port", "build_cmd", "health_check", "user"})
READY_POLL_FIRST = 0.01
READY_POLL_MAX = 0.2


class _TreeEvents:
    """The event sink of a service's tree: status, system log lines, then the instance."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def publish(self, event: SupervisionEvent, /) -> None:
        self._service._on_event(event)


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
        self.changed.set()
        self.changed = trio.Event()


class Service:
    """A service of an instance; the instance creates one per stored service."""

    def __init__(self, instance: Instance, record: ServiceRecord) -> None:
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

    # -- reads -----------------------------------------------------------------------------

    def info(self) -> ServiceInfo:
        """What the service is and does now."""
        record = self._record()
        state = self.state
        running = self.releases.get(self.current) if self.current else None
        settings = running.deployment.settings if running else record.settings
        return ServiceInfo(
            name=self.name,
            instance=self.instance.name,
            status=state.status,
            health=self.health,
            pid=state.pid,
            port=settings.port,
            restarts=state.restarts,
            deployment=record.active_deployment,
            description=record.settings.description,
            deploying=self.deploy.id if self.deploy is not None else None,
            since=state.since,
            message=state.message,
            created_at=self.created_at,
            last_deploy_at=self.last_deploy_at,
        )

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

    def settings_view(self) -> SettingsView:
        """The stored settings, the active ones, and which fields wait for the next deploy."""
        record = self._record()
        active = self._active_settings()
        pending: tuple[str, ...] = ()
        if active is not None:
            pending = tuple(
                f.name
                for f in attrs.fields(ServiceSettings)
                if getattr(record.settings, f.name) != getattr(active, f.name)
            )
        live = self.releases.get(self.current) if self.current else None
        if live is not None:  # the restart policy applies at every start, not only a deploy
            others = tuple(name for name in pending if name != "restart")
            changed = record.settings.restart != live.policy
            pending = (*others, "restart") if changed else others
        return SettingsView(self.name, record.settings, active, pending, str(self.data_dir))

    def env_listing(self, applies: str = APPLIES_LATER) -> EnvListing:
        """The environment with secrets masked."""
        return EnvListing(self.name, tuple(self.store.env_listing(self.name)), applies)

    def environment(self) -> dict[str, str]:
        """The service's variables, secrets decrypted: for a process environment only."""
        return {var.key: var.value for var in self.store.env(self.name)}

    def serving(self) -> bool:
        """Whether a release of this service is running (or restarting) now."""
        return self.state.run_status in (ServiceStatus.RUNNING, ServiceStatus.RESTARTING)

    def live_pgids(self) -> list[int]:
        """The process groups of the service's live releases (for metrics)."""
        pgids = [r.pid for r in self.releases.values() if r.pid is not None]
        for live in self.releases.values():  # a container's own groups (engine/podman.py)
            if live.pid is not None and live.deployment.image is not None:
                pgids += podman.container_groups(podman.pidfile(self.dir, live.spec.child_id))
        return pgids

    def _record(self) -> ServiceRecord:
        # Kept in memory: every change of it goes through this object, which keeps the
        # record the store returns (reads then cost no query: a list of 100 services is
        # asked for often).
        if self._cached is None:
            self.instance.touch()
            record = self.store.get_service(self.name)
            if record is None:  # deleted underneath us
                raise UnknownService(f"no service named {self.name!r}")
            self._cached = record
        return self._cached

    def _active_settings(self) -> ServiceSettings | None:
        active = self.state.active_deployment
        if active is None:
            return None
        deployment = self.store.get_deployment(self.name, active)
        return deployment.settings if deployment is not None else None

    def _active_deployment(self) -> Deployment:
        record = self._record()
        if record.active_deployment is None:
            raise NotDeployed(f"{self.name} has no successful deployment yet: deploy it first")
        deployment = self.store.get_deployment(self.name, record.active_deployment)
        if deployment is None:
            raise NotDeployed(f"{self.name}'s active deployment is missing: deploy again")
        return deployment

    # -- commands --------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self.deploy is not None:
            started = time.strftime("%H:%M:%S", time.localtime(self.deploy.started_at))
            raise DeployInProgress(
                f"{self.deploy.prefix} of {self.name} is already running "
                f"(started at {started}); wait for it to finish"
            )

    async def deploy_now(
        self,
        settings: ServiceSettings | None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        credential: Credential | None = None,
    ) -> Deployment:
        """Start a deploy in the service's tree and return its record at once.

        The settings and variables given are the deploy's own: they are saved as the
        service's only if it succeeds. So is ``credential``, the password of the remote.
        """
        self._check_idle()  # at once: the lock may be held by a deploy's readiness wait
        async with self.lock:
            self._check_idle()
            record = self._record()
            self.instance.touch()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            deployment = self.store.create_deployment(
                self.name, settings or record.settings, env=env, secrets=secrets
            )
            await self._begin(DeployRun(self, deployment, credential))
            self.last_deploy_at = deployment.created_at
            self.instance.touch()
            return deployment

    async def rollback(self, deployment_id: int | None) -> Deployment:
        """Go back to a kept release without rebuilding (default: the one that ran before).

        The rollback is a deployment of its own, in the history like any deploy.
        """
        self._check_idle()
        async with self.lock:
            self._check_idle()
            target = self._rollback_target(deployment_id)
            self.instance.touch()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            deployment = self.store.create_deployment(
                self.name, target.settings, rollback_of=target
            )
            await self._begin(DeployRun(self, deployment))
            return deployment

    def _rollback_target(self, deployment_id: int | None) -> Deployment:
        active = self._record().active_deployment
        succeeded = [
            d
            for d in self.store.deployments(self.name, limit=1000)
            if d.status is DeploymentStatus.SUCCEEDED
        ]
        kept = {d.id: d for d in succeeded if self.release_dir(d.folder).is_dir()}
        current = next((d for d in succeeded if d.id == active), None)
        if deployment_id is None:
            # Undo: the release that ran before the current one, the newest success
            # before it that runs another folder.
            before = [
                d
                for d in succeeded
                if (active is None or d.id < active)
                and (current is None or d.folder != current.folder)
            ]
            if not before:
                raise Conflict(f"{self.name} has no earlier successful release to roll back to")
            target = before[0]
            if target.id not in kept:
                raise Conflict(
                    f"the release that ran before the current one (deployment {target.id} "
                    f"of {self.name}) is no longer kept: roll back to a kept one by its number"
                )
            return target
        if deployment_id == active:
            raise Conflict(f"deployment {deployment_id} is already the active one")
        wanted = kept.get(deployment_id)
        if wanted is not None and current is not None and wanted.folder == current.folder:
            raise Conflict(
                f"deployment {deployment_id}'s release is the one running now "
                f"(deployment {active} runs it)"
            )
        if deployment_id not in kept:
            raise Conflict(
                f"deployment {deployment_id} of {self.name} is not a kept successful release"
            )
        return kept[deployment_id]

    async def _begin(self, run: DeployRun) -> None:
        tree = await self._ensure_tree()
        self.deploy = run
        self._advance(st.DeployBegan(run.id))
        # Not "deploy 7: ..." like its steps: a client following the steps need not show it.
        back = f": back to deployment {run.deployment.rollback_of}" if run.rollback else ""
        self.book.system(f"{run.prefix} started{back}", deployment=run.id)
        await tree.start_child(ChildSpec(f"deploy-{run.id}", run.run, restart=Restart.TEMPORARY))

    async def start(self) -> ServiceInfo:
        """Start the active deployment if the service is stopped or failed."""
        async with self.lock:
            deployment = self._active_deployment()
            self.instance.touch()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            if not self.serving() or self.current is None:
                self._advance(st.Started())
                await self.roll_out(deployment, gate=False)
            return self.info()

    async def stop(self) -> ServiceInfo:
        """Stop everything of the service; it stays stopped until started.

        A deploy in progress is cancelled first (recorded as failed), even while it waits
        for its new release, so a stop never waits for a deploy to end.
        """
        async with self._stopping_deploy(), self.lock:
            self.instance.touch()
            recorded = ""
            try:
                self._cached = self.store.set_desired(self.name, DesiredState.STOPPED)
            except DiskFull:
                # A stop frees what the service holds: it must work on a full disk too.
                recorded = (
                    " (not recorded: the disk is full, so a daemon started again before"
                    " the next stop or start would run it again)"
                )
            await self._take_down()
            self.book.system(f"stopped{recorded}")
            return self.info()

    async def restart(self, *, hard: bool = False) -> ServiceInfo:
        """Run the current deployment again, with the current environment.

        A service with a port takes the zero-downtime path (the new process starts beside
        the old one, which drains and stops once the new one is ready), so a restart drops
        no request; ``hard`` (and a worker without a port) stops, then starts.
        """
        self._check_idle()
        async with self.lock:
            self._check_idle()
            deployment = self._active_deployment()
            self.instance.touch()
            self._cached = self.store.set_desired(self.name, DesiredState.RUNNING)
            self._advance(st.Started())
            running = self.serving() and self.current is not None
            self._advance(st.RestartBegan())
            if running and not hard and deployment.settings.port is not None:
                self.book.system("restarting without downtime")
                try:
                    await self.roll_out(deployment, gate=True)
                except DeployFailed as failure:
                    message = f"restart failed: {failure} (the old process still runs)"
                    self.book.system(message)
                    self._advance(st.RestartFailed(message))
                    raise Conflict(f"restart of {self.name} failed: {failure}") from None
            else:
                self.book.system("restarting")
                if self.current is not None:
                    await self.stop_release(self.current)
                try:
                    await self.roll_out(deployment, gate=False)
                except Exception as error:
                    self._advance(st.RestartFailed(f"restart failed: {error}"))
                    raise
            return self.info()

    async def update_settings(self, change: SettingsChange) -> SettingsView:
        """Store changed settings for the next deploy; nothing running is touched.

        Refused while a deploy runs: that deploy's settings are saved when it succeeds, and
        a change made meanwhile would be lost or mixed with them.
        """
        self._check_idle()
        async with self.lock:
            self._check_idle()
            current = self._record().settings
            credential = None
            if change.source is not None:  # stored with its password as ***
                source, credential = hide_password(change.source, self.kept_credential())
                change = attrs.evolve(change, source=source)
            unknown = change.clear - _CLEARABLE
            if unknown:
                names = ", ".join(sorted(unknown))
                raise InvalidSetting(
                    f"cannot clear {names}: only port, build-cmd, health-check and user"
                )
            updates = {
                f.name: getattr(change, f.name)
                for f in attrs.fields(SettingsChange)
                if f.name != "clear" and getattr(change, f.name) is not None
            }
            updates.update(dict.fromkeys(change.clear))
            settings = attrs.evolve(current, **updates)  # validates every field again
            users.check_user(settings.user)
            if settings.port != current.port:
                self.instance.check_port(self.name, settings.port)
            if change.source is not None:
                self.keep_credential(credential)
            if settings != current:
                self.instance.touch()
                self._cached = self.store.update_settings(self.name, settings)
            return self.settings_view()

    # The password of the remote is kept apart from the settings (which show it as ***),
    # sealed in the store; see sources.hide_password.

    def kept_credential(self) -> Credential | None:
        """The password kept for the service's remote, if any."""
        kept = self.store.git_credential(self.name)
        return None if kept is None else Credential(*kept)

    def seal_stored_password(self) -> None:
        """Move a password that an older dployr stored in the settings into the sealed store.

        (Deployment records keep the settings they were deployed with, as they were.)
        """
        settings = self._record().settings
        _, password = take_password(settings.source.remote)
        if password is None or password == HIDDEN_PASSWORD:
            return
        source, credential = hide_password(settings.source, None)
        self.keep_credential(credential)
        self._cached = self.store.update_settings(self.name, attrs.evolve(settings, source=source))

    def keep_credential(self, credential: Credential | None) -> None:
        """Keep ``credential`` as the password of the service's remote (None: keep none)."""
        if credential is None:
            self.store.forget_git_credential(self.name)
        else:
            self.store.set_git_credential(self.name, credential.remote, credential.password)

    async def set_env(self, values: dict[str, str], *, secret: bool, restart: bool) -> EnvListing:
        """Store variables now; they reach the process at its next start."""
        self.store.set_env(self.name, values, secret=secret)
        return await self._env_changed(restart)

    async def unset_env(self, keys: tuple[str, ...], *, restart: bool) -> EnvListing:
        """Remove variables; the process sees it at its next start.

        A key that is not set is bad input: refused, and nothing is removed.
        """
        # Checked and removed with no await between: nothing can set a key in between.
        missing = sorted(set(keys) - {var.key for var in self.store.env_listing(self.name)})
        if missing:
            verb = "was" if len(missing) == 1 else "were"
            raise InvalidSetting(f"{', '.join(missing)} {verb} not set: nothing was unset")
        self.store.unset_env(self.name, keys)
        return await self._env_changed(restart)

    async def _env_changed(self, restart: bool) -> EnvListing:
        if restart and self._record().active_deployment is not None:
            await self.restart()
            return self.env_listing(APPLIES_NOW)
        return self.env_listing()

    async def delete(self, *, purge: bool = False) -> None:
        """Stop the service and remove its configuration, releases and history.

        Its data folder stays (a service created again with the same name finds it),
        unless ``purge``.
        """
        async with self._stopping_deploy(), self.lock:
            await self._take_down()
            try:
                self.store.delete_service(self.name)
            except DiskFull:
                # No room even for the deletion: free the service's files first (its
                # history is most of them), then delete its records.
                self.book.close()
                await trio.to_thread.run_sync(shutil.rmtree, self.dir, True)
                self.store.delete_service(self.name)
            self._cached = None
            self.book.close()
            await trio.to_thread.run_sync(_remove_service_dir, self.dir, self.data_dir, purge)

    async def recover(self) -> None:
        """At daemon start: bring the service back as it should be."""
        record = self._record()
        if record.desired is not DesiredState.RUNNING:
            return
        if record.active_deployment is None:
            self._advance(st.Failed("no successful deployment to start"))
            return
        async with self.lock:
            try:
                await self.roll_out(self._active_deployment(), gate=False)
            except Exception as error:  # one service that cannot start must not stop the rest
                message = f"could not start after the daemon restarted: {error}"
                self.book.system(message)
                self._advance(st.Failed(message))

    async def close(self) -> None:
        """The daemon is stopping: the tree is being stopped by its supervisor."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.book.close()

    # -- the tree --------------------------------------------------------------------------

    async def _ensure_tree(self) -> Supervisor:
        if self.tree is not None:
            return self.tree
        tree = Supervisor(self.name, [], events=_TreeEvents(self))
        await self.instance.supervisor.start_child(
            ChildSpec(self.name, tree.run, restart=Restart.TEMPORARY, shutdown=INFINITY)
        )
        self.tree = tree
        return tree

    @contextlib.asynccontextmanager
    async def _stopping_deploy(self) -> AsyncIterator[None]:
        """Cancel a deploy in progress (it holds the lock while it waits for its release),
        and let nothing it undoes start again meanwhile."""
        self._stopping = True
        try:
            run, tree = self.deploy, self.tree
            if run is not None and tree is not None:
                with contextlib.suppress(KeyError, ActorDead):
                    await tree.delete_child(f"deploy-{run.id}")
                await run.done.wait()
            yield
        finally:
            self._stopping = False

    async def _take_down(self) -> None:
        """Remove the whole tree (a deploy in progress is cancelled and recorded as failed)."""
        if self.tree is not None:
            self.tree = None
            with contextlib.suppress(KeyError, ActorDead):
                await self.instance.supervisor.delete_child(self.name)
        if self.deploy is not None:
            await self.deploy.done.wait()
        self._forget_tree()
        self._advance(st.Stopped())

    def _forget_tree(self) -> None:
        self.proxy = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.releases.clear()
        self.current = None
        self._set_health(Health.UNKNOWN, "")

    def tree_lost(self, reason: str) -> None:
        """The service's supervisor itself died (the instance saw it exit abnormally)."""
        self.tree = None
        self._forget_tree()
        self.book.system(f"the service's supervisor stopped: {reason}")
        self._advance(st.Failed(reason))

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

    def process_started(self, running: Running) -> None:
        """Record a process group (release or build) before anything else can happen."""
        self.instance.record_process(self.name, running)

    def process_ended(self, pid: int) -> None:
        """The process group is gone."""
        self.instance.forget_process(pid)

    # -- rolling out a release ---------------------------------------------------------------

    async def roll_out(
        self, deployment: Deployment, *, gate: bool, run: DeployRun | None = None
    ) -> None:
        """Make a new release of ``deployment`` the service's; raise DeployFailed if it can't.

        The new release starts beside the current one; with ``gate`` the switch waits until
        it is ready: its health check passes, or without one its port accepts (if it has
        one) and it has stayed up the minimum uptime. Then the active deployment is written
        (for a deploy ``run``, with the settings and variables it brought), new connections
        go to the new release, and the old one drains and stops. On failure the new release
        is stopped and the current one keeps serving untouched.

        A service without a port rolls out stop-first by default (a worker never runs
        twice): the old release stops before the new one starts, and is started again if
        the new one fails.
        """
        folder = self.release_dir(deployment.folder)
        if not folder.is_dir():
            raise NotDeployed(
                f"the release folder of deployment {deployment.folder} is gone: deploy again"
            )
        await self._ensure_tree()
        previous = self.releases.get(self.current) if self.current else None
        stop_first = previous is not None and _stops_first(deployment.settings)
        # A release stopped for this roll-out is started again if it fails, unless it had
        # failed itself (its restart budget spent): that one stays failed.
        serving = previous is not None and not previous.gave_up
        if stop_first and previous is not None:
            say = run.say if run is not None else self._say
            say(f"stopping release {previous.spec.child_id} first (rollout {_rollout(deployment)})")
            await self.stop_release(previous.spec.child_id)
        try:
            await self._roll_out(deployment, folder, gate=gate, run=run)
        except BaseException:
            again = stop_first and serving and not self._stopping and self.tree is not None
            if again and previous is not None:
                with trio.CancelScope(shield=True):
                    await self._restart_previous(previous.deployment)
            raise

    async def _roll_out(
        self, deployment: Deployment, folder: Path, *, gate: bool, run: DeployRun | None
    ) -> None:
        spec = self._release_spec(deployment, folder, run.env if run is not None else None)
        # The public port is bound before anything starts: a port another program holds
        # fails the roll-out here, with nothing promoted and nothing to undo.
        proxy = await self._proxy_for(deployment.settings)
        try:
            await self._start_release(spec, deployment)
            if gate:
                await self._wait_ready(spec, run.say if run is not None else self._say)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.stop_release(spec.child_id)
                if proxy is not None and proxy is not self.proxy:
                    await self._stop_proxy(proxy)
            raise
        await self._switch(deployment, spec, proxy, run)

    def _say(self, text: str) -> None:
        self.book.system(text)

    async def _restart_previous(self, deployment: Deployment) -> None:
        """A stop-first roll-out failed: run the release that was stopped for it again."""
        try:
            await self._roll_out(
                deployment, self.release_dir(deployment.folder), gate=False, run=None
            )
        except Exception as error:  # the deploy's own failure is the one to report
            self.book.system(f"could not start deployment {deployment.id} again: {error}")
        else:
            self.book.system(f"deployment {deployment.id} was started again")

    def run_as(self, settings: ServiceSettings) -> None:
        """The next processes of the service run as the user ``settings`` names (if any)."""
        if self.instance.users is not None:
            self.instance.users.choose(self.name, settings.user)

    def _release_spec(
        self, deployment: Deployment, folder: Path, extra_env: Mapping[str, str] | None
    ) -> ReleaseSpec:
        settings = deployment.settings
        self.run_as(settings)
        self._generation += 1
        listen_fd = None
        port = None
        if settings.port is not None:
            if settings.listen_fds:
                listen_fd = self._listening_socket(settings.port).fileno()
            else:
                port = ports.allocate()
        spec = ReleaseSpec(
            service=self.name,
            deployment=deployment.id,
            command=settings.run_cmd,
            cwd=folder / settings.working_dir,
            env=self.process_env(deployment.id, port, extra_env),
            port=port,
            grace=settings.stop_grace,
            generation=self._generation,
            listen_fd=listen_fd,
        )
        if deployment.image is not None:  # a container: podman run (engine/podman.py)
            names = {*self.environment(), *(extra_env or {})}
            spec = podman.release_spec(spec, deployment.image, self.instance.id, names)
        return spec

    def _listening_socket(self, port: int) -> socket.socket:
        if self.listener is not None and self.listener.getsockname()[1] == port:
            return self.listener
        if self.listener is not None:
            self.listener.close()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.config.service_host, port))
            listener.listen(1024)
        except OSError:
            listener.close()
            raise PortInUse(f"port {port} is already in use by another program") from None
        self.listener = listener
        return listener

    def _restart_policy(self, deployment: Deployment) -> RestartPolicy:
        """A deploy's release restarts as the deploy says; every other start, as stored."""
        run = self.deploy
        if run is not None and run.id == deployment.id and not run.rollback:
            return deployment.settings.restart
        return self._record().settings.restart

    async def _start_release(self, spec: ReleaseSpec, deployment: Deployment) -> None:
        tree = self.tree
        assert tree is not None
        policy = self._restart_policy(deployment)
        live = LiveRelease(spec, deployment, restart=restarts.restart_type(policy), policy=policy)
        self.releases[spec.child_id] = live
        release = Release(
            spec, self.book, on_spawn=self.process_started, on_exit=self.process_ended
        )
        backoff = policy.backoff()
        children = [
            ChildSpec(
                "process",
                restarts.settling(
                    release.run, policy.min_uptime, lambda running: self._settled(live, running)
                ),
                restart=live.restart,
                shutdown=spec.grace + 5.0,
                backoff=backoff,
            )
        ]
        check = self._check(spec, deployment.settings)
        if check is not None:
            options = deployment.settings.health
            # Transient: it ends by itself, with no restart, once its process is gone for good.
            # Under "never" it restarts nothing, not even itself.
            probe_restart = Restart.TRANSIENT
            if policy.mode is RestartMode.NEVER:
                options = attrs.evolve(options, restart_after=None)
                probe_restart = Restart.TEMPORARY
            watchdog = Watchdog(check, options, lambda verdict: self._on_health(live, verdict))
            live.watchdog = watchdog
            children.append(
                ChildSpec(
                    "health", watchdog.run, restart=probe_restart, shutdown=0, backoff=backoff
                )
            )
        supervisor = Supervisor(
            spec.child_id, children, strategy=Strategy.ONE_FOR_ALL, intensity=policy.intensity()
        )
        try:
            child = ChildSpec(
                spec.child_id, supervisor.run, restart=Restart.TEMPORARY, shutdown=INFINITY
            )
            await tree.start_child(child)
        except Exception as error:
            self.releases.pop(spec.child_id, None)
            raise DeployFailed(f"the new release could not start: {error}") from None

    def _settled(self, live: LiveRelease, running: Running) -> None:
        """A process has stayed up its min_uptime: a restarted one counts as running again."""
        after = f"restarted after: {live.failure}" if live.failure else ""
        self._advance(st.ReleaseSettled(live.spec.child_id, running.pid, after))

    def _check(self, spec: ReleaseSpec, settings: ServiceSettings) -> Check | None:
        kind = settings.health_kind
        if kind is None:
            return None
        if kind is not HealthKind.COMMAND and spec.port is None:
            return None  # a handed-over socket has no private port to probe
        return Check(
            kind=kind,
            port=spec.port,
            path=settings.health_check or "/",
            command=settings.health.command,
            cwd=spec.cwd,
            env=spec.env,
            warden=self.instance.warden,
        )

    async def _wait_ready(self, spec: ReleaseSpec, say: Callable[[str], None]) -> None:
        """Wait until a new release may take connections, or raise DeployFailed.

        Ready is: its health check passed; or, without one, its port accepts (if it has
        one) and its process has then stayed up the minimum uptime. A crash of the new
        release while it is waited for fails it, with the last lines it wrote.
        """
        live = self.releases[spec.child_id]
        settings = live.deployment.settings
        has_check = self._check(spec, settings) is not None
        timeout = self.config.ready_timeout
        if not has_check:  # the minimum uptime is waited for on top
            timeout += settings.restart.min_uptime
        with trio.move_on_after(timeout):
            try:
                await self._until_ready(live, spec, has_check, say)
            except _ReleaseCrashed:
                tail = await self._crash_output(spec.deployment)
                raise DeployFailed(
                    f"the new release {live.last_crash or 'exited'} before it was ready",
                    output_tail=tail,
                ) from None
            return
        if has_check:
            last = live.health.message or "no answer yet"
            raise DeployFailed(
                f"the new release did not pass its health check within {timeout:g} s ({last})"
            )
        if spec.listen_fd is not None:
            raise DeployFailed(
                "the new release did not wait for connections on the handed-over socket"
                f" within {timeout:g} s"
            )
        if spec.port is not None:
            raise DeployFailed(
                f"the new release did not accept connections on its port within {timeout:g} s"
            )
        raise DeployFailed(f"the new release did not start within {timeout:g} s")

    async def _until_ready(
        self, live: LiveRelease, spec: ReleaseSpec, has_check: bool, say: Callable[[str], None]
    ) -> None:
        settings = live.deployment.settings
        crashes = live.crashes
        if has_check:
            say(f"waiting for its health check ({_check_words(settings)})")
            while live.health.health is not Health.HEALTHY:
                await self._next_change(live, crashes)
            return
        if spec.listen_fd is not None or spec.port is not None:
            say("waiting for it to accept connections")
            await self._wait_listening(live, spec, crashes)
        uptime = settings.restart.min_uptime
        if uptime > 0:
            say(f"waiting for it to stay up {uptime:g} s")
            while live.started_at is None:
                await self._next_change(live, crashes)
            with trio.move_on_at(live.started_at + uptime):
                while True:
                    await self._next_change(live, crashes)
            if live.crashes != crashes or live.gave_up:
                raise _ReleaseCrashed

    @staticmethod
    async def _next_change(live: LiveRelease, crashes: int) -> None:
        """Wait for the release's next change; raise _ReleaseCrashed if it has crashed."""
        if live.crashes != crashes or live.gave_up:
            raise _ReleaseCrashed
        await live.changed.wait()
        if live.crashes != crashes or live.gave_up:
            raise _ReleaseCrashed

    async def _wait_listening(self, live: LiveRelease, spec: ReleaseSpec, crashes: int) -> None:
        delay = READY_POLL_FIRST
        while True:
            if live.crashes != crashes or live.gave_up:
                raise _ReleaseCrashed
            if spec.listen_fd is not None:
                # A handed-over socket: ready once the release waits on it.
                members = launcher.group_members(live.pid) if live.pid is not None else []
                if ports.waits_for_connections(spec.listen_fd, members):
                    return
            elif spec.port is not None and await ports.accepts(spec.port):
                return
            # Nothing tells us when a port starts listening: retry on a short backoff.
            with trio.move_on_after(delay):
                await live.changed.wait()
            delay = min(delay * 2, READY_POLL_MAX)

    async def _crash_output(self, deployment: int) -> tuple[str, ...]:
        """The last lines a deployment's processes wrote (stdout and stderr)."""
        book = self.book
        try:
            lines = await trio.to_thread.run_sync(
                lambda: book.tail(CRASH_LINES * 10, {"stdout", "stderr"})
            )
        except OSError:
            return ()
        return tuple(line.line for line in lines if line.deployment == deployment)[-CRASH_LINES:]

    async def _proxy_for(self, settings: ServiceSettings) -> Proxy | None:
        """The proxy for the port ``settings`` name: the running one, or a new one, bound now.

        A new proxy has no target yet: a connection it accepts waits for the switch.
        """
        public = settings.port if not settings.listen_fds else None
        if public is None:
            return None
        if self.proxy is not None and self.proxy.port == public:
            return self.proxy
        tree = self.tree
        assert tree is not None
        proxy = Proxy(self.name, self.config.service_host, public, None)
        try:
            await tree.start_child(ChildSpec(f"proxy-{public}", proxy.run, shutdown=1.0))
        except StartError as error:
            raise DeployFailed(str(error.__cause__ or error)) from None
        return proxy

    async def _stop_proxy(self, proxy: Proxy) -> None:
        tree = self.tree
        if tree is not None:
            with contextlib.suppress(KeyError, ActorDead):
                await tree.delete_child(f"proxy-{proxy.port}")

    async def _switch(
        self, deployment: Deployment, spec: ReleaseSpec, proxy: Proxy | None, run: DeployRun | None
    ) -> None:
        """Promote ``spec``: record it, route new connections to it, drain and stop the old.

        For a deploy (``run``), the same write records it succeeded, makes its settings (less
        a one-off ``--commit``) the service's and adds the variables it brought to the
        service's environment; a rollback is recorded succeeded and changes neither.
        """
        # Written before it is acted on.
        self.instance.touch()
        if run is not None:
            settings = None
            if not run.rollback:
                source = attrs.evolve(deployment.settings.source, commit=None)
                settings = attrs.evolve(deployment.settings, source=source)
            self._cached = self.store.activate_deployment(
                self.name, deployment.id, settings=settings
            )
            run.outcome = DeploymentStatus.SUCCEEDED  # whatever happens next, it switched
        else:  # a restart, a start: the environment is the service's as it is
            self._cached = self.store.set_active_deployment(self.name, deployment.id)
        old = self.current
        live = self.releases[spec.child_id]
        self.current = spec.child_id
        self._advance(st.Promoted(spec.child_id, live.pid, live.process_started))
        self._set_health(live.health.health, live.health.message)
        old_proxy, self.proxy = self.proxy, proxy
        if proxy is not None:
            proxy.switch(spec.port)
        if not deployment.settings.listen_fds and self.listener is not None:
            self.listener.close()
            self.listener = None
        previous = self.releases.get(old) if old is not None and old != spec.child_id else None
        if previous is not None and previous.spec.port is not None and old_proxy is not None:
            # Connections in flight finish first, up to the old release's stop grace.
            with trio.move_on_after(previous.spec.grace):
                await old_proxy.drained(previous.spec.port)
        if old_proxy is not None and old_proxy is not proxy:
            await self._stop_proxy(old_proxy)
        if previous is not None:
            await self.stop_release(previous.spec.child_id)

    async def stop_release(self, child_id: str) -> None:
        """Stop a release (its grace, then SIGKILL) and forget it.

        While the whole tree is being stopped, its supervisor stops the release itself.
        """
        tree = self.tree
        if tree is not None:
            with contextlib.suppress(KeyError, ActorDead):
                await tree.delete_child(child_id)
        self.releases.pop(child_id, None)
        if self.current == child_id:
            self.current = None

    async def prune_releases(self) -> None:
        """Keep the release folders of the newest successful deployments; remove the rest.

        Folders are ranked by when a successful deployment last ran them (a rollback
        counts), so the release that ran before the current one, which ``rollback`` goes
        back to, is kept whatever its number; the folders of failed deploys never count.
        Folders in use are always kept.
        """
        releases = self.dir / "releases"
        keep = self.config.keep_releases
        running = {r.deployment.folder for r in self.releases.values()}
        recent: list[int] = []
        for deployment in self.store.deployments(self.name, limit=1000):
            if len(recent) >= keep:
                break
            if deployment.status is DeploymentStatus.SUCCEEDED and deployment.folder not in recent:
                recent.append(deployment.folder)
        wanted = running | set(recent)

        def prune() -> None:
            if not releases.is_dir():
                return
            for path in releases.iterdir():
                if path.name.isdigit() and int(path.name) not in wanted:
                    shutil.rmtree(path, ignore_errors=True)

        await trio.to_thread.run_sync(prune)

    # -- deploy milestones (called by DeployRun) -------------------------------------------

    def deploy_succeeded(self, run: DeployRun) -> None:
        """The deploy switched to its release."""
        self._advance(st.DeployEnded(run.id, succeeded=True))

    def deploy_failed(self, run: DeployRun, reason: str) -> None:
        """The deploy failed; what ran before keeps running."""
        what = "rollback" if run.rollback else "deploy"
        message = f"{what} {run.id} failed: {reason}"
        self._advance(st.DeployEnded(run.id, succeeded=False, message=message))

    def deploy_finished(self, run: DeployRun) -> None:
        """The deploy ended, either way: another may start."""
        if self.deploy is run:
            self.deploy = None
            self.instance.touch()

    # -- events ----------------------------------------------------------------------------

    def _advance(self, event: st.StatusEvent) -> None:
        self.instance.touch()
        before = self.state
        self.state = st.advance(self.state, event, time.time())
        if self.state.status is not before.status:
            self.instance.status_changed(self, before.status)

    def _set_health(self, health: Health, message: str) -> None:
        if health is self.health:
            return
        self.instance.touch()
        previous, self.health = self.health, health
        self.instance.health_changed(self, previous, message)
        live = self.releases.get(self.current) if self.current else None
        webhook = live.deployment.settings.health.webhook if live is not None else None
        if webhook is not None:
            body = webhook_body(self.name, self.instance.name, health, message)
            self.instance.send_webhook(self.name, webhook, body)

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

    def _on_event(self, event: SupervisionEvent) -> None:
        path = event.supervisor
        child_id = path[-1] if path else ""
        live = self.releases.get(child_id)
        if live is not None:
            self._on_release_event(live, child_id, event)
        self.instance.supervision_event(event)

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


class _ReleaseCrashed(Exception):
    """The release waited for exited (or gave up) before it was ready."""


CRASH_LINES = 20
"""Lines of a new release's output kept in the record of a deploy it failed."""


def _rollout(deployment: Deployment) -> str:
    return deployment.settings.rollout.value


def _stops_first(settings: ServiceSettings) -> bool:
    """Whether a roll-out of these settings stops the old release before it starts the new."""
    mode = settings.rollout
    if mode is RolloutMode.AUTO:
        return settings.port is None
    return mode is RolloutMode.STOP_FIRST


def _check_words(settings: ServiceSettings) -> str:
    kind = settings.health_kind
    if kind is HealthKind.HTTP:
        return f"GET {settings.health_check or '/'}"
    if kind is HealthKind.TCP:
        return "a TCP connection"
    return f"command {settings.health.command}"


def _remove_service_dir(folder: Path, data: Path, purge: bool) -> None:
    """Remove a deleted service's folder; all of it with ``purge``, else all but ``data``."""
    if purge or not data.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            if entry != data:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def webhook_body(service: str, instance: str, health: Health, message: str) -> bytes:
    """The JSON a health webhook receives."""
    return json.dumps(
        {
            "event": "health",
            "service": service,
            "instance": instance,
            "health": health.value,
            "timestamp": time.time(),
            "message": message,
        }
    ).encode()
