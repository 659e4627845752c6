"""The engine's options, shared by the two commands that run an instance: ``dployr up``
and ``dployr agent``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncclick as click

from dployr.config import EngineConfig, default

F = TypeVar("F", bound=Callable[..., Any])


def engine_options(whose: str) -> Callable[[F], F]:
    """``--service-host``, ``--metrics-interval``, ``--pass-env`` and ``--shared-user``;
    ``whose`` names the process whose environment ``--pass-env`` reads from."""
    options = (
        click.option(
            "--service-host",
            default=default(EngineConfig, "service_host"),
            show_default=True,
            help="Address services' public ports listen on.",
        ),
        click.option(
            "--metrics-interval",
            default=default(EngineConfig, "metrics_interval"),
            show_default=True,
            type=click.FloatRange(0.1, 3600),
            help="Seconds between samples of each service's CPU and memory.",
        ),
        click.option(
            "--pass-env",
            "pass_env",
            multiple=True,
            metavar="NAME",
            help=f"Give every service this variable of {whose} own environment (services get"
            " a clean one: PATH, HOME, LANG, TZ and their own variables). Repeatable.",
        ),
        click.option(
            "--shared-user",
            is_flag=True,
            help="As root, run services as root too, not each as a user of its own "
            "(services can then read dployr's keys and each other's files).",
        ),
    )

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def engine_config(
    root: Path,
    service_host: str,
    metrics_interval: float,
    pass_env: tuple[str, ...],
    shared_user: bool,
) -> EngineConfig:
    """The engine's configuration from the options of :func:`engine_options`."""
    from dployr.models import check_env_key

    return EngineConfig(
        data_dir=root,
        service_host=service_host,
        metrics_interval=metrics_interval,
        pass_env=tuple(check_env_key(name) for name in pass_env),
        service_users=not shared_user,
    )
