"""``dployr up``: run the daemon in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

import asyncclick as click

from dployr.cli import Options
from dployr.config import DaemonConfig, DployrConfig, EngineConfig, GatewayConfig, default


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where dployr keeps its data [default: $DPLOYR_HOME, else /var/lib/dployr as "
    "root, else ~/.local/share/dployr].",
)
@click.option(
    "--host",
    default=default(GatewayConfig, "host"),
    show_default=True,
    help="Address of the API and dashboard.",
)
@click.option(
    "--port",
    default=default(GatewayConfig, "port"),
    show_default=True,
    type=click.IntRange(0, 65535),
)
@click.option(
    "--service-host",
    default=default(EngineConfig, "service_host"),
    show_default=True,
    help="Address services' public ports listen on.",
)
@click.option(
    "--metrics-interval",
    default=default(EngineConfig, "metrics_interval"),
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds between samples of each service's CPU and memory.",
)
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Give every service this variable of dployr's own environment (services get a "
    "clean one: PATH, HOME, LANG, TZ and their own variables). Repeatable.",
)
@click.option(
    "--shared-user",
    is_flag=True,
    help="As root, run services as root too, not each as a user of its own "
    "(services can then read dployr's keys and each other's files).",
)
@click.option(
    "--database",
    metavar="URL",
    help="Keep the cluster's state (instances, placement) in this database "
    "[default: SQLite in the data dir].",
)
@click.pass_obj
async def up(
    options: Options,
    data_dir: Path | None,
    host: str,
    port: int,
    service_host: str,
    metrics_interval: float,
    pass_env: tuple[str, ...],
    shared_user: bool,
    database: str | None,
) -> None:
    """Start dployr: the supervisor of your services, the API and the dashboard.

    Ctrl-C (or SIGTERM) stops every service gracefully and exits 0.
    """
    import gc

    # No collection while start-up only builds what lives as long as the daemon (modules,
    # the services, the app): the daemon freezes it all, then collects again (daemon.run).
    gc.disable()
    from dployr.cli._runtime import until_signalled
    from dployr.daemon import daemon
    from dployr.daemon.paths import default_data_dir
    from dployr.models import check_env_key

    root = (data_dir or options.data_dir or default_data_dir()).expanduser().resolve()
    config = DployrConfig(
        EngineConfig(
            data_dir=root,
            service_host=service_host,
            metrics_interval=metrics_interval,
            pass_env=tuple(check_env_key(name) for name in pass_env),
            service_users=not shared_user,
        ),
        gateway=GatewayConfig(host=host, port=port),
        daemon=DaemonConfig(database=database),
    )

    async def serve() -> None:
        await daemon.run(config)

    if await until_signalled(serve):
        click.echo("dployr stopped: every service was stopped")
