"""One log follower for the cluster log benchmark, in a process of its own.

``python -m benchmarks.cluster_follow_client WS_URL TOKEN ROUND TOTAL TIMEOUT`` follows
the log feed WS_URL (``batch=1``, from the last line of history on), prints
``connected`` at its first message, then reads until line ``TOTAL - 1`` of round ROUND
has come (or TIMEOUT seconds passed). Each line the benchmark's logger writes is
``<time.time()> <round> <n> <padding>``; for each line of the round, the receive time
minus its written time is its delay. It prints one JSON object: the lines received, the
distinct ones, duplicates, lines out of order, gap messages, the delays' p50, p99 and
max in milliseconds, and the median delay of each tenth of the lines.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import trio
from trio_websocket import open_websocket_url


async def follow(
    url: str, token: str, round_: int, total: int, seconds: float
) -> dict[str, object]:
    """Follow until the round's last line came, or ``seconds`` passed (see the module)."""
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    delays: list[float] = []
    tenths: list[list[float]] = [[] for _ in range(10)]
    """The delays of each tenth of the round's lines, in order: a delay that grows over the
    round says the follow cannot keep up; one that stays says it is late by a constant."""
    seen: set[int] = set()
    tally = {"received": 0, "duplicates": 0, "out_of_order": 0, "gaps": 0}
    last = -1
    connected = False
    async with open_websocket_url(url, extra_headers=headers, max_message_size=16 * 2**20) as ws:
        with trio.move_on_after(seconds):
            while last != total - 1 or len(seen) < total:
                message = await ws.get_message()
                now = time.time()
                if not connected:
                    connected = True
                    print("connected", flush=True)
                entry = json.loads(message)
                if entry["type"] == "gap":
                    tally["gaps"] += 1
                    continue
                if entry["type"] != "logs":
                    continue
                for line in entry["lines"]:
                    fields = line["line"].split(" ", 3)
                    if len(fields) < 3 or fields[1] != str(round_):
                        continue
                    n = int(fields[2])
                    delays.append(now - float(fields[0]))
                    tenths[min(9, n * 10 // total)].append(delays[-1])
                    tally["received"] += 1
                    if n in seen:
                        tally["duplicates"] += 1
                    seen.add(n)
                    if n < last:
                        tally["out_of_order"] += 1
                    last = max(last, n)
                if last == total - 1 and len(seen) == total:
                    break
    delays.sort()

    def at(share: float) -> float:
        return delays[min(len(delays) - 1, int(share * len(delays)))] * 1000 if delays else -1.0

    return {
        **tally,
        "distinct": len(seen),
        "p50": at(0.50),
        "p99": at(0.99),
        "max": delays[-1] * 1000 if delays else -1.0,
        "tenths": [statistics.median(t) * 1000 if t else -1.0 for t in tenths],
    }


def main() -> None:
    url, token, round_, total, timeout = sys.argv[1:6]
    figures = trio.run(follow, url, token, int(round_), int(total), float(timeout))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
