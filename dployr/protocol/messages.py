"""An instance's requests and replies: the one interface to its services.

The gateway (REST, WebSocket, dashboard) and the CLI reach services only through these.
They are plain, frozen, serialisable values (attrs, encoded by :mod:`dployr.protocol.codec`),
so the same requests and replies can cross a WebSocket to a remote instance agent later: a
second machine is a transport change, not a rewrite.

Each request is a :class:`Request` whose type parameter is its reply (see
:func:`reply_type`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin

import attrs

from dployr.errors import SpecError
from dployr.logs.history import LogLine
from dployr.metrics import MetricPoint
from dployr.models import (
    NAME_PATTERN,
    NAME_RULE,
    Deployment,
    EnvVar,
    Health,
    HealthOptions,
    RestartPolicy,
    RolloutMode,
    ServiceSettings,
    ServiceStatus,
    ServiceType,
    Source,
    check_name,
)
from dployr.schedule import Concurrency, JobOptions, JobRun
from dployr.staticsite import StaticOptions

R = TypeVar("R")


class Request(Generic[R]):
    """Base of every request; ``R`` is the type of its reply."""


def reply_type(request: type[Request[Any]]) -> Any:
    """The type of the reply to a request class (``ServiceInfo`` for ``GetService``)."""
    for base in getattr(request, "__orig_bases__", ()):
        if get_origin(base) is Request:
            return get_args(base)[0]
    raise TypeError(f"not a request class: {request!r}")


def _name(_: object, __: object, value: str) -> None:
    check_name(value)


def check_instance_name(name: object) -> str:
    """Return ``name`` if it is a valid instance name (the rule of service names), else
    raise SpecError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = name if not isinstance(name, str) or len(name) <= 40 else name[:40] + "…"
        raise SpecError(f"invalid instance name {shown!r}: use {NAME_RULE}")
    return name


def _instance_name(_: object, __: object, value: str) -> None:
    check_instance_name(value)


def _some_instance_name(_: object, __: object, value: str | None) -> None:
    if value is not None:
        check_instance_name(value)


def _frozen_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value or {})


# -- replies ---------------------------------------------------------------------------


@attrs.frozen
class ServiceInfo:
    """What a service is and does now: the fields of ``dployr get`` and ``service status``."""

    name: str
    instance: str
    status: ServiceStatus
    health: Health
    pid: int | None
    port: int | None
    """The public port of the running release, else of the settings."""
    restarts: int
    deployment: int | None
    """The active deployment's id."""
    description: str
    deploying: int | None
    """The deployment in progress, if any."""
    since: float
    """When the status last changed (Unix time)."""
    message: str
    """The last event worth showing: "exited with code 1", "gave up after …"."""
    created_at: float
    last_deploy_at: float | None
    stale: bool = False
    """Last known: its instance is away, so this is what it last said (see
    dployr/cluster/router.py)."""


@attrs.frozen
class SettingsView:
    """A service's settings, and which of them wait for the next deploy."""

    name: str
    settings: ServiceSettings
    active: ServiceSettings | None
    """The settings the running release was deployed with."""
    pending: tuple[str, ...]
    """The settings changed since the active deployment: they apply at the next deploy."""
    data_dir: str
    """The service's persistent folder outside its releases (``$DPLOYR_DATA_DIR``)."""


@attrs.frozen
class EnvListing:
    """A service's environment, secrets masked, and when a change applies."""

    name: str
    vars: tuple[EnvVar, ...]
    applies: str
    """"at the next start, restart or deploy", or "now: the service was restarted"."""


@attrs.frozen
class LogPage:
    """Log lines, oldest first, and the cursors history holds."""

    name: str
    lines: tuple[LogLine, ...]
    first_cursor: int
    last_cursor: int


@attrs.frozen
class InstanceInfo:
    """One instance (machine), its load, and the services it runs."""

    id: str
    name: str
    hostname: str
    version: str
    services: tuple[ServiceInfo, ...]
    cpu_percent: float | None = None
    """Of the whole machine (0-100), at the last metrics sample."""
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    load: tuple[float, float, float] | None = None
    disk_full: bool = False
    """The data dir's disk is full: log history is paused (lines are counted, not
    written) and the database writes in its reserve, until room is made."""
    disk_free_bytes: int | None = None
    """Bytes free on the data dir's disk, beside the reserve dployr holds back."""
    log_lines_dropped: int = 0
    """Log lines of its services (deleted ones too) not written to history since the
    daemon started."""


InstanceState = Literal["connected", "away", "pending"]
"""``connected``: it answers now; ``away``: its agent is not connected (its services keep
running there, shown as last known); ``pending``: added, its join token not used yet."""


@attrs.frozen
class InstanceView:
    """One instance of the cluster as the control plane sees it: ``dployr instances``."""

    name: str
    state: InstanceState
    id: str | None = None
    """The instance's own id (known once it has answered)."""
    hostname: str | None = None
    address: str | None = None
    """The agent's address as last seen (None for the local instance)."""
    version: str | None = None
    """Its dployr version."""
    last_seen: float | None = None
    """When it last answered (Unix time); now for a connected one."""
    cpu_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    disk_free_bytes: int | None = None
    disk_full: bool = False
    log_lines_dropped: int = 0
    """Log lines not written to history since its daemon started (a full disk)."""
    services: tuple[ServiceInfo, ...] = ()
    """Its services (as last known, ``stale``, when it is away)."""
    takes_services: bool = True
    """False for the control plane's own instance under ``dployr up --no-local-services``:
    a deploy naming no instance places no new service on it."""

    @classmethod
    def of(
        cls, info: InstanceInfo, *, address: str | None = None, last_seen: float | None = None
    ) -> InstanceView:
        """A connected instance, from what it says of itself."""
        return cls(
            name=info.name,
            state="connected",
            id=info.id,
            hostname=info.hostname,
            address=address,
            version=info.version,
            last_seen=last_seen,
            cpu_percent=info.cpu_percent,
            memory_used_bytes=info.memory_used_bytes,
            memory_total_bytes=info.memory_total_bytes,
            disk_free_bytes=info.disk_free_bytes,
            disk_full=info.disk_full,
            log_lines_dropped=info.log_lines_dropped,
            services=info.services,
        )


@attrs.frozen
class ControlPlaneView:
    """One control plane (``dployr up``) of the cluster: ``dployr control-planes``.

    Every control plane sharing the cluster state lists the same ones, each with whether it
    leads; ``is_self`` (``self`` on the wire) marks the one that answered.
    """

    id: str
    """Its id, new at each start."""
    url: str
    """Where agents reach it (``dployr up --advertise``)."""
    started_at: float
    last_seen: float
    """When it last said it was alive (Unix time; every 5 s while it runs)."""
    leads: bool
    """Whether it leads the cluster (runs the background work), as it last recorded."""
    leader_since: float | None = None
    is_self: bool = False
    """Whether it is the control plane that answered."""


@attrs.frozen
class JoinTokenView:
    """A new instance's join token: shown once, for ``dployr agent --join URL --token T``."""

    instance: str
    token: str
    expires_at: float


@attrs.frozen
class MetricsPage:
    """A service's CPU and memory over a time range, oldest first."""

    name: str
    resolution: str
    """``raw`` (every sample, within the last hour) or ``minute`` (mean and max)."""
    points: tuple[MetricPoint, ...]


@attrs.frozen
class KeyRotated:
    """Every secret is sealed under a new master key, and the key file holds it."""

    resealed: int
    """How many values were sealed again."""
    key_file: str


@attrs.frozen
class ImagesPruned:
    """The container images removed from podman's store (engine/images.py)."""

    removed: tuple[str, ...]


@attrs.frozen
class Deleted:
    """The service is gone (its configuration, releases and history)."""

    name: str


# -- requests --------------------------------------------------------------------------


@attrs.frozen
class Deploy(Request[Deployment]):
    """Create or update a service, then deploy it; answered with the deployment at once.

    Without ``settings`` the service's stored settings are deployed again.
    """

    name: str = attrs.field(validator=_name)
    settings: ServiceSettings | None = None
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    secrets: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    instance: str | None = attrs.field(default=None, validator=_some_instance_name)
    """The instance to run it on: another than its own moves it there (the old one is
    deleted once the new one runs). None: where it is, else the local instance."""


@attrs.frozen
class Start(Request[ServiceInfo]):
    """Start a stopped or failed service with its active deployment (a fresh budget)."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class Stop(Request[ServiceInfo]):
    """Stop a service: SIGTERM, its grace, SIGKILL; it stays stopped across daemon restarts."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class Restart(Request[ServiceInfo]):
    """Run the service's deployment again with the current environment.

    A service with a port is restarted without downtime (the new process starts beside
    the old one); ``hard`` stops, then starts.
    """

    name: str = attrs.field(validator=_name)
    hard: bool = False


@attrs.frozen
class Rollback(Request[Deployment]):
    """Switch to a kept release without rebuilding: ``deployment``, else the previous one."""

    name: str = attrs.field(validator=_name)
    deployment: int | None = None


@attrs.frozen
class Delete(Request[Deleted]):
    """Stop a service and remove its configuration, releases and history.

    Its data folder (``$DPLOYR_DATA_DIR``) is kept, for a service created again with the
    same name, unless ``purge``.
    """

    name: str = attrs.field(validator=_name)
    purge: bool = False
    purge_image: bool = False
    """Also remove its images from podman's store (a container service's)."""


@attrs.frozen
class PruneImages(Request[ImagesPruned]):
    """Remove the images of dployr's deployments that no kept release runs."""


@attrs.frozen
class GetService(Request[ServiceInfo]):
    """One service's status."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class ListServices(Request[tuple[ServiceInfo, ...]]):
    """Every service of the instance, by name."""


@attrs.frozen
class GetSettings(Request[SettingsView]):
    """A service's settings."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class SettingsChange:
    """The settings to change; ``None`` leaves a field as it is, ``clear`` removes one."""

    source: Source | None = None
    run_cmd: str | None = None
    build_cmd: str | None = None
    port: int | None = None
    working_dir: str | None = None
    description: str | None = None
    health_check: str | None = None
    stop_grace: float | None = None
    health: HealthOptions | None = None
    restart: RestartPolicy | None = None
    listen_fds: bool | None = None
    user: str | None = None
    rollout: RolloutMode | None = None
    job: JobOptions | None = None
    service_type: ServiceType | None = None
    """The setting ``type`` (a message's own ``type`` is its tag on the wire); a new type
    drops what only the old one had (see ``Service.update_settings``)."""
    static: StaticOptions | None = None
    """A static site's publishing, whole (what it leaves out takes its default)."""
    clear: frozenset[str] = frozenset()
    """Optional settings to remove: ``port``, ``build_cmd``, ``health_check``."""


@attrs.frozen
class UpdateSettings(Request[SettingsView]):
    """Change settings: stored now, applied at the next deploy; nothing is restarted."""

    name: str = attrs.field(validator=_name)
    change: SettingsChange


@attrs.frozen
class ListEnv(Request[EnvListing]):
    """A service's environment variables (secret values masked)."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class SetEnv(Request[EnvListing]):
    """Set variables: stored now, applied at the next start, restart or deploy."""

    name: str = attrs.field(validator=_name)
    values: Mapping[str, str] = attrs.field(converter=_frozen_map)
    secret: bool = False
    restart: bool = False


@attrs.frozen
class UnsetEnv(Request[EnvListing]):
    """Remove variables: applied at the next start, restart or deploy."""

    name: str = attrs.field(validator=_name)
    keys: tuple[str, ...]
    restart: bool = False


@attrs.frozen
class ReadLogs(Request[LogPage]):
    """Read a service's log history.

    ``tail`` gives the last N lines; ``after`` the lines after a cursor; ``since`` the lines
    from a time on; ``streams`` filters (``{"build"}`` for build output only).
    """

    name: str = attrs.field(validator=_name)
    tail: int | None = None
    after: int | None = None
    since: float | None = None
    streams: frozenset[str] | None = None
    limit: int = 1000
    max_text: int | None = None
    """End the page once its lines hold this many characters (the API's bound)."""


@attrs.frozen
class ListDeployments(Request[tuple[Deployment, ...]]):
    """A service's deployments, newest first."""

    name: str = attrs.field(validator=_name)
    limit: int = 50


@attrs.frozen
class GetInstance(Request[InstanceInfo]):
    """This instance and its services."""


@attrs.frozen
class ListInstances(Request[tuple[InstanceView, ...]]):
    """Every instance of the cluster, the local one first, then by name."""


@attrs.frozen
class AddInstance(Request[JoinTokenView]):
    """Add an instance: its one-time join token, for its agent to join with."""

    name: str = attrs.field(validator=_instance_name)


@attrs.frozen
class RemoveInstance(Request[Deleted]):
    """Remove an instance: its agent's credential is revoked at once."""

    name: str = attrs.field(validator=_instance_name)


@attrs.frozen
class RotateKey(Request[KeyRotated]):
    """Seal every secret (variables, git passwords) under a new master key."""


@attrs.frozen
class ReadMetrics(Request[MetricsPage]):
    """A service's metrics history from ``since`` to ``until`` (Unix times)."""

    name: str = attrs.field(validator=_name)
    since: float
    until: float | None = None


# -- scheduled jobs (a service of type job; see dployr/engine/jobs) ---------------------


@attrs.frozen
class JobInfo:
    """A job's schedule, its next due time and its last runs."""

    name: str
    schedule: str | None
    timezone: str
    concurrency: Concurrency
    timeout: float
    starting_deadline: float | None
    next_run: float | None
    """When it next falls due (Unix seconds); None without a schedule or while stopped."""
    active: tuple[int, ...]
    """The runs in progress."""
    runs: tuple[JobRun, ...]
    """The last runs, newest first."""


@attrs.frozen
class GetJob(Request[JobInfo]):
    """A job's schedule, next run and last runs."""

    name: str = attrs.field(validator=_name)
    limit: int = 10


@attrs.frozen
class ListRuns(Request[tuple[JobRun, ...]]):
    """A job's last runs, newest first."""

    name: str = attrs.field(validator=_name)
    limit: int = 20


@attrs.frozen
class RunJob(Request[JobRun]):
    """Start a run of the job now (as its concurrency allows); its record once started."""

    name: str = attrs.field(validator=_name)


@attrs.frozen
class ReadRunLogs(Request[LogPage]):
    """The lines of one run (its output and dployr's lines about it), after a cursor."""

    name: str = attrs.field(validator=_name)
    run: int
    after: int | None = None
    limit: int = 1000


REQUESTS: tuple[type[Request[Any]], ...] = (
    Deploy,
    Start,
    Stop,
    Restart,
    Rollback,
    Delete,
    GetService,
    ListServices,
    GetSettings,
    UpdateSettings,
    ListEnv,
    SetEnv,
    UnsetEnv,
    ReadLogs,
    ListDeployments,
    GetInstance,
    ListInstances,
    AddInstance,
    RemoveInstance,
    RotateKey,
    ReadMetrics,
    GetJob,
    ListRuns,
    RunJob,
    ReadRunLogs,
)
"""Every request an instance answers."""
