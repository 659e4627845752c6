"""``dployr deploy``: create or update a service and deploy it, showing each step.

What is deployed comes from, in order: the stored settings of an existing service, then
the blueprint (``--blueprint FILE``, or ``./dployr.toml`` when no flag is given), then the
flags. So the same command run again redeploys, and a setting changed with
``dployr settings`` is kept unless the command gives that setting itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import asyncclick as click
import trio

from dployr.cli import Options, json_option
from dployr.cli._health import health_options, pop_health
from dployr.cli._restart import pop_restart, restart_options


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
@click.option(
    "--image",
    help="A container image to run with podman instead of code: a registry reference "
    "(host/team/api:1.4, or @sha256:…), oci-archive:PATH or docker-archive:PATH.",
)
@click.option(
    "--registry",
    help="The image's registry with a user and token (https://user:TOKEN@host:5000): the "
    "token is kept sealed, shown as ***, used only for pulls.",
)
@click.option(
    "--dockerfile",
    help="A Dockerfile in the remote: the deploy builds it with podman and runs the image.",
)
@click.option("--branch", help="The branch to deploy [default: the remote's default].")
@click.option("--commit", help="The commit to deploy.")
@click.option("--build-cmd", help="Run in the release folder before starting.")
@click.option("--run-cmd", help="The service's command; it gets its port as $PORT.")
@click.option("--port", type=click.IntRange(1, 65535), help="The public port (omit for a worker).")
@click.option("--working-dir", help="A folder inside the release to run in.")
@click.option("--description", help="A line about the service.")
@click.option("--health-check", help="A URL path that answers 2xx when the service is healthy.")
@click.option(
    "--rollout",
    type=click.Choice(["auto", "overlap", "stop-first"]),
    help="How the new release replaces the running one: overlap (the new starts beside the "
    "old, which stops once the new is ready) or stop-first (never both at once); auto "
    "[default]: overlap with a port, stop-first without.",
)
@click.option(
    "--user",
    help="The user its processes run as, when dployr runs as root [default: a user of "
    "its own, made for it].",
)
@click.option("--env", "env", multiple=True, metavar="K=V", help="An environment variable.")
@click.option(
    "--listen-fds/--no-listen-fds",
    default=None,
    help="Hand the release its listening socket as fd 3 (LISTEN_FDS=1) instead of a proxy.",
)
@click.option("--secret", "secrets", multiple=True, metavar="K=V", help="A secret variable.")
@click.option(
    "--blueprint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the fields from a TOML, YAML or JSON file.",
)
@health_options
@restart_options
@json_option
@click.pass_obj
async def deploy(options: Options, /, blueprint: Path | None, **flags: Any) -> None:
    """Create or update a service, then deploy it.

    Shows the steps (fetch, build, start, switch) and the build output as they happen.
    Exits 0 once the new release runs, 1 if the deploy failed (the previous release, if
    any, keeps running). Run the same command again to redeploy. With no flags, in a
    folder holding dployr.toml, that file is used.
    """
    from dployr import blueprint as bp
    from dployr.errors import DployrError
    from dployr.models import check_name

    health = pop_health(flags)
    restart = pop_restart(flags)
    env = _pairs(flags.pop("env"), "--env")
    secrets = _pairs(flags.pop("secrets"), "--secret")
    given = {k: v for k, v in flags.items() if v is not None}
    local = options.server is None
    if blueprint is None and not given and not env and not secrets and not health | restart:
        if not await trio.Path("dployr.toml").is_file():
            raise DployrError(
                "nothing to deploy: give --name, --remote and --run-cmd, or --blueprint FILE, "
                "or run it in a folder holding dployr.toml"
            )
        blueprint = Path("dployr.toml")
    body: dict[str, Any] = {}
    if blueprint is not None:
        body = _blueprint_body(bp.load(blueprint), blueprint.parent, local)
    name = given.pop("name", None)
    name = body.pop("name", None) if name is None else name
    if name is None:
        raise DployrError("give the service a name: --name NAME (or name in the blueprint)")
    check_name(name)
    if "registry" in given:  # its token is kept as a remote's password is
        given.setdefault("remote", _registry_url(given.pop("registry"), given.get("image")))
    if "image" in given:
        body["image"] = _image_ref(given.pop("image"), local)
        if "remote" not in given:
            body["remote"] = {"url": body["image"]}  # an image is its own source
    if "remote" in given:
        body["remote"] = {"url": _local_or_url(given.pop("remote"), Path.cwd(), local)}
    for key in ("branch", "commit"):
        if key in given:
            body.setdefault("remote", {})[key] = given.pop(key)
    body.update(given)
    if env:
        body["env_vars"] = {**body.get("env_vars", {}), **env}
    if secrets:
        body["secrets"] = {**body.get("secrets", {}), **secrets}
    await _run(options, name, body, health, restart)


def _registry_url(url: str, image: str | None) -> str:
    """The registry's URL naming the image's repository (``https://u:***@host/team/api``)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.path.strip("/") or not image or "/" not in image:
        return url
    repository = image.split("/", 1)[1].split("@", 1)[0].rsplit(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(path="/" + repository))


def _image_ref(ref: str, local: bool) -> str:
    """An image reference; a local archive's path made absolute (the daemon runs elsewhere)."""
    from dployr.errors import DployrError

    for kind in ("oci-archive:", "docker-archive:"):
        if ref.startswith(kind) and local:
            path = Path(ref[len(kind) :]).expanduser().resolve()
            if not path.exists():
                raise DployrError(f"the image archive {str(path)!r} does not exist")
            return kind + str(path)
    return ref


def _local_or_url(remote: str, base: Path, local: bool) -> str:
    """A local path made absolute (the daemon runs elsewhere), or the URL as it is.

    With a local daemon, a path that does not exist is refused here, before anything is sent.
    """
    from dployr.errors import DployrError

    colon, slash = remote.find(":"), remote.find("/")
    if "://" in remote or (colon != -1 and (slash == -1 or colon < slash)) or not local:
        return remote  # a URL or scp-style host:path (git's rule), or a path on the server
    path = (base / Path(remote).expanduser()).resolve()
    if not path.exists():
        raise DployrError(f"the remote {remote!r} does not exist (no folder {path})")
    return str(path)


def _blueprint_body(plan: Any, base: Path, local: bool) -> dict[str, Any]:
    """The deploy body of a blueprint; a relative remote path is relative to its file.

    A blueprint says everything: a field it leaves out is back to its default, not kept
    from the stored settings.
    """
    data: dict[str, Any] = plan.body()
    data["remote"]["url"] = _local_or_url(data["remote"]["url"], base, local)
    return data


def _stored_body(view: dict[str, Any]) -> dict[str, Any]:
    """A service's stored settings (``GET .../settings``) as a deploy body."""
    settings = dict(view["settings"])
    source = settings.pop("source")
    remote = {"url": source["remote"], "branch": source["branch"], "commit": source["commit"]}
    settings["remote"] = {k: v for k, v in remote.items() if v is not None}
    return settings


async def _complete(client: Any, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The whole deploy body: the stored settings of an existing service, then ``body``."""
    from dployr.cli.client import ApiError
    from dployr.errors import DployrError

    try:
        stored = _stored_body(await client.call("GET", client.service(name, "/settings")))
    except ApiError as error:
        if error.status != 404:
            raise
        stored = {}
    merged = {**stored, **body}
    if "remote" in body and "url" not in body["remote"] and "remote" in stored:
        merged["remote"] = {**stored["remote"], **body["remote"]}  # --branch/--commit only
    missing = [
        flag
        for flag, present in (
            ("--remote", "url" in merged.get("remote", {})),
            (
                "--run-cmd",
                "run_cmd" in merged or bool(merged.get("image") or merged.get("dockerfile")),
            ),
        )
        if not present
    ]
    if missing:
        raise DployrError(
            f"no service named {name!r}: to create it, deploy needs {' and '.join(missing)} "
            "(or a blueprint that has them)"
        )
    return merged


async def _run(
    options: Options,
    name: str,
    body: dict[str, Any],
    health: dict[str, Any],
    restart: dict[str, Any] | None = None,
) -> None:
    from dployr.cli.output import print_json
    from dployr.errors import DployrError

    async with options.client() as client:
        body = await _complete(client, name, body)
        if health:  # the options given change the health check, the rest of it stays
            body["health"] = {**(body.get("health") or {}), **health}
        if restart:  # likewise for the restart policy
            body["restart"] = {**(body.get("restart") or {}), **restart}
        before = await _last_cursor(client, name)
        deployment = await client.call("POST", client.service(name, "/deploy"), body=body)
        number = deployment["id"]
        if not options.json:
            click.echo(f"deploying {name}: deployment {number}")
        failed = await _watch(client, name, number, before, quiet=options.json)
        record = await _deployment(client, name, number)
        if failed is not None or record.get("status") != "succeeded":
            reason = failed or record.get("error") or "the deploy failed"
            tail = record.get("output_tail") or []
            if tail and not options.json and not str(reason).startswith("build"):
                # A release that died at start: what it said last (build output was shown).
                click.echo("==> its last lines of output:")
                for line in tail:
                    click.echo(f"    {line}")
            # One line on stderr, or with --json the JSON error on stdout; exit 1.
            raise DployrError(f"deploy {number} of {name} failed: {reason}")
        if options.json:
            print_json(record)
        if not options.json:
            info = await client.call("GET", client.service(name))
            where = f" on port {info['port']}" if info.get("port") else ""
            click.echo(
                f"{name} is {info['status']}{where} (deployment {number}, pid {info['pid']})"
            )


async def _watch(
    client: Any,
    name: str,
    number: int,
    cursor: int | None,
    *,
    quiet: bool,
    prefix: str | None = None,
) -> str | None:
    """Print the deploy's steps and build output until it ends; return why it failed.

    While the deploy waits for its new release (its health check, its minimum uptime),
    the time waited so far is printed every second. The deploy's last line is written
    once the service is free again, so the next command is accepted as soon as this
    returns.
    """
    from dployr.cli.output import visible

    prefix = prefix or f"deploy {number}: "
    waiting: tuple[str, float] | None = None  # the step waited on, since when
    async with client.follow(name, cursor=cursor) as feed:
        while True:
            tick = 1.0 if waiting is not None and not quiet else math.inf
            with trio.move_on_after(tick):
                try:
                    message = await feed.__anext__()
                except StopAsyncIteration:
                    break
                if message.get("type") != "log" or message.get("deployment") != number:
                    continue
                line, stream = message["line"], message["stream"]
                if stream == "system" and line.startswith(prefix):
                    step = line[len(prefix) :]
                    if not quiet:
                        click.echo(f"==> {visible(step)}")
                    if step.startswith("succeeded"):
                        return None
                    if step.startswith("failed"):
                        return str(step.removeprefix("failed: "))
                    started = trio.current_time()
                    waiting = (step, started) if step.startswith("waiting for") else None
                elif stream == "build" and not quiet:  # shown, never obeyed by the terminal
                    click.echo(f"    {visible(line)}")
                continue
            if waiting is not None:
                waited = trio.current_time() - waiting[1]
                click.echo(f"==> {visible(waiting[0])}: {waited:.0f} s")
    return "the daemon closed the log feed before the deploy ended"


async def _last_cursor(client: Any, name: str) -> int | None:
    """Where the service's history ends now: the deploy's lines come after it."""
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
