"""A service's supervision tree: its supervisor, its releases, its proxy and socket.

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
budget, its supervisor gives up (the service becomes ``failed``), and nothing else notices.
The policy a release gets is the deploy's own for a deploy, and the stored settings' for a
start, a restart, a rollback and the recovery at daemon start.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

from dployr.engine import podman, restarts, static
from dployr.engine import status as st
from dployr.engine.errors import DeployFailed
from dployr.engine.health import Check, Watchdog
from dployr.engine.os import ports
from dployr.engine.proxy import PortInUse, Proxy
from dployr.engine.release import Release, ReleaseSpec
from dployr.engine.service.core import LiveRelease
from dployr.engine.service.events import ServiceEvents, TreeEvents
from dployr.errors import ActorDead, StartError
from dployr.models import (
    Deployment,
    DeploymentStatus,
    Health,
    HealthKind,
    RestartMode,
    RestartPolicy,
    ServiceSettings,
    ServiceType,
)
from dployr.supervision import ChildSpec, Restart, Strategy, Supervisor


class ServiceTree(ServiceEvents):
    """A service's tree: made when first needed, releases added and removed."""

    async def _ensure_tree(self) -> Supervisor:
        if self.tree is not None:
            return self.tree
        tree = Supervisor(self.name, [], events=TreeEvents(self))
        await self.instance.supervisor.start_child(
            ChildSpec.supervisor(self.name, tree.run, restart=Restart.TEMPORARY)
        )
        self.tree = tree
        return tree

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
        proxy = Proxy(
            self.name,
            self.config.service_host,
            public,
            None,
            connect_deadline=self.config.connect_deadline,
        )
        try:
            await tree.start_child(ChildSpec(f"proxy-{public}", proxy.run, shutdown=1.0))
        except StartError as error:
            raise DeployFailed(str(error.__cause__ or error)) from error
        return proxy

    async def _stop_proxy(self, proxy: Proxy) -> None:
        tree = self.tree
        if tree is not None:
            with contextlib.suppress(KeyError, ActorDead):
                await tree.delete_child(f"proxy-{proxy.port}")

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
        except OSError as error:
            listener.close()
            raise PortInUse(f"port {port} is already in use by another program") from error
        self.listener = listener
        return listener

    def _restart_policy(self, deployment: Deployment) -> RestartPolicy:
        """A deploy's release restarts as the deploy says; every other start, as stored."""
        run = self.deploy
        if run is not None and run.id == deployment.id and not run.rollback:
            return deployment.settings.restart
        return self._record().settings.restart

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
        command = settings.run_cmd
        if settings.type is ServiceType.STATIC:  # Caddy, serving what the deploy published
            command = static.command(self.data_dir)
        spec = ReleaseSpec(
            service=self.name,
            deployment=deployment.id,
            command=command,
            cwd=folder / settings.working_dir,
            env=self.process_env(deployment.id, port, extra_env),
            port=port,
            grace=settings.stop_grace,
            generation=self._generation,
            listen_fd=listen_fd,
        )
        if deployment.image is not None:  # a container: podman run (engine/podman.py)
            names = {*self.environment(), *(extra_env or {})}
            spec = podman.release_spec(spec, deployment.image, self.instance_id, names)
        return spec

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
            child = ChildSpec.supervisor(spec.child_id, supervisor.run, restart=Restart.TEMPORARY)
            await tree.start_child(child)
        except Exception as error:
            self.releases.pop(spec.child_id, None)
            raise DeployFailed(f"the new release could not start: {error}") from error

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

    def kept_releases(self) -> set[int]:
        """The release folders :meth:`prune_releases` keeps: those in use, and those of the
        newest successful deployments (by when one last ran them)."""
        keep = self.config.keep_releases
        running = {r.deployment.folder for r in self.releases.values()}
        recent: list[int] = []
        for deployment in self.store.deployments(self.name, limit=1000):
            if len(recent) >= keep:
                break
            if deployment.status is DeploymentStatus.SUCCEEDED and deployment.folder not in recent:
                recent.append(deployment.folder)
        return running | set(recent)

    async def prune_releases(self) -> None:
        """Keep the release folders of the newest successful deployments; remove the rest.

        Folders are ranked by when a successful deployment last ran them (a rollback
        counts), so the release that ran before the current one, which ``rollback`` goes
        back to, is kept whatever its number; the folders of failed deploys never count.
        Folders in use are always kept.
        """
        releases = self.dir / "releases"
        wanted = self.kept_releases()

        def prune() -> None:
            if not releases.is_dir():
                return
            for path in releases.iterdir():
                if path.name.isdigit() and int(path.name) not in wanted:
                    shutil.rmtree(path, ignore_errors=True)

        await trio.to_thread.run_sync(prune)

    async def close(self) -> None:
        """The daemon is stopping: the tree is being stopped by its supervisor."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.book.close()
