"""The domain values every layer shares: services, settings, deployments, statuses.

Frozen attrs classes, validated when built, so that a bad name or setting is refused with
one clear sentence before anything acts on it. The store, the instance handle, the API and
the CLI all pass these (through the one cattrs converter in :mod:`dployr.serde`).

Why one module of ~560 lines: the settings schema is one value tree (a service's
settings and what they hold), validated together; serde, the blueprint and the OpenAPI
document read it whole.
"""

from __future__ import annotations

import enum
import math
import posixpath
import re
from typing import TYPE_CHECKING, Any

import attrs

from dployr.errors import SpecError
from dployr.schedule import JobOptions
from dployr.staticsite import StaticOptions

if TYPE_CHECKING:  # imported where used: importing dployr.supervision pulls in trio,
    # and the models stay pure (the protocol and the CLI import them)
    from dployr.supervision.policy import Backoff, Intensity


class InvalidName(SpecError):
    """A service name that dployr refuses."""


class InvalidSetting(SpecError):
    """A setting value that dployr refuses."""


NAME_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NAME_RULE = (
    "1 to 63 characters: lowercase letters, digits and '-', starting and ending with a "
    "letter or digit"
)


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid service name, else raise :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName(f"a service name must be text ({NAME_RULE}), not {name!r}")
    if not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise InvalidName(f"invalid service name {shown!r}: use {NAME_RULE}")
    return name


def _check_name(_: object, __: object, value: str) -> None:
    check_name(value)


class ServiceStatus(enum.Enum):
    """What a service's process is doing: exactly these five words."""

    DEPLOYING = "deploying"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    RESTARTING = "restarting"


class Health(enum.Enum):
    """Whether a service answers its health check (kept by Watchdog)."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"


class DesiredState(enum.Enum):
    """What the user asked for last: written before it is acted on."""

    RUNNING = "running"
    STOPPED = "stopped"


class DeploymentStatus(enum.Enum):
    """Where a deployment is, or how it ended."""

    PENDING = "pending"
    FETCHING = "fetching"
    BUILDING = "building"
    STARTING = "starting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Whether the deployment has ended, one way or the other."""
        return self in (DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED)


MAX_COMMAND = 10_000
MAX_DESCRIPTION = 2_000


def _check_unicode(name: str, value: str) -> None:
    """Refuse text that cannot be written as UTF-8 (a lone surrogate such as ``\\ud800``)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidSetting(f"{name} holds text that is not valid Unicode") from None


def _check_command(required: bool) -> Any:
    def check(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
        name = attribute.name.replace("_", "-")
        if value is None or value == "":
            if required:
                raise InvalidSetting(f"{name} is required")
            return
        if not isinstance(value, str):
            raise InvalidSetting(f"{name} must be text, not {value!r}")
        if len(value) > MAX_COMMAND:
            raise InvalidSetting(f"{name} is longer than {MAX_COMMAND} characters")
        if "\x00" in value:
            raise InvalidSetting(f"{name} may not contain a NUL character")
        _check_unicode(name, value)
        if not value.strip():
            raise InvalidSetting(f"{name} is blank")

    return check


def _check_port(_: object, __: object, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidSetting(f"port must be a whole number from 1 to 65535, not {value!r}")


def _check_working_dir(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or "\x00" in value:
        raise InvalidSetting(f"working-dir must be a relative path, not {value!r}")
    _check_unicode("working-dir", value)
    normal = posixpath.normpath(value)
    if value.startswith("/") or normal == ".." or normal.startswith("../"):
        raise InvalidSetting(
            f"working-dir {value!r} must be a path inside the release folder (relative, no '..')"
        )


def _check_description(_: object, __: object, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidSetting(f"description must be text, not {value!r}")
    if len(value) > MAX_DESCRIPTION:
        raise InvalidSetting(f"description is longer than {MAX_DESCRIPTION} characters")
    _check_unicode("description", value)


def _check_health_path(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2000:
        raise InvalidSetting(f"health-check must be a URL path starting with '/', not {value!r}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidSetting(f"health-check path {value!r} may not contain spaces")


def _check_grace(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSetting(f"stop-grace must be a number of seconds, not {value!r}")
    if not (0 <= value <= 3600) or math.isnan(value):
        raise InvalidSetting(f"stop-grace must be between 0 and 3600 seconds, not {value!r}")


def _check_ref(what: str) -> Any:
    def check(_: object, __: object, value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value or value.startswith("-") or len(value) > 255:
            raise InvalidSetting(f"{what} {value!r} is not a valid git {what}")
        if any(ch.isspace() or not ch.isprintable() for ch in value) or ".." in value:
            raise InvalidSetting(f"{what} {value!r} is not a valid git {what}")

    return check


def _check_remote(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidSetting("remote is required: a git URL or a local path")
    if len(value) > 4096 or "\x00" in value or "\n" in value:
        raise InvalidSetting("remote is not a valid URL or path")


@attrs.frozen
class Source:
    """Where a service's code comes from: a git repository or a local folder.

    ``remote`` is a URL (``https://``, ``ssh://``, ``git://``, ``file://``, or scp-style
    ``user@host:path``) or a local path. Which forms are allowed is checked by
    :mod:`dployr.engine.sources` before git ever runs.
    """

    remote: str = attrs.field(validator=_check_remote)
    branch: str | None = attrs.field(default=None, validator=_check_ref("branch"))
    commit: str | None = attrs.field(default=None, validator=_check_ref("commit"))


DEFAULT_STOP_GRACE = 10.0


class HealthKind(enum.Enum):
    """How Watchdog probes a service."""

    HTTP = "http"
    """``GET http://127.0.0.1:<private port><health_check>``; 2xx and 3xx are healthy."""
    TCP = "tcp"
    """A TCP connection to the private port is accepted."""
    COMMAND = "command"
    """A shell command, run in the release folder, exits 0."""


def _positive(limit: float) -> Any:
    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        name = "health " + attribute.name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidSetting(f"{name} must be a number, not {value!r}")
        if not 0 < value <= limit:
            raise InvalidSetting(f"{name} must be more than 0 and at most {limit:g}, not {value!r}")

    return check


def _count(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "restart_after":
        return
    name = "health " + attribute.name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise InvalidSetting(f"{name} must be a whole number from 1 to 1000, not {value!r}")


def _start_period(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise InvalidSetting(f"health start-period must be 0 to 3600 seconds, not {value!r}")


def _webhook(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s]{1,2000}", value):
        raise InvalidSetting(f"health webhook must be an http:// or https:// URL, not {value!r}")


@attrs.frozen
class HealthOptions:
    """How Watchdog checks a service; the HTTP path itself is the ``health_check`` setting.

    Without a ``kind``, a service with a ``health_check`` path gets an HTTP check and one
    without gets none.
    """

    kind: HealthKind | None = None
    command: str | None = attrs.field(default=None, validator=_check_command(required=False))
    interval: float = attrs.field(default=10.0, validator=_positive(86400))
    timeout: float = attrs.field(default=5.0, validator=_positive(3600))
    failures: int = attrs.field(default=3, validator=_count)
    """Consecutive failures before the service is ``degraded``."""
    successes: int = attrs.field(default=1, validator=_count)
    """Consecutive successes before it is ``healthy`` again."""
    start_period: float = attrs.field(default=0.0, validator=_start_period)
    """Seconds after a release starts during which failures do not count."""
    restart_after: int | None = attrs.field(default=None, validator=_count)
    """Restart the release after this many consecutive failures (off by default)."""
    webhook: str | None = attrs.field(default=None, validator=_webhook)
    """A URL that receives a JSON POST at every health change."""


class RestartMode(enum.Enum):
    """When a release's process is started again after it exits."""

    ALWAYS = "always"
    """After every exit, clean or not (the default)."""
    ON_FAILURE = "on-failure"
    """Only after an exit with a non-zero code or a signal."""
    NEVER = "never"
    """Never: the service is ``stopped`` after a clean exit, ``failed`` otherwise."""


def _seconds(limit: float) -> Any:
    def check(_: object, attribute: attrs.Attribute[float], value: float) -> None:
        name = attribute.name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidSetting(f"{name} must be a number of seconds, not {value!r}")
        if not 0 <= value <= limit:
            raise InvalidSetting(f"{name} must be from 0 to {limit:g} seconds, not {value!r}")

    return check


def _max_restarts(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise InvalidSetting(f"max-restarts must be a whole number from 0 to 10000, not {value!r}")


@attrs.frozen
class RestartPolicy:
    """How a service's process is restarted, and when a release counts as started.

    The defaults are dployr's long-standing ones: the first restart at once, then after
    ``delay`` seconds, doubling up to ``max_delay``; more than ``max_restarts`` restarts
    within ``window`` seconds and the service is ``failed``. A process that has been up
    ``min_uptime`` seconds counts as started: the backoff starts over after it, and a
    deploy without a health check waits for it before it succeeds.
    """

    mode: RestartMode = RestartMode.ALWAYS
    delay: float = attrs.field(default=1.0, validator=_seconds(3600))
    """The delay before the second restart of a crash run (the first is immediate)."""
    max_delay: float = attrs.field(default=30.0, validator=_seconds(3600))
    max_restarts: int = attrs.field(default=5, validator=_max_restarts)
    window: float = attrs.field(default=60.0, validator=_seconds(86400))
    min_uptime: float = attrs.field(default=5.0, validator=_seconds(3600))

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.delay:
            raise InvalidSetting(
                f"restart-delay's maximum ({self.max_delay:g} s) must be at least its first "
                f"delay ({self.delay:g} s)"
            )
        if self.window <= 0 and self.max_restarts > 0:
            raise InvalidSetting("restart-window must be more than 0 seconds")
        if self.mode is not RestartMode.NEVER:
            # A process that crashes at once must still exhaust max-restarts within one
            # window (dployr.supervision.policy.check_verdict_reachable), or it never fails.
            waits = self.backoff().total_delay(self.max_restarts)
            if self.max_restarts > 0 and waits >= self.window:
                raise InvalidSetting(
                    f"the restart delays of {self.max_restarts} restarts add up to {waits:g} s,"
                    f" not less than restart-window ({self.window:g} s), so a crash loop would"
                    " never be stopped: lower restart-delay or max-restarts, or raise"
                    " restart-window"
                )

    def backoff(self) -> Backoff:
        """The delays between restarts of one crash run, as the supervisor applies them."""
        from dployr.supervision.policy import Backoff  # noqa: PLC0415 (pulls trio)

        return Backoff(initial=self.delay, cap=self.max_delay, stable=self.min_uptime)

    def intensity(self) -> Intensity:
        """The restart budget: more than ``max_restarts`` restarts in ``window`` fails."""
        from dployr.supervision.policy import Intensity  # noqa: PLC0415 (pulls trio)

        return Intensity(self.max_restarts, self.window if self.window > 0 else 1.0)


class RolloutMode(enum.Enum):
    """How a deploy replaces the running release with the new one."""

    AUTO = "auto"
    """``overlap`` for a service with a port, ``stop-first`` for one without (a worker)."""
    OVERLAP = "overlap"
    """The new release starts beside the old one, which stops once the new one is ready."""
    STOP_FIRST = "stop-first"
    """The old release stops before the new one starts (it is started again if the new
    one fails): the two never run at once."""


_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}")


def _check_user(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise InvalidSetting(f"user must be a user name or a numeric id, not {value!r}")


def _check_image(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if (
        not isinstance(value, str)
        or not value
        or value.startswith("-")
        or len(value) > 4096
        or any(ch.isspace() or not ch.isprintable() for ch in value)
    ):
        raise InvalidSetting(
            f"image must be a reference such as registry.example/team/api:1.4, or "
            f"oci-archive:PATH or docker-archive:PATH, not {value!r}"
        )


def _check_dockerfile(_: object, __: object, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise InvalidSetting(f"dockerfile must be a path in the release folder, not {value!r}")
    _check_working_dir(None, None, value)


class ServiceType(enum.Enum):
    """What kind of service it is, which decides how dployr runs it."""

    WEB = "web"
    """A long-running process that serves its port (the default for a service with one)."""
    WORKER = "worker"
    """A long-running process without a port (the default for a service without one)."""
    STATIC = "static"
    """A folder of the release, served on the service's port by a file server that dployr
    runs (Caddy): no run command."""
    JOB = "job"
    """A command run on a schedule or when asked, each run recorded (see
    :mod:`dployr.schedule`): no port, no long-running process."""


def _default_type(settings: ServiceSettings) -> ServiceType:
    if settings.job is not None:
        return ServiceType.JOB
    return ServiceType.WEB if settings.port is not None else ServiceType.WORKER


@attrs.frozen
class ServiceSettings:
    """A service's configuration. Changes apply at the next deploy."""

    source: Source
    run_cmd: str = attrs.field(default="", validator=_check_command(required=False))
    """The service's command; every type but ``static`` needs one (for a container
    service, the container's command: the image's own when empty)."""
    build_cmd: str | None = attrs.field(default=None, validator=_check_command(required=False))
    port: int | None = attrs.field(default=None, validator=_check_port)
    working_dir: str = attrs.field(default=".", validator=_check_working_dir)
    description: str = attrs.field(default="", validator=_check_description)
    health_check: str | None = attrs.field(default=None, validator=_check_health_path)
    stop_grace: float = attrs.field(default=DEFAULT_STOP_GRACE, validator=_check_grace)
    health: HealthOptions = attrs.field(factory=HealthOptions)
    user: str | None = attrs.field(default=None, validator=_check_user)
    """The user its processes run as (a name or an id), when dployr runs as root; None: a
    user of its own that dployr allocates (see :mod:`dployr.engine.os.users`)."""
    rollout: RolloutMode = RolloutMode.AUTO
    """Whether a deploy overlaps the old and new releases (see :class:`RolloutMode`)."""
    restart: RestartPolicy = attrs.field(factory=RestartPolicy)
    """How the process is restarted; it applies at the next start of a release."""
    listen_fds: bool = False
    """Hand the public listening socket to each release as fd 3 (``LISTEN_FDS``) instead
    of proxying: for apps that can take a socket from their parent."""
    job: JobOptions | None = None
    """A job's schedule and the rules of its runs (see :mod:`dployr.schedule`); None for
    other services, and the defaults for a job."""
    type: ServiceType = attrs.field(default=attrs.Factory(_default_type, takes_self=True))
    """What kind of service it is; without one, ``job`` with job options, else ``web`` with
    a port and ``worker`` without."""
    static: StaticOptions = attrs.field(factory=StaticOptions)
    """How a ``static`` site is published (see :mod:`dployr.staticsite`)."""

    image: str | None = attrs.field(default=None, validator=_check_image)
    """A container image to run instead of code: a registry reference (tag or digest),
    ``oci-archive:PATH`` or ``docker-archive:PATH`` (see :mod:`dployr.engine.podman`)."""
    dockerfile: str | None = attrs.field(default=None, validator=_check_dockerfile)
    """A Dockerfile in the release folder: the deploy builds it with podman and runs it."""
    build_args: dict[str, str] = attrs.field(
        factory=dict, validator=lambda _, __, value: _check_build_args(value), hash=False
    )
    """Values of the Dockerfile's ``ARG``s (``--build-arg KEY=VALUE``): ``podman build``
    gets them from its environment, never on its command line."""

    def __attrs_post_init__(self) -> None:
        if self.type is ServiceType.STATIC:
            if self.run_cmd:
                raise InvalidSetting("a static site has no run-cmd: dployr serves its files itself")
            if self.port is None:
                raise InvalidSetting("a static site needs a port to be served on")
            if self.listen_fds:
                raise InvalidSetting("listen-fds is not for a static site")
        elif not self.run_cmd and self.image is None and self.dockerfile is None:
            raise InvalidSetting("run-cmd is required")
        elif self.static != StaticOptions():
            raise InvalidSetting("publish-dir, spa, redirects and headers are for --type static")
        if self.type is ServiceType.JOB:
            if self.port is not None:
                raise InvalidSetting("a job has no port: it runs a command, it serves nothing")
        elif self.job is not None:
            raise InvalidSetting(
                "schedule, timezone, concurrency, timeout and starting-deadline are for --type job"
            )
        if self.image is not None and self.dockerfile is not None:
            raise InvalidSetting("give an image or a dockerfile, not both")
        if self.build_args and self.dockerfile is None:
            raise InvalidSetting("build args are for an image built from a dockerfile")
        kind = self.health.kind
        if kind is HealthKind.COMMAND and not self.health.command:
            raise InvalidSetting("a command health check needs its command")
        if kind in (HealthKind.HTTP, HealthKind.TCP) and self.port is None:
            raise InvalidSetting(f"a {kind.value} health check needs the service to have a port")
        if self.listen_fds and self.port is None:
            raise InvalidSetting("listen-fds needs the service to have a port")

    @property
    def health_kind(self) -> HealthKind | None:
        """The kind of check Watchdog runs, or None when the service has none."""
        if self.health.kind is not None:
            return self.health.kind
        return HealthKind.HTTP if self.health_check else None


@attrs.frozen
class EnvVar:
    """One environment variable of a service; a secret's value never leaves the daemon."""

    key: str
    value: str
    secret: bool = False


ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
RESERVED_ENV = frozenset({"PORT", "DPLOYR_SERVICE", "DPLOYR_DEPLOYMENT", "DPLOYR_DATA_DIR"})


def check_env_key(key: object) -> str:
    """Return ``key`` if it can name an environment variable, else raise InvalidSetting."""
    if not isinstance(key, str) or not ENV_KEY.fullmatch(key):
        raise InvalidSetting(
            f"invalid environment variable name {key!r}: use letters, digits and '_', "
            "not starting with a digit"
        )
    if key in RESERVED_ENV:
        raise InvalidSetting(f"{key} is set by dployr and cannot be changed")
    return key


PODMAN_OWN_ENV = frozenset(
    {"PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "CONTAINERS_CONF",
     "CONTAINERS_REGISTRIES_CONF", "CONTAINERS_STORAGE_CONF", "REGISTRY_AUTH_FILE"}
)  # fmt: skip
"""The variables podman reads for its own configuration (engine/podman.py passes them on
from the daemon's): a build arg cannot take their names, as it is given in podman's
environment."""


def _check_build_args(args: object) -> None:
    if not isinstance(args, dict):
        raise InvalidSetting('build args must be a table of NAME = "value"')
    for key, value in args.items():
        check_env_key(key)
        if key in PODMAN_OWN_ENV or key == "DPLOYR_INSTANCE":
            raise InvalidSetting(f"build arg {key} is a name podman itself reads: rename it")
        check_env_value(key, value)


def check_env_value(key: str, value: object) -> str:
    """Return ``value`` if it can be an environment variable's value."""
    if not isinstance(value, str) or "\x00" in value or len(value) > 65536:
        raise InvalidSetting(f"the value of {key} must be text without NUL, up to 64 KiB")
    return value


@attrs.frozen
class Deployment:
    """One deploy (or rollback) of a service: what was deployed, and how it went."""

    id: int
    """Its number among the service's deployments: 1, 2, 3 ..."""
    service: str
    status: DeploymentStatus
    settings: ServiceSettings
    created_at: float
    """Wall-clock seconds (Unix time)."""
    revision: str | None = None
    """The git commit deployed, or a digest of a plain folder's content."""
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    """Why it failed, in one sentence."""
    output_tail: tuple[str, ...] = ()
    """The last lines of output of a failed build, or of a new release that died at start."""
    rollback_of: int | None = None
    """For a rollback: the deployment it went back to."""
    release: int | None = None
    """The deployment whose release folder this one runs: its own (None), or for a rollback
    the folder of the release it went back to."""
    image: str | None = None
    """For a container service: the image it runs, pinned (``repository@sha256:…`` of a
    registry image, or a local image's id), so a rollback runs the same bytes."""

    @property
    def folder(self) -> int:
        """The number of the release folder this deployment runs."""
        return self.id if self.release is None else self.release
