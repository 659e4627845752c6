"""``dployr instances [add NAME | remove NAME]`` and ``dployr instance NAME``: the machines
of a cluster, what each runs, and how agents join it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.protocol.messages import InstanceView


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def machine_words(view: InstanceView) -> str:
    """ "cpu 12%, memory 1.2 GiB of 7.8 GiB, disk 20.0 GiB free" (what is known)."""
    parts = []
    if view.cpu_percent is not None:
        parts.append(f"cpu {view.cpu_percent:.0f}%")
    if view.memory_used_bytes is not None and view.memory_total_bytes is not None:
        parts.append(f"memory {_size(view.memory_used_bytes)} of {_size(view.memory_total_bytes)}")
    if view.disk_full:
        parts.append("disk full")
    elif view.disk_free_bytes is not None:
        parts.append(f"disk {_size(view.disk_free_bytes)} free")
    return ", ".join(parts) or "no machine sample yet"


def state_words(view: InstanceView, now: float | None = None) -> str:
    """ "connected from 10.0.0.7", "away, last seen 5m ago", "pending: not joined yet"."""
    from dployr.cli.output import ago

    if view.state == "pending":
        return "pending: its agent has not joined yet"
    if view.state == "away":
        seen = ago(view.last_seen, now) if view.last_seen else "never"
        return f"away, last seen {seen}: its services are shown as last known"
    return "connected" + (f" from {view.address}" if view.address else "")


def _show(view: InstanceView) -> None:
    from dployr.cli.output import plural, services_table

    known = f" ({view.id})" if view.id else ""
    host = f" on {view.hostname}" if view.hostname else ""
    version = f", dployr {view.version}" if view.version else ""
    click.echo(
        f"instance {view.name}{known}{host}{version}, {plural(len(view.services), 'service')}"
    )
    machine = "" if view.state == "pending" else f"; {machine_words(view)}"
    taking = "" if view.takes_services else "; takes no new services"
    click.echo(f"  {state_words(view)}{taking}{machine}")
    if view.services:
        services_table(view.services)
    disk_line(view)


def disk_line(instance: InstanceView) -> None:
    """One line when the instance's disk is full (nothing otherwise)."""
    from dployr.cli.output import visible

    if instance.disk_full:
        click.echo(
            visible(
                f"instance {instance.name}: disk full, log history paused "
                f"({instance.log_lines_dropped} lines dropped so far); "
                "make room in the data dir, or delete a service"
            )
        )


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
async def instances(ctx: click.Context) -> None:
    """List the instances (machines) of the cluster and the services each runs.

    Each shows whether its agent is connected or away (and when it was last seen), its
    address, dployr version, CPU, memory and disk, and its services. `dployr instances add
    NAME` lets one more machine join; `dployr instances remove NAME` revokes it.
    """
    if ctx.invoked_subcommand is not None:
        return
    from dployr.cli.output import emit

    options: Options = ctx.ensure_object(Options)
    async with options.client() as client:
        found = await client.instances()

    def show_all(rows: Sequence[InstanceView]) -> None:
        for row in rows:
            _show(row)

    emit(found, options.json, show_all)


@instances.command()
@click.argument("name")
@json_option
@click.pass_obj
async def add(options: Options, name: str) -> None:
    """Add an instance: print its join token (shown only this once) and the command that
    runs its agent on the machine (needs an admin token)."""
    from dployr.cli.output import clock, print_json
    from dployr.protocol.messages import check_instance_name

    check_instance_name(name)
    async with options.client() as client:
        token = await client.add_instance(name)
        url, cert = client.target.url, client.target.pinned
    if options.json:
        print_json(token)
        return
    click.echo(token.token)
    ca = "" if cert is None else f" --ca {Path(cert).name}"
    sys.stderr.write(
        f"added the instance {token.instance!r}: its join token above is shown only this once "
        f"and works once, until {clock(token.expires_at)} (in {_left(token.expires_at)}).\n"
        "On the machine, run:\n"
        f"  dployr agent --join {url} --token {token.token}{ca}\n"
    )
    if cert is not None:
        sys.stderr.write(
            f"with a copy of {cert} (the certificate this control plane serves) there; "
            "leave --ca out if a public CA signed it\n"
        )


@instances.command()
@click.argument("name")
@json_option
@click.pass_obj
async def remove(options: Options, name: str) -> None:
    """Remove an instance: its agent's credential is revoked at once (its services keep
    running on that machine, no longer managed from here; needs an admin token)."""
    from dployr.cli.output import emit
    from dployr.protocol.messages import check_instance_name

    check_instance_name(name)
    async with options.client() as client:
        removed = await client.remove_instance(name)
    emit(removed, options.json, lambda r: click.echo(f"removed the instance {r.name}"))


@click.command()
@click.argument("name")
@json_option
@click.pass_obj
async def instance(options: Options, name: str) -> None:
    """Show one instance (by name or id) and its services."""
    from dployr.cli.output import emit

    async with options.client() as client:
        found = await client.instance(name)
    emit(found, options.json, _show)


def _left(at: float) -> str:
    minutes = max(0, round((at - time.time()) / 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
