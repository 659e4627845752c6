"""``dployr settings NAME [--port N] [--build-cmd C] ...``: show or change settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncclick as click

from dployr.cli import Options, json_option
from dployr.cli._health import health_options, pop_health
from dployr.cli._job import describe_job, job_options, pop_job
from dployr.cli._restart import describe, pop_restart, restart_options

if TYPE_CHECKING:
    from dployr.models import ServiceSettings, Source
    from dployr.protocol.messages import SettingsView

T = TypeVar("T")

_LABELS = {
    "type": "type",
    "source": "remote",
    "run_cmd": "run-cmd",
    "build_cmd": "build-cmd",
    "port": "port",
    "working_dir": "working-dir",
    "description": "description",
    "health_check": "health-check",
    "stop_grace": "stop-grace",
    "health": "health",
    "restart": "restart",
    "listen_fds": "listen-fds",
    "user": "user",
    "rollout": "rollout",
    "static": "static",
    "job": "job",
    "image": "image",
    "dockerfile": "dockerfile",
    "build_args": "build-args",
}


def _health(settings: ServiceSettings) -> str:
    from dployr.cli.output import plural

    health = settings.health
    kind = settings.health_kind
    if kind is None:
        return "no check"
    if kind.value == "http":
        what = f"GET {settings.health_check or '/'}"
    elif kind.value == "tcp":
        what = "TCP connect"
    else:
        what = f"command {health.command!r}"
    text = (
        f"{what} every {health.interval:g} s (timeout {health.timeout:g} s); degraded "
        f"after {plural(health.failures, 'failure')}, "
        f"healthy after {plural(health.successes, 'success', 'successes')}"
    )
    if health.start_period:
        text += f"; {health.start_period:g} s start period"
    if health.restart_after:
        text += f"; restart after {plural(health.restart_after, 'failure')}"
    if health.webhook:
        text += f"; webhook {health.webhook}"
    return text


def _source(source: Source) -> str:
    text = source.remote
    if source.branch:
        text += f" (branch {source.branch})"
    if source.commit:
        text += f" (commit {source.commit})"
    return text


def _value(settings: ServiceSettings, key: str) -> str:
    """One setting as ``dployr settings`` shows it."""
    import enum

    from dployr import serde

    if key == "health":
        return _health(settings)
    if key == "restart":
        return describe(settings.restart)
    if key == "source":
        return _source(settings.source)
    value = getattr(settings, key)
    if key == "build_args":
        return " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if key == "static" and value is not None:
        return _static(serde.unstructure(value))
    if key == "job" and value is not None:
        return describe_job(serde.unstructure(value))
    if key == "user" and value is None:
        return "- (a user of its own when dployr runs as root)"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return "-" if value is None or value == "" else str(value)


def _static(site: dict[str, Any]) -> str:
    """A static site's publishing, in one line."""
    from dployr.cli.output import plural

    parts = [f"publish-dir {site['publish_dir'] or 'dist, build or public (the first there)'}"]
    if site["spa"]:
        parts.append("single-page app")
    if site["redirects"]:
        parts.append(plural(len(site["redirects"]), "redirect rule"))
    if site["headers"]:
        parts.append(plural(len(site["headers"]), "header rule"))
    return "; ".join(parts)


def _show(view: SettingsView) -> None:
    from dployr.cli.output import visible

    pending = set(view.pending)
    click.echo(f"settings of {view.name}:")
    for key, label in _LABELS.items():
        if key == "static" and view.settings.type.value != "static":
            continue
        if key == "job" and view.settings.type.value != "job":
            continue
        mark = "  (waits for the next deploy)" if key in pending else ""
        if key == "restart" and key in pending:
            mark = "  (applies at the next start, restart or deploy)"
        click.echo(f"  {label:<13}{visible(_value(view.settings, key))}{mark}")
    click.echo(
        f"  {'data-dir':<13}{visible(view.data_dir)}  (kept across deploys: $DPLOYR_DATA_DIR)"
    )
    if pending:
        click.echo("Changes apply at the next deploy; the running service is not restarted.")


def _pop_site(flags: dict[str, Any]) -> dict[str, Any]:
    """Take the given static site options out of ``flags``, as its fields."""
    from dployr.staticsite import parse_header, parse_redirect

    site: dict[str, Any] = {}
    publish_dir, spa = flags.pop("publish_dir"), flags.pop("spa")
    redirects, headers = flags.pop("redirects"), flags.pop("headers")
    if publish_dir is not None:
        site["publish_dir"] = publish_dir or None
    if spa is not None:
        site["spa"] = spa
    if redirects:
        rules = [_rule("--redirect", parse_redirect, text) for text in redirects if text.strip()]
        site["redirects"] = [{"path": r.path, "to": r.to, "status": r.status} for r in rules]
    if headers:
        grouped: dict[str, dict[str, str]] = {}
        for text in headers:
            if text.strip():
                path, name, value = _rule("--header", parse_header, text)
                grouped.setdefault(path, {})[name] = value
        site["headers"] = [{"path": path, "values": values} for path, values in grouped.items()]
    return site


def _rule(flag: str, parse: Callable[[str], T], text: str) -> T:
    from dployr.errors import DployrError

    try:
        return parse(text)
    except DployrError as error:
        raise DployrError(f"{flag} {text!r}: {error}") from None


def _remote(
    current: Source, remote: str | None, branch: str | None, options: Options
) -> dict[str, str]:
    """The new remote of ``--remote``/``--branch``: what is not given stays (never a commit:
    that pins one deploy only)."""
    import attrs

    from dployr.blueprint import remote_table
    from dployr.cli.deploy import _local_or_url

    url = current.remote
    if remote is not None:
        url = _local_or_url(remote, Path.cwd(), options.server is None)
    chosen = current.branch if branch is None else (branch or None)
    return remote_table(attrs.evolve(current, remote=url, branch=chosen, commit=None))


@click.command()
@click.argument("name")
@click.option("--remote", help="A git URL, or a local path (a git repository or a plain folder).")
@click.option("--branch", help="The branch to deploy, or '' for the remote's default.")
@click.option("--port", help="The public port, or 'none' for a worker.")
@click.option("--build-cmd", help="The build command, or '' for none.")
@click.option("--run-cmd", help="The run command.")
@click.option("--working-dir", help="The folder inside the release to run in.")
@click.option("--description", help="A line about the service.")
@click.option("--health-check", help="The health check path, or '' for none.")
@click.option("--stop-grace", type=float, help="Seconds between SIGTERM and SIGKILL.")
@click.option(
    "--listen-fds/--no-listen-fds",
    default=None,
    help="Hand the release its listening socket as fd 3 (LISTEN_FDS=1) instead of a proxy.",
)
@click.option(
    "--rollout",
    type=click.Choice(["auto", "overlap", "stop-first"]),
    help="How a deploy replaces the running release (auto: overlap with a port, "
    "stop-first without).",
)
@click.option(
    "--user",
    help="The user its processes run as (dployr as root); '' for a user of its own.",
)
@click.option(
    "--type",
    type=click.Choice(["web", "worker", "static", "job"]),
    help="What the service is; a new type drops the options only the old one had (and "
    "the run command, for static).",
)
@click.option(
    "--publish-dir",
    help="A static site's folder to serve, or '' for dist, build or public (the first the "
    "release has, else its root).",
)
@click.option(
    "--spa/--no-spa",
    default=None,
    help="A static site that is a single-page app: a path with no file gets /index.html.",
)
@click.option(
    "--redirect",
    "redirects",
    multiple=True,
    metavar="'FROM TO [STATUS]'",
    help="A static site's redirect rule, as a _redirects line (repeat it; the rules given "
    "replace the stored ones; '' removes them).",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'PATH Name: value'",
    help="A header a static site sets on the paths PATH matches (repeat it; the rules "
    "given replace the stored ones; '' removes them).",
)
@health_options
@restart_options
@job_options
@json_option
@click.pass_obj
async def settings(options: Options, /, name: str, **changes: Any) -> None:
    """Show a service's settings, or change them for the next deploy.

    With no option it shows the settings, marking what waits for the next deploy.
    Changes never restart the running service.
    """
    from dployr import serde
    from dployr.cli.output import emit
    from dployr.errors import DployrError

    health = pop_health(changes)
    restart = pop_restart(changes)
    job = pop_job(changes)
    site = _pop_site(changes)
    remote, branch = changes.pop("remote"), changes.pop("branch")
    body: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
    if "port" in body:
        port = body["port"]
        if port.lower() in ("none", ""):
            body["port"] = None
        else:
            try:
                body["port"] = int(port)
            except ValueError:
                raise DployrError(f"--port must be a number or 'none', not {port!r}") from None
    for key in ("build_cmd", "health_check", "user"):
        if body.get(key) == "":
            body[key] = None
    async with options.client() as client:
        if health or restart or job or site or remote is not None or branch is not None:
            current = (await client.settings(name)).settings
            if health:  # the options given change the health check, the rest of it stays
                body["health"] = {**serde.unstructure(current.health), **health}
            if restart:  # likewise for the restart policy
                body["restart"] = {**serde.unstructure(current.restart), **restart}
            if job:  # and for a job's options
                body["job"] = {**(serde.unstructure(current.job) or {}), **job}
            if site:  # and for a static site's publishing (a new type starts afresh)
                kept = "type" not in body or body["type"] == current.type.value
                stored = serde.unstructure(current.static) if kept else {}
                body["static"] = {**stored, **site}
            if remote is not None or branch is not None:
                body["remote"] = _remote(current.source, remote, branch, options)
        view = await client.change_settings(name, body) if body else await client.settings(name)
    emit(view, options.json, _show)
