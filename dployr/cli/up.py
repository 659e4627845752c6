"""``dployr up``: run the daemon in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

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
@click.option(
    "--tls-cert",
    metavar="PEM",
    type=click.Path(path_type=Path),
    help="Serve the API, the dashboard and the agents' door over https/wss with this "
    "certificate (PEM, its chain after it); with --tls-key.",
)
@click.option(
    "--tls-key",
    metavar="PEM",
    type=click.Path(path_type=Path),
    help="The private key (PEM, unencrypted) of --tls-cert.",
)
@engine_options("dployr's")
@click.option(
    "--database",
    metavar="URL",
    help="Keep the cluster's state (instances, placement) in this database "
    "[default: SQLite in the data dir].",
)
@click.option(
    "--local-services/--no-local-services",
    default=default(DaemonConfig, "local_services"),
    show_default=True,
    help="Whether this machine's own instance takes new services; with "
    "--no-local-services it only runs the control plane, and a deploy naming no "
    "--instance goes to the least loaded connected agent.",
)
@click.option(
    "--max-upload",
    type=SIZE,
    default="200M",
    show_default=True,
    help="The largest folder `dployr deploy` may upload, packed (K, M or G: KiB, MiB, GiB).",
)
@click.option(
    "--advertise",
    metavar="URL",
    callback=lambda _ctx, _param, value: _check_advertise(value),
    help="The URL agents reach this control plane at, told to every agent (with several "
    "control planes on one --database, each dials every one) [default: the API's URL; "
    "with --host 0.0.0.0, this machine's host name].",
)
@click.pass_obj
async def up(
    options: Options,
    data_dir: Path | None,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    service_host: str,
    metrics_interval: float,
    pass_env: tuple[str, ...],
    shared_user: bool,
    database: str | None,
    local_services: bool,
    max_upload: int,
    advertise: str | None,
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
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: give both, or neither")
    config = DployrConfig(
        engine_config(root, service_host, metrics_interval, pass_env, shared_user),
        gateway=GatewayConfig(
            host=host,
            port=port,
            tls_cert=_absolute(tls_cert),
            tls_key=_absolute(tls_key),
        ),
        daemon=DaemonConfig(
            database=database,
            local_services=local_services,
            max_upload=max_upload,
            advertise=advertise,
        ),
    )

    async def serve() -> None:
        await daemon.run(config)

    if await until_signalled(serve):
        click.echo("dployr stopped: every service was stopped")


def _absolute(path: Path | None) -> Path | None:
    """``path`` made absolute: daemon.json names the certificate for a CLI run anywhere."""
    return None if path is None else path.expanduser().absolute()


def _check_advertise(url: str | None) -> str | None:
    """``--advertise``: an http:// or https:// URL with a host, without a trailing slash."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise click.BadParameter(f"{url!r} is not an http:// or https:// URL (with a host)")
    return url.rstrip("/")
