"""``dployr deploy``: create or update a service and deploy it, showing each step.

What is deployed comes from, in order: the stored settings of an existing service, then
the blueprint (``--blueprint FILE``, or ``./dployr.toml`` when no flag is given), then the
flags. So the same command run again redeploys, and a setting changed with
``dployr settings`` is kept unless the command gives that setting itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncclick as click
import trio

from dployr.cli import Options, json_option
from dployr.cli._health import health_options, pop_health
from dployr.cli._job import job_options, pop_job
from dployr.cli._restart import pop_restart, restart_options

if TYPE_CHECKING:
    from dployr.cli.client import Client
    from dployr.protocol.messages import SettingsView


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
@click.option(
    "--type",
    type=click.Choice(["web", "worker", "static", "job"]),
    help="What the service is: web (serves its port), worker (no port), static (a folder "
    "served by dployr, no run command), or job (runs on a --schedule or when asked) "
    "[default: job with --schedule, web with a port, else worker].",
)
@click.option(
    "--remote",
    help="A git URL, or a local path (a git repository or a plain folder): a folder the "
    "daemon cannot read (--server, or another --instance) is packed and uploaded.",
)
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
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="K=V",
    help="A value for the Dockerfile's ARG K (repeat it for more); the deploy's variables "
    "and secrets are build args too.",
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
@click.option(
    "--publish-dir",
    help="A static site's folder to serve [default: dist, build or public, the first the "
    "release has, else its root].",
)
@click.option(
    "--spa/--no-spa",
    default=None,
    help="A static site that is a single-page app: a path with no file gets /index.html.",
)
@click.option("--env", "env", multiple=True, metavar="K=V", help="An environment variable.")
@click.option(
    "--listen-fds/--no-listen-fds",
    default=None,
    help="Hand the release its listening socket as fd 3 (LISTEN_FDS=1) instead of a proxy.",
)
@click.option("--secret", "secrets", multiple=True, metavar="K=V", help="A secret variable.")
@click.option(
    "--instance",
    help="The instance (machine) of the cluster to run it on; another than its own moves "
    "it there (the old one is deleted once the new one runs) [default: where it runs, else "
    "the control plane's own].",
)
@click.option(
    "--blueprint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the fields from a TOML, YAML or JSON file.",
)
@health_options
@restart_options
@job_options
@json_option
@click.pass_obj
async def deploy(options: Options, /, blueprint: Path | None, **flags: Any) -> None:
    """Create or update a service, then deploy it.

    Shows the steps (fetch, build, start, switch) and the build output as they happen.
    Exits 0 once the new release runs, 1 if the deploy failed (the previous release, if
    any, keeps running). Run the same command again to redeploy. With no flags, in a
    folder holding dployr.toml, that file is used.
    """
    from dployr.cli._upload import local_folder
    from dployr.errors import DployrError
    from dployr.models import check_name

    health = pop_health(flags)
    restart = pop_restart(flags)
    job = pop_job(flags)
    env = _pairs(flags.pop("env"), "--env")
    secrets = _pairs(flags.pop("secrets"), "--secret")
    build_args = _pairs(flags.pop("build_args"), "--build-arg")
    site = {k: v for k in ("publish_dir", "spa") if (v := flags.pop(k)) is not None}
    given = {k: v for k, v in flags.items() if v is not None}
    local = options.server is None
    options_given = health | restart | job | site | build_args
    if blueprint is None and not given and not env and not secrets and not options_given:
        if not await trio.Path("dployr.toml").is_file():
            raise DployrError(
                "nothing to deploy: give --name, --remote and --run-cmd, or --blueprint FILE, "
                "or run it in a folder holding dployr.toml"
            )
        blueprint = Path("dployr.toml")
    # `folder`: a folder of this machine, uploaded if the daemon cannot read it (_run).
    body, folder = ({}, None) if blueprint is None else _blueprint_body(blueprint, local)
    name = given.pop("name", None)
    name = body.pop("name", None) if name is None else name
    if name is None:
        raise DployrError("give the service a name: --name NAME (or name in the blueprint)")
    check_name(name)
    if "instance" in given:
        from dployr.protocol.messages import check_instance_name

        check_instance_name(given["instance"])
    if "registry" in given:  # its token is kept as a remote's password is
        given.setdefault("remote", _registry_url(given.pop("registry"), given.get("image")))
    if "image" in given:
        body["image"] = _image_ref(given.pop("image"), local)
        if "remote" not in given:
            body["remote"] = {"url": body["image"]}  # an image is its own source
    if "remote" in given:
        folder = local_folder(given["remote"], Path.cwd())
        body["remote"] = {"url": _local_or_url(given.pop("remote"), Path.cwd(), local)}
    for key in ("branch", "commit"):
        if key in given:
            body.setdefault("remote", {})[key] = given.pop(key)
    body.update(given)
    if site:  # the static table of a blueprint, with these options on top
        body["static"] = {**body.get("static", {}), **site}
    if env:
        body["env_vars"] = {**body.get("env_vars", {}), **env}
    if secrets:
        body["secrets"] = {**body.get("secrets", {}), **secrets}
    if build_args:
        body["build_args"] = {**body.get("build_args", {}), **build_args}
    await _run(options, name, body, health, restart, job, folder)


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


def _blueprint_body(file: Path, local: bool) -> tuple[dict[str, Any], Path | None]:
    """The deploy body of a blueprint file, and the local folder its remote names (if it
    does); a relative remote path is relative to the file.

    A blueprint says everything: a field it leaves out is back to its default, not kept
    from the stored settings.
    """
    from dployr import blueprint as bp
    from dployr.cli._upload import local_folder

    plan, base = bp.load(file), file.parent
    data = plan.body()
    data["remote"]["url"] = _local_or_url(plan.settings.source.remote, base, local)
    return data, local_folder(plan.settings.source.remote, base)


def _stored_body(view: SettingsView) -> dict[str, Any]:
    """A service's stored settings (``GET .../settings``) as a deploy body."""
    from dployr.blueprint import Blueprint

    return Blueprint(view.settings).body()


async def _complete(client: Client, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The whole deploy body: the stored settings of an existing service, then ``body``."""
    from dployr.cli.client import ApiError
    from dployr.errors import DployrError

    try:
        stored = _stored_body(await client.settings(name))
    except ApiError as error:
        if error.status != 404:
            raise
        stored = {}
    retyped = "type" in body and "type" in stored and body["type"] != stored["type"]
    if retyped:  # a new type drops what only the old one had, as `settings --type` does
        stored = {k: v for k, v in stored.items() if k not in ("static", "job")}
        if body["type"] == "static":
            stored.pop("run_cmd", None)
    merged = {**stored, **body}
    if "remote" in body and "url" not in body["remote"] and "remote" in stored:
        merged["remote"] = {**stored["remote"], **body["remote"]}  # --branch/--commit only
    if "static" in body and "static" in stored:  # --spa alone keeps the publish-dir
        merged["static"] = {**stored["static"], **body["static"]}
    missing = [
        flag
        for flag, present in (
            ("--remote", "url" in merged.get("remote", {})),
            (
                "--run-cmd",
                "run_cmd" in merged
                or merged.get("type") == "static"
                or bool(merged.get("image") or merged.get("dockerfile")),
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
    job: dict[str, Any] | None = None,
    folder: Path | None = None,
) -> None:
    from dployr.cli import _follow
    from dployr.cli._upload import needs_upload, upload
    from dployr.cli.output import print_json
    from dployr.errors import DployrError
    from dployr.models import DeploymentStatus

    async with options.client() as client:
        body = await _complete(client, name, body)
        if health:  # the options given change the health check, the rest of it stays
            body["health"] = {**(body.get("health") or {}), **health}
        if restart:  # likewise for the restart policy
            body["restart"] = {**(body.get("restart") or {}), **restart}
        if job:  # and for a job's options
            body["job"] = {**(body.get("job") or {}), **job}
        local = options.server is None
        if folder is not None and await needs_upload(client, name, body.get("instance"), local):
            if body["remote"].get("branch") or body["remote"].get("commit"):
                raise DployrError(
                    f"{folder} is uploaded as a folder: it has no branch or commit to choose "
                    "(leave them out, or deploy a git URL the instance can fetch)"
                )
            body["remote"] = {"url": await upload(client, folder, quiet=options.json)}
        async with _follow.deployment_events(client) as events:
            before = await _follow.last_cursor(client, name)
            number = (await client.deploy(name, body)).id
            if not options.json:
                click.echo(f"deploying {name}: deployment {number}")
            record = await _follow.follow(
                client,
                name,
                number,
                before,
                events,
                quiet=options.json,
                prefix=f"deploy {number}: ",
            )
        if record.status is not DeploymentStatus.SUCCEEDED:
            reason = await _follow.why_failed(client, name, record)
            tail = record.output_tail
            if tail and not options.json and not reason.startswith("build"):
                # A release that died at start: what it said last (build output was shown).
                click.echo("==> its last lines of output:")
                for line in tail:
                    click.echo(f"    {line}")
            # One line on stderr, or with --json the JSON error on stdout; exit 1.
            raise DployrError(f"deploy {number} of {name} failed: {reason}")
        if options.json:
            print_json(record)
        if not options.json and record.settings.job is not None:
            from dployr.cli.jobs import describe_next

            click.echo(await describe_next(client, name, number))
        elif not options.json:
            info = await client.service_info(name)
            where = f" on port {info.port}" if info.port else ""
            click.echo(
                f"{name} is {info.status.value}{where} (deployment {number}, pid {info.pid})"
            )
