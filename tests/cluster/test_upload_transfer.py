"""An upload crosses the agent channel in acknowledged parts, and goes on from the last
acknowledged byte when the channel breaks half-way (a real agent process dials an
in-process control plane, whose hub the test reaches)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from dployr.cluster.transfer import Transfers
from dployr.protocol.errors import Error
from tests.agent.conftest import WAIT, agent, control_plane, wait_connected

pytestmark = pytest.mark.slow


async def test_an_upload_goes_on_after_its_channel_broke_half_way(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar.gz"
    archive.write_bytes(os.urandom(5 * 2**20))  # 20 parts: the channel breaks among them
    upload = "c0ffee" + "0" * 26
    async with control_plane(tmp_path / "cp") as cp:
        token = await cp.join_token("east")
        async with agent(tmp_path / "east", "--join", cp.url, "--token", token) as east:
            await east.wait_for("connected to the control plane")
            await wait_connected(cp.hub, "east")
            handle = cp.hub.member("east")
            assert handle is not None
            acked: list[int] = []

            def on_acked(held: int) -> None:
                acked.append(held)
                if len(acked) == 2:  # some parts held, the rest not: cut the channel
                    cp.hub.drop("east", "cut by the test")

            with trio.fail_after(WAIT):
                await handle.uploads.send(upload, archive, on_acked)
            await east.wait_for("dialling again")
            await east.wait_for("connected to the control plane")

            # Whole and the same on the agent, the parts gone; sent on from where it was.
            kept = tmp_path / "east" / "uploads" / "incoming" / f"{upload}.tar.gz"
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
            assert os.listdir(kept.parent) == [kept.name]
            assert acked == sorted(acked)
            assert acked[-1] == archive.stat().st_size

            # The agent takes a whole upload once: a second sending is acknowledged at once.
            with trio.fail_after(WAIT):
                await handle.uploads.send(upload, archive)

            # One whose bytes do not match what the agent holds is refused, and not kept.
            other = "d0ffee" + "0" * 26
            await _send_damaged(handle.uploads, other, archive, tmp_path)
            assert os.listdir(kept.parent) == [kept.name]


async def _send_damaged(transfers: Transfers, upload: str, archive: Path, tmp_path: Path) -> None:
    """Send ``archive`` as ``upload``, its last byte changed once the first parts are
    held: the agent's SHA-256 check refuses it."""
    changed, flip = _copy_to_change(archive, tmp_path / "changing.tar.gz")

    def on_acked(held: int) -> None:
        if held < archive.stat().st_size:
            flip()

    with trio.fail_after(WAIT), pytest.raises(Error, match="arrived damaged"):
        await transfers.send(upload, changed, on_acked)


def _copy_to_change(archive: Path, copy: Path) -> tuple[Path, Callable[[], None]]:
    """A copy of ``archive``, and what changes its last byte (not sent yet)."""
    data = archive.read_bytes()
    copy.write_bytes(data)
    other = b"\x00" if data[-1:] != b"\x00" else b"\x01"

    def flip() -> None:
        with copy.open("r+b") as file:
            file.seek(-1, os.SEEK_END)
            file.write(other)

    return copy, flip
