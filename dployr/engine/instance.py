"""An instance: one machine's supervisor of services, and the handle that drives it.

The instance supervisor (``one_for_one``) has one temporary child per service that is up;
services are added and removed at run time. Its handle (:class:`~dployr.engine.handle.LocalHandle`)
is the only way in: it takes the request messages of :mod:`dployr.protocol.messages` and
answers with their reply values, so the gateway never touches a process, pipe or file of a
service.

At start, before any service runs, the instance kills whatever is left in the cgroups and
process groups a previous daemon made (a daemon killed with ``kill -9`` leaves its
services' children behind), removes the folders it left half-made, records interrupted
deploys as failed, then brings back every service that should run, with its active
deployment: so a service never runs twice.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import time
from typing import Any, TypeVar

import attrs
import trio

from dployr import __version__
from dployr.config import EngineConfig
from dployr.engine import image_store, podman
from dployr.engine.errors import Conflict
from dployr.engine.handle import LocalHandle
from dployr.engine.metrics import MetricsSampler
from dployr.engine.os import cgroups, users
from dployr.engine.os.cgroups import Cgroups
from dployr.engine.os.leftovers import kill_leftovers, remove_unfinished
from dployr.engine.os.users import ServiceUsers
from dployr.engine.os.warden import Warden
from dployr.engine.proxy import PortInUse
from dployr.engine.release import Running
from dployr.engine.service import Service
from dployr.engine.sources import check_remote, hide_password
from dployr.engine.webhooks import Delivery, Webhooks
from dployr.errors import DployrError
from dployr.metrics import (
    RAW_RETENTION,
    Resolution,
)
from dployr.models import (
    Deployment,
    DeploymentStatus,
    Health,
    ServiceStatus,
    check_env_key,
    check_env_value,
)
from dployr.protocol import messages as m
from dployr.protocol.events import (
    Change,
    DeploymentChanged,
    DiskChanged,
    HealthChanged,
    StatusChanged,
)
from dployr.store.errors import DiskFull, ServiceExists, UnknownService
from dployr.store.store import Store
from dployr.supervision import (
    ChildContext,
    ChildSpec,
    ChildTerminated,
    SupervisionEvent,
    Supervisor,
    Topic,
)

R = TypeVar("R")
INTERRUPTED = "interrupted: the daemon stopped during the deploy"


class Instance:
    """The services of one machine, under one supervisor."""

    def __init__(self, config: EngineConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.name = config.name
        self.id = store.instance_id()
        self.run_token = secrets.token_hex(8)
        self.warden = Warden()
        """Kills every live process group of the instance if the daemon dies."""
        self.users: ServiceUsers | None = None
        """The services' own users, while it runs (None: services run as the daemon)."""
        self.cgroups: Cgroups | None = None
        """The instance's cgroups, while it runs (None: none is writable, or not wanted)."""
        self.services: dict[str, Service] = {}
        self.webhooks = Webhooks(self._webhook_failed)
        self.supervisor = Supervisor(
            config.name,
            [ChildSpec("webhooks", self._run_webhooks)],
            events=_InstanceEvents(self),
        )
        self.events: Topic[SupervisionEvent] = Topic("events")
        """Every supervision event of the instance's tree."""
        self.changes: Topic[Change] = Topic("changes")
        """Every status and deployment change of every service."""
        self._shown: tuple[object, ...] = ()
        self._generation = 0
        if store.reserve is not None:  # the disk filling up, or room again: an event
            store.reserve.on_change = self._disk_changed
        self.metrics = MetricsSampler(self._metric_groups, store, interval=config.metrics_interval)
        self.handle = LocalHandle(self)

    async def run(
        self,
        ctx: object = None,
        *,
        task_status: trio.TaskStatus[LocalHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Clean up after a previous daemon, start the supervisor and the services, serve."""
        if self.config.cgroups:
            self.cgroups = await trio.to_thread.run_sync(cgroups.open_instance, self.id)
        await trio.to_thread.run_sync(
            kill_leftovers, self.store.recorded_processes(), self.id, self.cgroups
        )
        for leftover in self.store.recorded_processes():
            self.store.forget_process(leftover.pid)
        if any(r.settings.image or r.settings.dockerfile for r in self.store.list_services()):
            await podman.remove_leftovers(self.id)  # the containers a killed daemon left
        await trio.to_thread.run_sync(remove_unfinished, self.config.data_dir)
        if self.cgroups is not None:
            self.cgroups.register(self.id)
        umask = None
        if self.config.service_users and users.available():
            self.users = ServiceUsers(self.config.data_dir)
            umask = os.umask(users.DAEMON_UMASK)  # what the daemon makes is its own
            await trio.to_thread.run_sync(self.users.open)
            self.users.register(self.id)
        self.warden.cgroups = self.cgroups
        self.warden.start()
        interrupted = self.store.fail_interrupted_deployments(INTERRUPTED)
        for record in self.store.list_services():
            self.services[record.name] = Service(self, record)
            self.services[record.name].seal_stored_password()
        for deployment in interrupted:
            service = self.services.get(deployment.service)
            if service is not None:
                service.book.system(
                    f"deploy {deployment.id} failed: {INTERRUPTED}", deployment=deployment.id
                )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.supervisor.run)
                await self.supervisor.start_child(self.metrics.child_spec())
                for service in self.services.values():
                    await service.recover()
                task_status.started(self.handle)
        finally:
            for service in self.services.values():
                await service.close()
            self.warden.close()
            if self.cgroups is not None:
                self.cgroups.close(self.id)
            if self.users is not None:
                self.users.close(self.id)
            if umask is not None:
                os.umask(umask)

    async def _run_webhooks(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.webhooks = Webhooks(self._webhook_failed)  # a fresh actor per incarnation
        await self.webhooks.run(ctx, task_status=task_status)

    @property
    def generation(self) -> int:
        """Grows whenever anything the services' info shows has changed: readers may cache
        the list of services by it.

        Derived from the values each service's info is made of (see
        :meth:`~dployr.engine.service.core.ServiceCore.shown`), which are replaced at every
        change: no change has to be announced by hand, so none can be forgotten.
        """
        shown = tuple((name, s.shown()) for name, s in self.services.items())
        if shown != self._shown:
            self._shown = shown
            self._generation += 1
        return self._generation

    def _metric_groups(self) -> dict[str, list[int]]:
        """Service name -> the process groups of its live releases (for the sampler)."""
        groups = {}
        for name, service in self.services.items():
            pgids = service.live_pgids()
            if pgids:
                groups[name] = pgids
        return groups

    # -- called by services ----------------------------------------------------------------

    def status_changed(self, service: str, status: ServiceStatus, previous: ServiceStatus) -> None:
        """Publish a service's status change."""
        self.changes.publish(StatusChanged(service, self.name, status, previous, time.time()))

    def health_changed(self, service: str, health: Health, previous: Health, message: str) -> None:
        """Publish a service's health change."""
        self.changes.publish(
            HealthChanged(service, self.name, health, previous, message, time.time())
        )

    def send_webhook(self, service: str, url: str, body: bytes) -> None:
        """Hand a webhook delivery over; never waits (a full queue drops it, and says so)."""
        try:
            self.webhooks.ref.tell_nowait(Delivery(service, url, body))
        except DployrError:
            self._webhook_failed(service, "the webhook queue is full: a health webhook was dropped")

    def _webhook_failed(self, service: str, text: str) -> None:
        found = self.services.get(service)
        if found is not None:
            with contextlib.suppress(DployrError):
                found.book.system(text)

    def deployment_changed(self, service: str, deployment: int, status: DeploymentStatus) -> None:
        """Publish a deployment's new status."""
        self.changes.publish(DeploymentChanged(service, self.name, deployment, status, time.time()))

    def _disk_changed(self, full: bool) -> None:
        self.changes.publish(DiskChanged(self.name, full, time.time()))

    def supervision_event(self, event: SupervisionEvent) -> None:
        """Publish a supervision event of the instance's tree."""
        self.events.publish(event)

    def record_process(self, service: str, running: Running) -> None:
        """Remember a process group: the warden kills it if the daemon dies, and a daemon
        started after a crash kills what is left of it."""
        self.warden.watch(running.pid)
        try:
            self.store.record_process(
                service,
                running.deployment,
                running.pid,
                running.pid,
                running.started_at,
                self.run_token,
            )
        except DiskFull as error:
            # A full disk never fails a start: the warden knows the group, and only a
            # daemon and warden both killed would leave it unnoticed at the next start.
            found = self.services.get(service)
            if found is not None:
                found.book.system(f"process group {running.pid} not recorded: {error}")

    def forget_process(self, pid: int) -> None:
        """The process group is gone."""
        self.warden.forget(pid)
        with contextlib.suppress(DiskFull):  # forgotten at the next start at the latest
            self.store.forget_process(pid)

    # -- commands (through the handle) -----------------------------------------------------

    def service(self, name: str) -> Service:
        """The service called ``name``, or UnknownService."""
        try:
            return self.services[name]
        except KeyError:
            raise UnknownService(f"no service named {name!r}") from None

    async def deploy(self, request: m.Deploy) -> Deployment:
        """Create or update the service, store its variables, then deploy it."""
        for key, value in {**request.env, **request.secrets}.items():
            check_env_value(check_env_key(key), value)
        service = self.services.get(request.name)
        settings, credential = request.settings, None
        if settings is not None:
            check_remote(settings.source.remote)  # refused before anything is stored
            users.check_user(settings.user)
            # The remote's password is kept apart, sealed: the settings show it as ***.
            kept = service.kept_credential() if service is not None else None
            source, credential = hide_password(settings.source, kept)
            settings = attrs.evolve(settings, source=source)
        # Refused before anything is stored: a refused first deploy leaves no service.
        wanted = settings
        if wanted is None and service is not None:
            wanted = service.settings_view().settings
        if wanted is not None:
            # The port the service holds itself is not tried: only another one is.
            held = _held_port(service) if service is not None else None
            self.check_port(request.name, wanted.port, bind=wanted.port != held)
        if service is None:
            if settings is None:
                raise UnknownService(
                    f"no service named {request.name!r}: give its settings to create it"
                )
            # Stored as the next deploy's settings, less a one-off --commit pin.
            unpinned = attrs.evolve(settings, source=attrs.evolve(settings.source, commit=None))
            try:
                created = self.store.create_service(request.name, unpinned)
            except ServiceExists:  # created by a racing request in between
                created = self.store.get_service(request.name)  # type: ignore[assignment]
            service = self.services.setdefault(request.name, Service(self, created))
            service.keep_credential(credential)  # as its settings: saved at once
        if settings is None:  # the stored settings again, with the password kept for them
            credential = service.kept_credential()
        return await service.deploy_now(settings, request.env, request.secrets, credential)

    def check_port(self, name: str, port: int | None, *, bind: bool = False) -> None:
        """Refuse ``port`` as the public port of service ``name`` if another service has
        it (stored, deploying onto it, or serving on it): Conflict. With ``bind``, also if
        another program listens on it now: PortInUse. Both are answered 409, before
        anything is stored."""
        if port is None:
            return
        for other in self.services.values():
            if other.name == name:
                continue
            view = other.settings_view()
            taken = {view.settings.port, view.active.port if view.active else None}
            if other.deploy is not None:  # its settings are saved only once it succeeds
                taken.add(other.deploy.deployment.settings.port)
            if port in taken or port == _held_port(other):
                raise Conflict(f"port {port} is already the port of service {other.name}")
        if bind:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.config.service_host, port))
                except OSError as error:
                    if error.errno == errno.EADDRINUSE:
                        raise PortInUse(
                            f"port {port} is already in use by another program"
                        ) from None
                    raise PortInUse(f"cannot listen on port {port}: {error.strerror}") from None

    async def delete(
        self, name: str, *, purge: bool = False, purge_image: bool = False
    ) -> m.Deleted:
        """Stop and remove a service (its data folder too with ``purge``, its container
        images with ``purge_image``)."""
        service = self.service(name)
        own = image_store.recorded(self, name) if purge_image else set()
        await service.delete(purge=purge)
        self.services.pop(name, None)
        await image_store.remove_unused(self, own)
        return m.Deleted(name)

    def rotate_key(self) -> m.KeyRotated:
        """Re-seal every secret under a new master key (kept in the data dir's key file)."""
        store = self.store
        if not store.key_rotatable:
            raise Conflict(
                f"the master key comes from {store.key_source}, which dployr cannot change: "
                "rotate it there, or unset it to let dployr keep the key in the data dir"
            )
        resealed = store.rotate_key()
        return m.KeyRotated(resealed, store.key_source)

    def info(self) -> m.InstanceInfo:
        """This instance, its load and its services."""
        machine = self.metrics.latest_instance()
        return m.InstanceInfo(
            id=self.id,
            name=self.name,
            hostname=socket.gethostname(),
            version=__version__,
            services=tuple(s.info() for _, s in sorted(self.services.items())),
            cpu_percent=machine.cpu_percent if machine else None,
            memory_used_bytes=machine.memory_used_bytes if machine else None,
            memory_total_bytes=machine.memory_total_bytes if machine else None,
            load=machine.load if machine else None,
            **self._disk_info(),
        )

    def _disk_info(self) -> dict[str, Any]:
        reserve = self.store.reserve
        if reserve is None:
            return {}
        reserve.refresh()  # space may have returned while nothing was written
        free: int | None = None
        with contextlib.suppress(OSError):
            free = reserve.free_bytes()
        return {
            "disk_full": reserve.full,
            "disk_free_bytes": free,
            "log_lines_dropped": reserve.lines_dropped,
        }

    def read_metrics(self, request: m.ReadMetrics) -> m.MetricsPage:
        """A service's metrics history."""
        service = self.service(request.name)
        # "The last hour" is raw samples, though a request takes a moment to arrive.
        now = time.time()
        recent = now - request.since <= RAW_RETENTION + 60
        since = max(request.since, now - RAW_RETENTION) if recent else request.since
        wanted = Resolution.RAW if recent else None
        points = self.store.metrics(service.name, since, request.until, resolution=wanted)
        resolution = points[0].resolution.value if points else Resolution.RAW.value
        return m.MetricsPage(service.name, resolution, tuple(points))

    async def read_logs(self, request: m.ReadLogs) -> m.LogPage:
        """Read a page of a service's history (in a worker thread: it touches the disk)."""
        service = self.service(request.name)
        book = service.book
        streams = set(request.streams) if request.streams else None
        limit = max(1, min(request.limit, 10_000))
        if request.tail is not None:
            tail = max(0, min(request.tail, 10_000))
            lines = await trio.to_thread.run_sync(
                lambda: book.tail(tail, streams, max_text=request.max_text)
            )
        else:
            lines = await trio.to_thread.run_sync(
                lambda: book.read(
                    after=request.after,
                    limit=limit,
                    streams=streams,
                    since=request.since,
                    max_text=request.max_text,
                )
            )
        history = book.history
        return m.LogPage(request.name, tuple(lines), history.first_cursor, history.last_cursor)


def _held_port(service: Service) -> int | None:
    """The public port the service's proxy or listening socket holds now, if any (a failed
    service keeps its proxy)."""
    if service.proxy is not None:
        return service.proxy.port
    if service.listener is not None:
        port: int = service.listener.getsockname()[1]
        return port
    return None


class _InstanceEvents:
    """The instance supervisor's sink: notice a service tree that died, then publish."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance

    def publish(self, event: SupervisionEvent, /) -> None:
        instance = self._instance
        if isinstance(event, ChildTerminated) and event.reason.abnormal:
            service = instance.services.get(event.child.id)
            if service is not None and service.tree is not None:
                service.tree_lost(event.reason.describe())
        instance.events.publish(event)
