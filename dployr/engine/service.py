"""One service on an instance: its supervision tree, its log book, its status.

While a service is up, its tree is a child of the instance supervisor::

    service "my-api" supervisor (one_for_one; a temporary child of the instance)
    ├─ proxy            the public port -> the current release's private port (if a port)
    ├─ release-7        a supervisor with one child, ``process`` (permanent, with backoff)
    └─ deploy-8         the builder of a deploy in progress (temporary)

Each release has a supervisor of its own, whose restart intensity is the service's restart
budget: a release that crash-loops exhausts only its own budget, its supervisor gives up
(the service becomes ``failed``), and nothing else notices, neither another service nor the
previous release that a failing deploy must leave serving.

The :class:`Service` object is not an actor with a mailbox: commands on one service are
serialised by a lock, and reads (status, logs, settings) never wait behind a 10-second stop.
Every task it causes lives in its supervision tree.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from dployr.engine import ports
from dployr.engine import status as st
from dployr.engine.deploy import DeployRun
from dployr.engine.errors import DeployInProgress, NotDeployed
from dployr.engine.messages import EnvListing, ServiceInfo, SettingsChange, SettingsView
from dployr.engine.proxy import Proxy
from dployr.engine.release import Release, ReleaseSpec, Running, process_env
from dployr.logs.book import LogBook
from dployr.models import (
    Deployment,
    DesiredState,
    Health,
    InvalidSetting,
    ServiceSettings,
    ServiceStatus,
)
from dployr.store.errors import UnknownService
from dployr.store.records import ServiceRecord
from dployr.supervision import (
    INFINITY,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildTerminated,
    MaxIntensityReached,
    Restart,
    Shutdown,
    SupervisionEvent,
    Supervisor,
)

if TYPE_CHECKING:
    from dployr.engine.instance import Instance

APPLIES_LATER = "at the next start, restart or deploy"
APPLIES_NOW = "now: the service was restarted"
_CLEARABLE = frozenset({"port", "build_cmd", "health_check"})


class _TreeEvents:
    """The event sink of a service's tree: status, system log lines, then the instance."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def publish(self, event: SupervisionEvent, /) -> None:
        self._service._on_event(event)


class Service:
    """A service of an instance; the instance creates one per stored service."""

    def __init__(self, instance: Instance, record: ServiceRecord) -> None:
        self.instance = instance
        self.name = record.name
        self.config = instance.config
        self.store = instance.store
        self.dir = instance.config.data_dir / "services" / record.name
        self.book = LogBook(self.dir / "logs", max_bytes=instance.config.log_bytes)
        self.created_at = record.created_at
        self.state = st.ServiceState(
            status=ServiceStatus.STOPPED,
            since=time.time(),
            active_deployment=record.active_deployment,
        )
        self.health = Health.UNKNOWN
        self.lock = trio.Lock()
        # Invariant: `tree` is the running service supervisor, or None when the service is
        # down; `current` is the release that is the service's (running, restarting or
        # failed); `proxy` is the running proxy child, if the service has a port.
        self.tree: Supervisor | None = None
        self.proxy: Proxy | None = None
        self.current: ReleaseSpec | None = None
        self.deploy: DeployRun | None = None
        self._exited: dict[str, str] = {}  # release child id -> why its process exited
        self.last_deploy_at: float | None = None

    # -- reads -----------------------------------------------------------------------------

    def info(self) -> ServiceInfo:
        """What the service is and does now."""
        record = self._record()
        state = self.state
        port = (self._active_settings() or record.settings).port
        return ServiceInfo(
            name=self.name,
            instance=self.instance.name,
            status=state.status,
            health=self.health,
            pid=state.pid,
            port=port,
            restarts=state.restarts,
            deployment=record.active_deployment,
            description=record.settings.description,
            deploying=self.deploy.id if self.deploy is not None else None,
            since=state.since,
            message=state.message,
            created_at=self.created_at,
            last_deploy_at=self.last_deploy_at,
        )

    def settings_view(self) -> SettingsView:
        """The stored settings, the active ones, and which fields wait for the next deploy."""
        record = self._record()
        active = self._active_settings()
        pending: tuple[str, ...] = ()
        if active is not None:
            fields = attrs.fields(ServiceSettings)
            pending = tuple(
                f.name
                for f in fields
                if getattr(record.settings, f.name) != getattr(active, f.name)
            )
        return SettingsView(self.name, record.settings, active, pending)

    def env_listing(self, applies: str = APPLIES_LATER) -> EnvListing:
        """The environment with secrets masked."""
        return EnvListing(self.name, tuple(self.store.env_listing(self.name)), applies)

    def environment(self) -> dict[str, str]:
        """The service's variables, secrets decrypted: for a process environment only."""
        return {var.key: var.value for var in self.store.env(self.name)}

    def serving(self) -> bool:
        """Whether a release of this service is running (or restarting) now."""
        return self.state.status in (ServiceStatus.RUNNING, ServiceStatus.RESTARTING)

    def _record(self) -> ServiceRecord:
        record = self.store.get_service(self.name)
        if record is None:  # deleted underneath us
            raise UnknownService(f"no service named {self.name!r}")
        return record

    def _active_settings(self) -> ServiceSettings | None:
        active = self.state.active_deployment
        if active is None:
            return None
        deployment = self.store.get_deployment(active)
        return deployment.settings if deployment is not None else None

    # -- commands --------------------------------------------------------------------------

    async def deploy_now(self, settings: ServiceSettings | None) -> Deployment:
        """Start a deploy in the service's tree and return its record at once."""
        async with self.lock:
            if self.deploy is not None:
                started = time.strftime("%H:%M:%S", time.localtime(self.deploy.started_at))
                raise DeployInProgress(
                    f"deploy {self.deploy.id} of {self.name} is already running "
                    f"(started at {started}); wait for it to finish"
                )
            record = self._record()
            if settings is not None and settings != record.settings:
                self.store.update_settings(self.name, settings)
            self.store.set_desired(self.name, DesiredState.RUNNING)
            deployment = self.store.create_deployment(self.name, settings or record.settings)
            tree = await self._ensure_tree()
            run = DeployRun(self, deployment)
            self.deploy = run
            self.last_deploy_at = deployment.created_at
            self._advance(st.DeployBegan(deployment.id))
            self.book.system(f"deploy {deployment.id} started", deployment=deployment.id)
            await tree.start_child(
                ChildSpec(f"deploy-{deployment.id}", run.run, restart=Restart.TEMPORARY)
            )
            return deployment

    async def start(self) -> ServiceInfo:
        """Start the active deployment if the service is stopped or failed."""
        async with self.lock:
            record = self._record()
            if record.active_deployment is None:
                raise NotDeployed(f"{self.name} has no successful deployment yet: deploy it first")
            self.store.set_desired(self.name, DesiredState.RUNNING)
            if not self.serving() or self.state.release is None:
                await self._start_active()
            return self.info()

    async def stop(self) -> ServiceInfo:
        """Stop everything of the service; it stays stopped until started."""
        async with self.lock:
            self.store.set_desired(self.name, DesiredState.STOPPED)
            await self._take_down()
            self.book.system("stopped")
            return self.info()

    async def restart(self) -> ServiceInfo:
        """Stop and start the current deployment's process, with the current environment."""
        async with self.lock:
            record = self._record()
            if record.active_deployment is None:
                raise NotDeployed(f"{self.name} has no successful deployment yet: deploy it first")
            self.store.set_desired(self.name, DesiredState.RUNNING)
            if self.current is not None and self.tree is not None:
                self.book.system("restarting on request")
                await self.stop_release(self.current)
            await self._start_active()
            return self.info()

    async def update_settings(self, change: SettingsChange) -> SettingsView:
        """Store changed settings for the next deploy; nothing running is touched."""
        async with self.lock:
            current = self._record().settings
            unknown = change.clear - _CLEARABLE
            if unknown:
                names = ", ".join(sorted(unknown))
                raise InvalidSetting(f"cannot clear {names}: only port, build-cmd and health-check")
            updates = {
                f.name: getattr(change, f.name)
                for f in attrs.fields(SettingsChange)
                if f.name != "clear" and getattr(change, f.name) is not None
            }
            updates.update(dict.fromkeys(change.clear))
            settings = attrs.evolve(current, **updates)  # validates every field again
            if settings != current:
                self.store.update_settings(self.name, settings)
            return self.settings_view()

    async def set_env(self, values: dict[str, str], *, secret: bool, restart: bool) -> EnvListing:
        """Store variables now; they reach the process at its next start."""
        self.store.set_env(self.name, values, secret=secret)
        return await self._env_changed(restart)

    async def unset_env(self, keys: tuple[str, ...], *, restart: bool) -> EnvListing:
        """Remove variables; the process sees it at its next start."""
        self.store.unset_env(self.name, keys)
        return await self._env_changed(restart)

    async def _env_changed(self, restart: bool) -> EnvListing:
        if restart and self._record().active_deployment is not None:
            await self.restart()
            return self.env_listing(APPLIES_NOW)
        return self.env_listing()

    async def delete(self) -> None:
        """Stop the service and remove its configuration, releases and history."""
        async with self.lock:
            await self._take_down()
            self.store.delete_service(self.name)
            self.book.close()
            await trio.to_thread.run_sync(shutil.rmtree, self.dir, True)

    async def recover(self) -> None:
        """At daemon start: bring the service back as it should be."""
        record = self._record()
        if record.desired is DesiredState.RUNNING and record.active_deployment is not None:
            async with self.lock:
                try:
                    await self._start_active()
                except Exception as error:
                    self.book.system(f"could not start after the daemon restarted: {error}")
                    self._advance(st.ReleaseGaveUp(record.active_deployment, str(error)))
                    self.state = attrs.evolve(self.state, status=ServiceStatus.FAILED)
        elif record.active_deployment is None and record.desired is DesiredState.RUNNING:
            self.state = attrs.evolve(self.state, status=ServiceStatus.FAILED)

    async def close(self) -> None:
        """The daemon is stopping: the tree is being stopped by its supervisor."""
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

    async def _take_down(self) -> None:
        """Remove the whole tree (a deploy in progress is cancelled and recorded as failed)."""
        if self.tree is not None:
            tree, self.tree = self.tree, None
            with contextlib.suppress(KeyError):
                await self.instance.supervisor.delete_child(self.name)
            del tree
        if self.deploy is not None:
            await self.deploy.done.wait()
        self.proxy = None
        self.current = None
        self._advance(st.Stopped())

    def tree_lost(self, reason: str) -> None:
        """The service's supervisor itself died (the instance saw it exit abnormally)."""
        self.tree = None
        self.proxy = None
        self.current = None
        self.book.system(f"the service's supervisor stopped: {reason}")
        self._advance(st.Stopped())
        self.state = attrs.evolve(self.state, status=ServiceStatus.FAILED, message=reason)

    async def _start_active(self) -> None:
        record = self._record()
        assert record.active_deployment is not None
        deployment = self.store.get_deployment(record.active_deployment)
        if deployment is None:
            raise NotDeployed(f"{self.name}'s active deployment is missing")
        release_dir = self.dir / "releases" / str(deployment.id)
        if not release_dir.is_dir():
            raise NotDeployed(
                f"{self.name}'s release folder for deployment {deployment.id} is gone: deploy again"
            )
        await self._ensure_tree()
        settings = deployment.settings
        port = ports.allocate() if settings.port is not None else None
        spec = self.release_spec(deployment, port, release_dir)
        self._advance(st.Started())
        await self.switch_to(deployment, spec, start=True)

    def process_env(self, deployment: int, port: int | None) -> dict[str, str]:
        """The whole environment of a process of this service (a release or a build).

        ``DPLOYR_INSTANCE`` marks it as this instance's, so a daemon started after a crash
        can tell its leftovers from unrelated processes that reuse their pids.
        """
        env = process_env(self.name, deployment, port, self.environment())
        env["DPLOYR_INSTANCE"] = self.instance.id
        return env

    def process_started(self, running: Running) -> None:
        """Record a process group (release or build) before anything else can happen."""
        self.instance.record_process(self.name, running)

    def process_ended(self, pid: int) -> None:
        """The process group is gone."""
        self.instance.forget_process(pid)

    def release_spec(self, deployment: Deployment, port: int | None, release: Path) -> ReleaseSpec:
        """The spec of a release of ``deployment`` on private ``port``, env as stored now."""
        settings = deployment.settings
        env = self.process_env(deployment.id, port)
        return ReleaseSpec(
            service=self.name,
            deployment=deployment.id,
            command=settings.run_cmd,
            cwd=release / settings.working_dir,
            env=env,
            port=port,
            grace=settings.stop_grace,
        )

    async def start_release(self, spec: ReleaseSpec) -> None:
        """Start a release supervisor (``release-<id>``) in the tree, beside any other."""
        tree = self.tree
        assert tree is not None
        if spec.child_id in tree.which_children():
            await tree.delete_child(spec.child_id)  # a failed earlier run of the same release
        self._exited.pop(spec.child_id, None)
        release = Release(
            spec, self.book, on_spawn=self.process_started, on_exit=self.process_ended
        )
        supervisor = Supervisor(
            spec.child_id,
            [
                ChildSpec(
                    "process",
                    release.run,
                    shutdown=spec.grace + 5.0,
                    backoff=self.config.backoff,
                )
            ],
            intensity=self.config.intensity,
        )
        await tree.start_child(
            ChildSpec(spec.child_id, supervisor.run, restart=Restart.TEMPORARY, shutdown=INFINITY)
        )

    async def stop_release(self, spec: ReleaseSpec) -> None:
        """Stop a release (its grace, then SIGKILL) and forget its child."""
        tree = self.tree
        if tree is None:
            return
        with contextlib.suppress(KeyError):
            await tree.delete_child(spec.child_id)
        if self.current == spec:
            self.current = None

    def release_exited(self, spec: ReleaseSpec) -> str | None:
        """How a release's process ended, if it exited since it was started."""
        return self._exited.get(spec.child_id)

    async def switch_to(
        self, deployment: Deployment, spec: ReleaseSpec, *, start: bool = False
    ) -> None:
        """Make ``spec`` the service's release: promote, send the proxy to it, stop the old.

        With ``start``, the release is started here (a start or restart of the service);
        a deploy starts it first and checks it is ready before it calls this.
        """
        self.store.set_active_deployment(self.name, deployment.id)  # written before acted on
        old = self.current
        self.current = spec
        self._advance(st.Promoted(deployment.id, None))
        if start:
            await self.start_release(spec)
        pid = self._pid_of(spec)
        if pid is not None:
            self._advance(st.ReleaseStarted(deployment.id, pid))
        await self._route(deployment.settings.port, spec.port)
        if old is not None and old.child_id != spec.child_id:
            await self.stop_release(old)

    async def _route(self, public: int | None, private: int | None) -> None:
        tree = self.tree
        assert tree is not None
        if self.proxy is not None and self.proxy.port != public:
            await tree.delete_child("proxy")
            self.proxy = None
        if public is None:
            return
        if self.proxy is None:
            proxy = Proxy(self.name, self.config.service_host, public, private)
            await tree.start_child(ChildSpec("proxy", proxy.run, shutdown=1.0))
            self.proxy = proxy
        else:
            self.proxy.switch(private)

    def _pid_of(self, spec: ReleaseSpec) -> int | None:
        tree = self.tree
        if tree is None:
            return None
        for child in tree.statistics().children:
            if child.id == spec.child_id and isinstance(child.value, Supervisor):
                for grandchild in child.value.statistics().children:
                    if isinstance(grandchild.value, Running):
                        return grandchild.value.pid
        return None

    async def prune_releases(self) -> None:
        """Keep the newest releases on disk (the current one always); remove the rest."""
        releases = self.dir / "releases"
        keep = self.config.keep_releases

        def prune() -> None:
            if not releases.is_dir():
                return
            numbered = sorted((int(p.name), p) for p in releases.iterdir() if p.name.isdigit())
            current = self.current.deployment if self.current is not None else None
            for number, path in numbered[:-keep] if keep else numbered:
                if number != current:
                    shutil.rmtree(path, ignore_errors=True)

        await trio.to_thread.run_sync(prune)

    # -- deploy milestones (called by DeployRun) -------------------------------------------

    def deploy_succeeded(self, run: DeployRun) -> None:
        """The deploy switched to its release."""
        self._advance(st.DeployEnded(run.id, succeeded=True))

    def deploy_failed(self, run: DeployRun, reason: str) -> None:
        """The deploy failed; what ran before keeps running."""
        self._advance(
            st.DeployEnded(run.id, succeeded=False, message=f"deploy {run.id} failed: {reason}")
        )

    def deploy_finished(self, run: DeployRun) -> None:
        """The deploy ended, either way: another may start."""
        if self.deploy is run:
            self.deploy = None

    # -- events ----------------------------------------------------------------------------

    def _advance(self, event: st.StatusEvent) -> None:
        before = self.state
        self.state = st.advance(self.state, event, time.time())
        if self.state.status is not before.status:
            self.instance.status_changed(self, before.status)

    def _on_event(self, event: SupervisionEvent) -> None:
        path = event.supervisor
        release = path[-1] if path else ""
        if release.startswith("release-") and event.child.id == "process":
            deployment = int(release.removeprefix("release-"))
            book = self.book
            match event:
                case ChildStarted(value=Running(pid=pid)):
                    book.system(f"release {deployment} started (pid {pid})", deployment=deployment)
                    self._advance(st.ReleaseStarted(deployment, pid))
                case ChildTerminated(reason=Shutdown()):
                    book.system(f"release {deployment} stopped", deployment=deployment)
                    self._advance(st.ReleaseExited(deployment, True, "stopped"))
                case ChildTerminated(reason=reason):
                    text = reason.describe()
                    self._exited[release] = text
                    book.system(text, deployment=deployment)
                    self._advance(st.ReleaseExited(deployment, False, text))
                case ChildRestarting(delay=delay):
                    text = "restarting now" if delay <= 0 else f"restarting in {delay:g} s"
                    book.system(text, deployment=deployment)
                    self._advance(st.ReleaseRestarting(deployment, text))
                case MaxIntensityReached():
                    text = event.describe()
                    book.system(text, deployment=deployment)
                    self._advance(st.ReleaseGaveUp(deployment, text))
        self.instance.supervision_event(event)
