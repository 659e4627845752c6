"""Log-feed subscribers for the fan-out benchmark, in a process of their own.

``python -m benchmarks.proxy_feed_client WS_URL SUBSCRIBERS WARMUP SECONDS`` opens
SUBSCRIBERS WebSocket connections to WS_URL (a log feed with its token), prints
``connected`` once all are open, discards what arrives for WARMUP seconds, then for SECONDS
records, for each log line (one a ``log`` message, or many a ``logs`` message with
``batch=1`` in the URL), the receive time minus the ``time.time()`` the service wrote at
the start of the first line of the message (the oldest: the figures err on the slow
side). It prints one JSON object: a histogram of the delays in 0.1 ms buckets, the lines
and gap messages received, the lines the gaps said were skipped, and this process's CPU
time.
"""

from __future__ import annotations

import collections
import json
import resource
import sys
import time

import trio
from trio_websocket import open_websocket_url

LOGS = '{"type":"logs",'
LINE = '"line":"'
LOG = '{"type":"log",'


class Subscribers:
    """Subscribers of one feed that start and stop measuring together."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ready = trio.Semaphore(0)
        self.go = trio.Event()
        self.start = self.end = 0.0
        """The measured window, in ``time.time()``; set just before ``go``."""
        self.tally: collections.Counter[str] = collections.Counter()
        self.delays: collections.Counter[int] = collections.Counter()
        """Delays in 0.1 ms buckets."""

    async def subscriber(self) -> None:
        async with open_websocket_url(self.url, max_message_size=16 * 2**20) as ws:
            self.ready.release()
            await self.go.wait()
            measuring = False
            while True:
                message = await ws.get_message()
                now = time.time()
                if now >= self.end:
                    return
                if not measuring:
                    measuring = now >= self.start
                    if not measuring:
                        continue
                # Not decoded as JSON: a client that parses 10,000 lines/s for each of 100
                # subscribers needs more than this machine's two cores, and would be what
                # falls behind. Every line of a message is counted with the delay of its
                # first (oldest) line: the figures err on the slow side.
                at = message.find(LINE) if message.startswith(LOGS) else -1
                if at >= 0:
                    start = at + len(LINE)
                    written = float(message[start : message.index(" ", start)])
                    lines = message.count(LOG)
                    self.tally["lines"] += lines
                    self.delays[int((now - written) * 10_000)] += lines
                    continue
                entry = json.loads(message)
                kind = entry["type"]
                if kind == "log":  # one line a message (batch=0)
                    self.tally["lines"] += 1
                    written = float(entry["line"].split(" ", 1)[0])
                    self.delays[int((now - written) * 10_000)] += 1
                elif kind == "gap":
                    self.tally["gaps"] += 1
                    self.tally["skipped"] += entry["to"] - entry["from"] + 1


async def run(
    url: str, count: int, warmup: float, seconds: float, kind: type[Subscribers] = Subscribers
) -> None:
    """Subscribe ``count`` times, measure, print the figures (``kind``: the client)."""
    feed = kind(url)
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(feed.subscriber)
        with trio.fail_after(60):
            for _ in range(count):
                await feed.ready.acquire()
        print("connected", flush=True)
        now = time.time()
        feed.start, feed.end = now + warmup, now + warmup + seconds
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        # A feed that stalls must not hang the benchmark: closing is cut short too.
        nursery.cancel_scope.deadline = trio.current_time() + warmup + seconds + 5
        feed.go.set()
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    print(
        json.dumps(
            {
                "lines": feed.tally["lines"],
                "gaps": feed.tally["gaps"],
                "skipped": feed.tally["skipped"],
                "cpu_seconds": cpu,
                "delays": {str(k): v for k, v in feed.delays.items()},
            }
        ),
        flush=True,
    )


def main() -> None:
    url, count, warmup, seconds = sys.argv[1:5]
    trio.run(run, url, int(count), float(warmup), float(seconds))


if __name__ == "__main__":
    main()
