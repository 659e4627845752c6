"""``dployr up``: run the daemon in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

import asyncclick as click

from dployr.cli import Options
from dployr.cli._engine import engine_config, engine_options
from dployr.config import DaemonConfig, DployrConfig, GatewayConfig, default


class _Size(click.ParamType[int]):
    """A size in bytes: a whole number, or one with K, M or G (KiB, MiB, GiB)."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        shift = {"K": 10, "M": 20, "G": 30}.get(text[-1:], 0)
        number = text[:-1] if shift else text
        if not number.isdigit() or int(number) == 0:
            self.fail(f"{value!r} is not a size (200M, 1G, 500K or bytes)", param, ctx)
        return int(number) << shift


SIZE = _Size()


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
@engine_options("dployr's")
@click.option(
    "--database",
    metavar="URL",
    help="Keep the cluster's state (instances, placement) in this database "
    "[default: SQLite in the data dir].",
)
@click.option(
    "--max-upload",
    type=SIZE,
    default="200M",
    show_default=True,
    help="The largest folder `dployr deploy` may upload, packed (K, M or G: KiB, MiB, GiB).",
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
    max_upload: int,
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

    root = (data_dir or options.data_dir or default_data_dir()).expanduser().resolve()
    config = DployrConfig(
        engine_config(root, service_host, metrics_interval, pass_env, shared_user),
        gateway=GatewayConfig(host=host, port=port),
        daemon=DaemonConfig(database=database, max_upload=max_upload),
    )

    async def serve() -> None:
        await daemon.run(config)

    if await until_signalled(serve):
        click.echo("dployr stopped: every service was stopped")
