"""``dployr deploy``: create or update a service and deploy it, showing each step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncclick as click
import trio

from dployr.cli import Options, json_option


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        pairs[key] = value
    return pairs


@click.command()
@click.option("--name", help="The service's name.")
@click.option("--remote", help="A git URL, or a local path (a git repository or a plain folder).")
@click.option("--branch", help="The branch to deploy [default: the remote's default].")
@click.option("--commit", help="The commit to deploy.")
@click.option("--build-cmd", help="Run in the release folder before starting.")
@click.option("--run-cmd", help="The service's command; it gets its port as $PORT.")
@click.option("--port", type=click.IntRange(1, 65535), help="The public port (omit for a worker).")
@click.option("--working-dir", help="A folder inside the release to run in.")
@click.option("--description", help="A line about the service.")
@click.option("--health-check", help="A URL path that answers 2xx when the service is healthy.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="An environment variable.")
@click.option("--secret", "secrets", multiple=True, metavar="K=V", help="A secret variable.")
@click.option(
    "--blueprint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the fields from a TOML, YAML or JSON file.",
)
@json_option
@click.pass_obj
async def deploy(options: Options, /, blueprint: Path | None, **flags: Any) -> None:
    """Create or update a service, then deploy it.

    Shows the steps (fetch, build, start, switch) and the build output as they happen.
    Exits 0 once the new release runs, 1 if the deploy failed. Run the same command again
    to redeploy. With no flags, in a folder holding dployr.toml, that file is used.
    """
    from dployr import blueprint as bp
    from dployr.errors import DployrError

    env = _pairs(flags.pop("env"), "--env")
    secrets = _pairs(flags.pop("secrets"), "--secret")
    given = {k: v for k, v in flags.items() if v is not None}
    if (
        blueprint is None
        and not given
        and not env
        and not secrets
        and await trio.Path("dployr.toml").is_file()
    ):
        blueprint = Path("dployr.toml")
    body: dict[str, Any] = {}
    if blueprint is not None:
        plan = bp.load(blueprint)
        body = _blueprint_body(plan)
    remote = {k: given.pop(k) for k in ("remote", "branch", "commit") if k in given}
    if remote:
        body.setdefault("remote", {})
        if "remote" in remote:
            body["remote"] = {"url": _local_or_url(remote.pop("remote"))}
        body["remote"].update(remote)
    body.update(given)
    body.setdefault("env_vars", {}).update(env)
    body.setdefault("secrets", {}).update(secrets)
    name = body.pop("name", None)
    if not name:
        raise DployrError("give the service a name: --name NAME (or name in the blueprint)")
    if "remote" not in body or "run_cmd" not in body:
        missing = [
            f for f, k in (("--remote", "remote"), ("--run-cmd", "run_cmd")) if k not in body
        ]
        raise DployrError(f"deploy needs {' and '.join(missing)} (or a blueprint that has them)")
    await _run(options, name, body)


def _local_or_url(remote: str) -> str:
    path = Path(remote).expanduser()
    if "://" not in remote and not remote.startswith("-") and path.exists():
        return str(path.resolve())
    return remote


def _blueprint_body(plan: Any) -> dict[str, Any]:
    from dployr import serde

    data: dict[str, Any] = serde.unstructure(plan)
    data = {k: v for k, v in data.items() if v is not None}
    if "remote" in data:
        data["remote"] = {k: v for k, v in data["remote"].items() if v is not None}
        url = data["remote"]["url"]
        data["remote"]["url"] = _local_or_url(url)
    return data


async def _run(options: Options, name: str, body: dict[str, Any]) -> None:
    from dployr.cli.output import print_json, stderr

    async with options.client() as client:
        before = await _last_cursor(client, name)
        deployment = await client.call("POST", client.service(name, "/deploy"), body=body)
        number = deployment["id"]
        if not options.json:
            click.echo(f"deploying {name}: deployment {number}")
        failed = await _watch(client, name, number, before, quiet=options.json)
        record = await _deployment(client, name, number)
        if options.json:
            print_json(record)
        if failed is not None or record.get("status") != "succeeded":
            reason = failed or record.get("error") or "the deploy failed"
            stderr(f"error: deploy {number} of {name} failed: {reason}")
            raise SystemExit(1)
        await trio.lowlevel.checkpoint()
        if not options.json:
            info = await client.call("GET", client.service(name))
            where = f" on port {info['port']}" if info.get("port") else ""
            click.echo(
                f"{name} is {info['status']}{where} (deployment {number}, pid {info['pid']})"
            )


async def _watch(
    client: Any, name: str, number: int, cursor: int | None, *, quiet: bool
) -> str | None:
    """Print the deploy's steps and build output until it ends; return why it failed."""
    prefix = f"deploy {number}: "
    async with client.follow(name, cursor=cursor) as feed:
        async for message in feed:
            if message.get("type") != "log" or message.get("deployment") != number:
                continue
            line, stream = message["line"], message["stream"]
            if stream == "system" and line.startswith(prefix):
                step = line[len(prefix) :]
                if not quiet:
                    click.echo(f"==> {step}")
                if step.startswith("succeeded"):
                    return None
                if step.startswith("failed"):
                    return str(step.removeprefix("failed: "))
            elif stream == "build" and not quiet:
                click.echo(f"    {line}")
    return "the daemon closed the log feed before the deploy ended"


async def _last_cursor(client: Any, name: str) -> int | None:
    from dployr.cli.client import ApiError

    try:
        page = await client.call("GET", client.service(name, "/logs"), params={"tail": 0})
    except ApiError as error:
        if error.status == 404:
            return 0  # a new service: its history starts now
        raise
    return int(page["last_cursor"])


async def _deployment(client: Any, name: str, number: int) -> dict[str, Any]:
    records = await client.call("GET", client.service(name, "/deployments"), params={"limit": 20})
    for record in records:
        if record["id"] == number:
            return dict(record)
    return {"id": number, "status": "unknown"}
