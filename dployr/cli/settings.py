"""``dployr settings NAME [--port N] [--build-cmd C] ...``: show or change settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncclick as click

from dployr.cli import Options, json_option
from dployr.cli._health import health_options, pop_health
from dployr.cli._restart import describe, pop_restart, restart_options

_LABELS = {
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
    "image": "image",
    "dockerfile": "dockerfile",
}


def _health(settings: dict[str, Any]) -> str:
    from dployr.cli.output import plural

    health = settings["health"]
    kind = health["kind"] or ("http" if settings.get("health_check") else None)
    if kind is None:
        return "no check"
    what = {"http": f"GET {settings.get('health_check') or '/'}", "tcp": "TCP connect"}.get(
        kind, f"command {health['command']!r}"
    )
    text = (
        f"{what} every {health['interval']:g} s (timeout {health['timeout']:g} s); degraded "
        f"after {plural(health['failures'], 'failure')}, "
        f"healthy after {plural(health['successes'], 'success', 'successes')}"
    )
    if health["start_period"]:
        text += f"; {health['start_period']:g} s start period"
    if health["restart_after"]:
        text += f"; restart after {plural(health['restart_after'], 'failure')}"
    if health["webhook"]:
        text += f"; webhook {health['webhook']}"
    return text


def _value(key: str, value: Any) -> str:
    if key == "source" and isinstance(value, dict):
        text = str(value["remote"])
        if value.get("branch"):
            text += f" (branch {value['branch']})"
        if value.get("commit"):
            text += f" (commit {value['commit']})"
        return text
    if key == "user" and value is None:
        return "- (a user of its own when dployr runs as root)"
    return "-" if value is None or value == "" else str(value)


def _show(view: dict[str, Any]) -> None:
    from dployr.cli.output import visible

    pending = set(view["pending"])
    click.echo(f"settings of {view['name']}:")
    for key, label in _LABELS.items():
        mark = "  (waits for the next deploy)" if key in pending else ""
        if key == "restart" and key in pending:
            mark = "  (applies at the next start, restart or deploy)"
        if key == "health":
            value = _health(view["settings"])
        elif key == "restart":
            value = describe(view["settings"]["restart"])
        else:
            value = _value(key, view["settings"][key])
        click.echo(f"  {label:<13}{visible(value)}{mark}")
    click.echo(
        f"  {'data-dir':<13}{visible(view['data_dir'])}  (kept across deploys: $DPLOYR_DATA_DIR)"
    )
    if pending:
        click.echo("Changes apply at the next deploy; the running service is not restarted.")


def _remote(
    current: dict[str, Any], remote: str | None, branch: str | None, options: Options
) -> dict[str, Any]:
    """The new remote of ``--remote``/``--branch``: what is not given stays (never a commit:
    that pins one deploy only)."""
    from dployr.cli.deploy import _local_or_url

    url = current["remote"]
    if remote is not None:
        url = _local_or_url(remote, Path.cwd(), options.server is None)
    chosen = current.get("branch") if branch is None else (branch or None)
    return {"url": url, "branch": chosen}


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
@health_options
@restart_options
@json_option
@click.pass_obj
async def settings(options: Options, /, name: str, **changes: Any) -> None:
    """Show a service's settings, or change them for the next deploy.

    With no option it shows the settings, marking what waits for the next deploy.
    Changes never restart the running service.
    """
    from dployr.cli.output import emit
    from dployr.errors import DployrError

    health = pop_health(changes)
    restart = pop_restart(changes)
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
        path = client.service(name, "/settings")
        if health or restart or remote is not None or branch is not None:
            current = (await client.call("GET", path))["settings"]
            if health:  # the options given change the health check, the rest of it stays
                body["health"] = {**current["health"], **health}
            if restart:  # likewise for the restart policy
                body["restart"] = {**current["restart"], **restart}
            if remote is not None or branch is not None:
                body["remote"] = _remote(current["source"], remote, branch, options)
        view = (
            await client.call("PATCH", path, body=body) if body else await client.call("GET", path)
        )
    emit(view, options.json, _show)
