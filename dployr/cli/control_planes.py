"""``dployr control-planes``: the control planes (``dployr up``) of a cluster, which one
leads it, and which one answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.protocol.messages import ControlPlaneView


def notes(view: ControlPlaneView) -> str:
    """ "leads the cluster", "answered", both, or nothing."""
    words = []
    if view.leads:
        words.append("leads the cluster")
    if view.is_self:
        words.append("answered")
    return "; ".join(words)


def show_all(views: Sequence[ControlPlaneView]) -> None:
    """A table, the leader marked ``*``, then who leads in a line."""
    from dployr.cli.output import ago, clock, table

    table(
        ("", "id", "url", "started", "last seen", ""),
        [
            ("*" if v.leads else " ", v.id, v.url, clock(v.started_at), ago(v.last_seen), notes(v))
            for v in views
        ],
    )
    leaders = [v for v in views if v.leads]
    if not leaders:  # the leader was just killed: the next one records itself at once
        click.echo("no control plane leads right now: another takes over within seconds")


@click.command("control-planes")
@json_option
@click.pass_obj
async def control_planes(options: Options) -> None:
    """List the cluster's control planes, the leader marked `*`.

    A control plane is a `dployr up`; several may share one PostgreSQL database (`dployr
    up --database`): each serves the whole API, one (the leader) runs the cluster's
    background work. Each shows its id (new at each start), the URL agents reach it at
    (`--advertise`), when it started and when it last said it was alive; `answered` marks
    the one asked. With one control plane (SQLite, the default), it is listed alone,
    leading.
    """
    async with options.client() as client:
        found = await client.control_planes()
    if options.json:  # as the API answers it (``self``, not the attribute's ``is_self``)
        from dployr.cli.output import print_json
        from dployr.protocol import codec

        print_json(codec.unstructure(found))
    else:
        show_all(found)
