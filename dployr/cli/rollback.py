"""``dployr rollback NAME [DEPLOYMENT_ID]``: back to a kept release, without rebuilding."""

from __future__ import annotations

import asyncclick as click

from dployr.cli import Options, json_option


@click.command()
@click.argument("name")
@click.argument("deployment", required=False, type=int)
@json_option
@click.pass_obj
async def rollback(options: Options, name: str, deployment: int | None) -> None:
    """Go back to a kept release without rebuilding.

    With no DEPLOYMENT, it returns to the release that ran before the current one (so a
    second rollback undoes the first). Every rollback is a deployment of its own in
    `dployr deployments`. It takes the same path as a deploy: the release starts beside
    the current one and takes over once it is ready, so no request is dropped.
    """
    from dployr.cli import _follow
    from dployr.cli.output import print_json
    from dployr.errors import DployrError
    from dployr.models import DeploymentStatus

    async with options.client() as client:
        async with _follow.deployment_events(client) as events:
            before = await _follow.last_cursor(client, name)
            started = await client.rollback(name, deployment)
            number, target = started.id, started.rollback_of
            if not options.json:
                click.echo(f"rolling {name} back to deployment {target}: deployment {number}")
            record = await _follow.follow(
                client,
                name,
                number,
                before,
                events,
                quiet=options.json,
                prefix=f"rollback {number}: ",
            )
        if record.status is not DeploymentStatus.SUCCEEDED:
            reason = await _follow.why_failed(client, name, record)
            raise DployrError(
                f"rollback {number} of {name} (to deployment {target}) failed: {reason}"
            )
        info = await client.service_info(name)
    if options.json:
        print_json(info)
    if not options.json:
        click.echo(
            f"{name} is {info.status.value} on deployment {info.deployment} "
            f"(the release of deployment {target})"
        )
