"""An upload sent to an agent over its channel, a part at a time: :class:`Transfers`.

Each :class:`~dployr.cluster.remote.RemoteHandle` has one. :meth:`Transfers.send` reads the
archive from its file, :data:`~dployr.protocol.wire.UPLOAD_CHUNK` bytes a frame
(:class:`~dployr.protocol.wire.UploadChunk`, base64), with at most :data:`WINDOW` bytes sent
and not yet acknowledged: the archive is never held in memory, and the channel's other
frames (a log follow, the heartbeat) go on between the parts.

The agent answers each part with an :class:`~dployr.protocol.wire.UploadAck` saying how
many bytes it holds (it keeps them in a file in its data dir); the last one comes once it
holds them all and their SHA-256 matches. When the channel breaks, the sending waits for
the next one (within the request timeout) and starts again from what the agent
acknowledged; a part the agent already holds is acknowledged again, not written twice.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import trio

from dployr.protocol import wire as w
from dployr.protocol.errors import Error

WINDOW: Final = 4 * w.UPLOAD_CHUNK
"""The most bytes of an upload sent and not yet acknowledged by the agent (1 MiB)."""
CAPABILITY: Final = "uploads"
"""The capability an agent's hello names when it takes uploads."""


class Queue(Protocol):
    """Where a channel's outgoing frames wait (:class:`~dployr.cluster.remote.Outgoing`)."""

    def put(self, text: str) -> None:
        """Queue a frame."""
        ...


class _Sending:
    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.acked = 0
        # Invariant: acked <= sent <= size; the agent holds at least `acked` bytes.
        self.error: Error | None = None
        self.changed = trio.Event()

    def wake(self) -> None:
        changed, self.changed = self.changed, trio.Event()
        changed.set()


class Transfers:
    """The uploads being sent to one agent (see the module)."""

    def __init__(self, instance: str, *, timeout: float) -> None:
        self._instance = instance
        self.timeout = timeout
        """Seconds a sending waits without the agent taking a part, before ``unavailable``."""
        self.capable = False
        """Whether the agent takes uploads (its last hello said so)."""
        self._queue: Queue | None = None
        self._sending: dict[str, _Sending] = {}

    def attach(self, queue: Queue, *, capable: bool) -> None:
        """A new channel: every sending starts again from what the agent acknowledged."""
        self._queue = queue
        self.capable = capable
        for sending in self._sending.values():
            sending.sent = sending.acked
            sending.wake()

    def detach(self) -> None:
        """The channel broke: the sendings wait for the next one."""
        self._queue = None
        for sending in self._sending.values():
            sending.wake()

    def close(self) -> None:
        """The instance was removed: every sending fails."""
        self._queue = None
        for sending in self._sending.values():
            sending.error = Error("unavailable", f"instance {self._instance} was removed")
            sending.wake()

    def on_ack(self, ack: w.UploadAck) -> None:
        """The agent says how much of an upload it holds."""
        sending = self._sending.get(ack.upload)
        if sending is None:
            return  # a late answer to a sending that ended
        if ack.error is not None:
            sending.error = ack.error
        elif ack.received < sending.acked or ack.received > sending.size:
            # It lost what it held (its data dir was cleared): start again from there.
            sending.acked = sending.sent = min(ack.received, sending.size)
        else:
            sending.acked = ack.received
            sending.sent = max(sending.sent, ack.received)
        sending.wake()

    async def send(
        self, upload: str, archive: Path, on_acked: Callable[[int], None] | None = None
    ) -> None:
        """Send the archive of ``upload`` until the agent holds all of it, checked;
        ``on_acked`` is told each time the bytes the agent holds grow."""
        if self._queue is None:
            raise Error("unavailable", f"instance {self._instance} is away")
        if not self.capable:
            raise Error(
                "invalid",
                f"the agent of instance {self._instance} is too old to take an uploaded "
                "folder: upgrade dployr there, or deploy a git URL it can fetch",
            )
        if upload in self._sending:
            raise Error("conflict", f"upload {upload} is being sent already")
        digest = await trio.to_thread.run_sync(_sha256, archive)
        async with await trio.open_file(archive, "rb") as file:
            size = (await trio.Path(archive).stat()).st_size
            sending = self._sending[upload] = _Sending(size)
            told = 0
            try:
                while True:
                    if sending.error is not None:
                        raise sending.error
                    if on_acked is not None and sending.acked > told:
                        told = sending.acked
                        on_acked(told)
                    if sending.acked == size:
                        return
                    changed = sending.changed  # taken first: no ack is missed
                    queue = self._queue
                    while queue is not None and sending.sent - sending.acked < WINDOW:
                        offset = sending.sent
                        await file.seek(offset)
                        data = await file.read(w.UPLOAD_CHUNK)
                        moved = queue is not self._queue or offset != sending.sent
                        if moved or sending.error is not None:
                            break  # the channel or the agent's ack moved while reading
                        text = base64.b64encode(data).decode()
                        chunk = w.UploadChunk(upload, offset, size, digest, text)
                        queue.put(w.encode_frame(chunk))
                        sending.sent = offset + len(data)
                        if sending.sent >= size:
                            break
                    with trio.move_on_after(self.timeout) as idle:
                        await changed.wait()
                    if idle.cancelled_caught:
                        raise Error(
                            "unavailable",
                            f"instance {self._instance} took no part of the upload within "
                            f"{self.timeout:g} s",
                        )
            finally:
                del self._sending[upload]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()
