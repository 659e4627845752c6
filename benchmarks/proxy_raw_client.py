"""A lean log-feed subscriber for the fan-out benchmark: raw sockets, no WebSocket library.

``python -m benchmarks.proxy_raw_client WS_URL SUBSCRIBERS WARMUP SECONDS``: as
:mod:`benchmarks.proxy_feed_client` (same output), for ``batch=1`` feeds only. A
trio-websocket client decodes every message to text and copies it on the way; 100 of them
at 10,000 lines/s each take more than this machine's two cores, so they, not the daemon,
set the delays. This one reads frames straight from the socket into one buffer and looks
only at what it measures: the first line's timestamp and the number of lines.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from urllib.parse import urlsplit

import trio

from benchmarks import proxy_feed_client

LINE = b'"line":"'
LOG = b'{"type":"log",'


class RawSubscribers(proxy_feed_client.Subscribers):
    """Subscribers of one feed that start and stop measuring together, on raw sockets."""

    async def subscriber(self) -> None:
        url = urlsplit(self.url)
        stream = await trio.open_tcp_stream(url.hostname or "127.0.0.1", url.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.decode(errors="replace"))
        buffer = bytearray(rest)
        self.ready.release()
        await self.go.wait()
        while True:
            # One frame: the server's frames are not masked; a message is one frame.
            while True:
                size = _frame_size(buffer)
                if size is not None and len(buffer) >= size[0] + size[1]:
                    break
                data = await stream.receive_some(1 << 20)
                if not data:
                    return
                buffer += data
            now = time.time()
            header, length = size
            if self.start <= now < self.end:
                self._count(buffer, header, header + length, now)
            del buffer[: header + length]
            if now >= self.end:
                await stream.aclose()
                return

    def _count(self, buffer: bytearray, begin: int, end: int, now: float) -> None:
        start = bytes(buffer[begin : min(end, begin + 512)])
        at = start.find(LINE)
        if at >= 0:
            first = at + len(LINE)
            written = float(start[first : start.index(b" ", first)])
            lines = buffer.count(LOG, begin, end)
            self.tally["lines"] += lines
            self.delays[int((now - written) * 10_000)] += lines
        elif start.startswith(b'{"type": "gap"'):
            gap = json.loads(bytes(buffer[begin:end]))
            self.tally["gaps"] += 1
            self.tally["skipped"] += gap["to"] - gap["from"] + 1


def _frame_size(buffer: bytearray) -> tuple[int, int] | None:
    """(header length, payload length) of the frame at the start of ``buffer``, if known."""
    if len(buffer) < 2:
        return None
    length = buffer[1] & 0x7F
    if length == 126:
        return (4, int.from_bytes(buffer[2:4], "big")) if len(buffer) >= 4 else None
    if length == 127:
        return (10, int.from_bytes(buffer[2:10], "big")) if len(buffer) >= 10 else None
    return 2, length


def main() -> None:
    url, count, warmup, seconds = sys.argv[1:5]
    trio.run(proxy_feed_client.run, url, int(count), float(warmup), float(seconds), RawSubscribers)


if __name__ == "__main__":
    main()
