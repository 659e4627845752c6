"""dployr's configuration: one :class:`DployrConfig`, with daemon, engine and gateway sections.

Every default is written once, here, as Hypercorn's ``config.py`` does for its server:
``dployr up``'s flags show these defaults (:func:`default`), the daemon builds its root
supervisor, the instance and the gateway from the sections, and tests build a section with
the few values they change. Pure values: no trio, no I/O (an import contract holds this).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from attrs import AttrsInstance


@attrs.frozen
class EngineConfig:
    """Where an instance keeps its data, and the limits it works within."""

    data_dir: Path
    name: str = "local"
    service_host: str = "0.0.0.0"
    """The address services' public ports listen on."""
    log_bytes: int = 50 * 2**20
    """Log history kept per service; the oldest segments go first."""
    fetch_timeout: float = 300.0
    build_timeout: float = 1800.0
    ready_timeout: float = 60.0
    """How long a new release has to accept connections on its port."""
    deploy_deadline: float = 3600.0
    keep_releases: int = 5
    metrics_interval: float = 5.0
    """Seconds between samples of every service's CPU and memory."""
    connect_deadline: float = 5.0
    """Seconds a connection to a service's public port waits for a release to accept it
    (while none is up, or one is restarting) before it is closed."""
    pass_env: tuple[str, ...] = ()
    """Names of the daemon's variables every service gets too (its environment is otherwise
    clean: see :func:`dployr.engine.release.process_env`)."""
    service_users: bool = True
    """When the daemon runs as root, run each service as a user of its own (see
    :mod:`dployr.engine.os.users`); False: as the daemon's user, root."""
    cgroups: bool = True
    """Run each release, build, health check and git in a cgroup of its own where one is
    writable (see :mod:`dployr.engine.os.cgroups`); False: in process groups only."""


@attrs.frozen
class GatewayConfig:
    """Where the API and the dashboard listen."""

    host: str = "127.0.0.1"
    port: int = 7879
    """0 picks a free port (the URL the daemon prints and writes says which)."""
    shutdown: float = 10.0
    """Seconds the gateway is given to finish its requests when the daemon stops."""
    tls_cert: Path | None = None
    """The certificate (PEM, its chain after it) the API, dashboard and agents' door are
    served with over https/wss; None: plain http/ws. Given with ``tls_key``."""
    tls_key: Path | None = None
    """The private key (PEM) of ``tls_cert``."""


@attrs.frozen
class DaemonConfig:
    """The daemon's root supervisor, parent of the instance and the gateway."""

    restarts: int = 3
    """Restarts of the instance or the gateway the root allows within ``restart_period``;
    one more stops the daemon."""
    restart_period: float = 60.0
    database: str | None = None
    """Where the cluster's state is kept (instances, placement): None, ``cluster.db`` in
    the data dir; else a database URL (``dployr up --database``)."""
    local_services: bool = True
    """False: the control plane's own instance takes no new services (``dployr up
    --no-local-services``); a deploy naming no instance goes to the least loaded
    connected agent."""
    max_upload: int = 200 * 2**20
    """The largest folder the CLI may upload, in bytes packed (``dployr up --max-upload``)."""
    advertise: str | None = None
    """The URL agents (and other control planes) reach this control plane at
    (``dployr up --advertise``); None: the gateway's own URL."""


@attrs.frozen
class DployrConfig:
    """Everything ``dployr up`` runs with. The data dir is the engine's."""

    engine: EngineConfig
    gateway: GatewayConfig = GatewayConfig()
    daemon: DaemonConfig = DaemonConfig()

    @property
    def data_dir(self) -> Path:
        """Where the daemon keeps everything: the store, logs, releases, its lock."""
        return self.engine.data_dir


def default(section: type[AttrsInstance], name: str) -> Any:
    """The default of a section's field, as a flag of ``dployr up`` shows it."""
    value = attrs.fields_dict(section)[name].default
    if value is attrs.NOTHING or isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        raise ValueError(f"{section.__name__}.{name} has no plain default")
    return value
