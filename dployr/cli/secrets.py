"""``dployr secrets rotate-key``: seal every secret under a new master key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncclick as click

from dployr.cli import Options, json_option

if TYPE_CHECKING:
    from dployr.protocol.messages import KeyRotated


@click.group()
def secrets() -> None:
    """The master key that seals secrets at rest."""


@secrets.command("rotate-key")
@json_option
@click.pass_obj
async def rotate_key(options: Options) -> None:
    """Seal every secret under a new master key and replace the key file.

    Every secret variable, those of a deploy in progress and every git password are
    decrypted with the old key and sealed again with a new one in one transaction; then
    the data dir's master.key is replaced. A key given in $DPLOYR_MASTER_KEY is yours to
    change: dployr refuses to rotate it. Keep a backup of the new key file.
    """
    from dployr.cli.output import emit

    async with options.client() as client:
        reply = await client.rotate_key()

    def show(rotated: KeyRotated) -> None:
        count = rotated.resealed
        click.echo(
            f"sealed {count} secret{'s' if count != 1 else ''} under a new master key, "
            f"now in {rotated.key_file}"
        )

    emit(reply, options.json, show)
