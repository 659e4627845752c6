"""What a service needs of its instance: a small port, not the ``Instance`` class.

A service reaches the instance only through these members, so ``engine/service`` never
imports ``engine/instance`` (not even for typing): the instance satisfies the protocol,
and a test or another host of services could too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dployr.models import DeploymentStatus, Health, ServiceStatus
from dployr.supervision import ChildSpec, SupervisionEvent

if TYPE_CHECKING:
    from dployr.engine.os.users import ServiceUsers
    from dployr.engine.os.warden import Warden
    from dployr.engine.release import Running
    from dployr.store.store import Store


class ServiceConfig(Protocol):
    """The settings of the instance that its services read."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def service_host(self) -> str: ...

    @property
    def log_bytes(self) -> int: ...

    @property
    def fetch_timeout(self) -> float: ...

    @property
    def build_timeout(self) -> float: ...

    @property
    def ready_timeout(self) -> float: ...

    @property
    def connect_deadline(self) -> float: ...

    @property
    def deploy_deadline(self) -> float: ...

    @property
    def keep_releases(self) -> int: ...

    @property
    def pass_env(self) -> tuple[str, ...]: ...


class ServiceTrees(Protocol):
    """The instance supervisor, as far as a service adds and removes its own tree."""

    async def start_child(self, spec: ChildSpec, /) -> object: ...

    async def delete_child(self, child_id: str, /) -> None: ...


class InstancePort(Protocol):
    """The members of an instance that its services use."""

    @property
    def name(self) -> str:
        """The instance's name (shown in a service's info and its webhooks)."""
        ...

    @property
    def id(self) -> str:
        """The instance's id: its processes carry it, to be told apart after a crash."""
        ...

    @property
    def config(self) -> ServiceConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def supervisor(self) -> ServiceTrees: ...

    @property
    def users(self) -> ServiceUsers | None: ...

    @property
    def warden(self) -> Warden: ...

    def check_port(self, name: str, port: int | None, *, bind: bool = False) -> None:
        """Refuse ``port`` as service ``name``'s public port if another service has it."""
        ...

    def status_changed(self, service: str, status: ServiceStatus, previous: ServiceStatus) -> None:
        """Publish a service's status change."""
        ...

    def health_changed(self, service: str, health: Health, previous: Health, message: str) -> None:
        """Publish a service's health change."""
        ...

    def deployment_changed(self, service: str, deployment: int, status: DeploymentStatus) -> None:
        """Publish a deployment's new status."""
        ...

    def send_webhook(self, service: str, url: str, body: bytes) -> None:
        """Hand a webhook delivery over; never waits."""
        ...

    def supervision_event(self, event: SupervisionEvent) -> None:
        """Publish a supervision event of the service's tree."""
        ...

    def record_process(self, service: str, running: Running) -> None:
        """Remember a process group of the service (the warden kills it if the daemon dies)."""
        ...

    def forget_process(self, pid: int) -> None:
        """The process group is gone."""
        ...
