"""``dployr agent``: run this machine's services as an instance of a control plane."""

from __future__ import annotations

from pathlib import Path

import asyncclick as click

from dployr.cli import Options
from dployr.cli._engine import engine_config, engine_options


@click.command()
@click.option(
    "--join",
    "url",
    metavar="URL",
    help="The control plane's URL (http://HOST:PORT), needed the first time only.",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="DPLOYR_JOIN_TOKEN",
    help="The join token from `dployr instances add NAME` (single use) [env: DPLOYR_JOIN_TOKEN].",
)
@click.option(
    "--name",
    metavar="NAME",
    help="The instance this agent must be: a join token of another one is refused.",
)
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, resolve_path=True),
    help="Verify an https:// control plane's certificate against this CA file (a private "
    "CA, or its own self-signed certificate) instead of the system's; kept for later runs.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the agent keeps its services, logs and credential [default: as `dployr up`].",
)
@engine_options("the agent's")
@click.pass_obj
async def agent(
    options: Options,
    url: str | None,
    token: str | None,
    name: str | None,
    ca: str | None,
    data_dir: Path | None,
    service_host: str,
    metrics_interval: float,
    pass_env: tuple[str, ...],
    shared_user: bool,
) -> None:
    """Run this machine's services as an instance of the control plane at URL.

    The first run joins with a join token and keeps a credential in the data dir; later
    runs need neither. The agent dials the control plane (it never listens for it) and
    dials again whenever the channel breaks; its services keep running meanwhile.
    Ctrl-C (or SIGTERM) stops every service gracefully and exits 0.
    """
    from dployr.agent.run import AgentConfig, run
    from dployr.cli._runtime import until_signalled
    from dployr.daemon.paths import default_data_dir

    root = (data_dir or options.data_dir or default_data_dir()).expanduser().resolve()
    config = AgentConfig(
        engine_config(root, service_host, metrics_interval, pass_env, shared_user),
        url=url,
        token=token,
        name=name,
        ca=ca,
    )

    async def serve() -> None:
        await run(config)

    if await until_signalled(serve):
        click.echo("dployr agent stopped: every service was stopped")
