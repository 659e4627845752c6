"""The supervision runtime: restart of an in-process child, and topic fan-out."""

from __future__ import annotations

import time

import trio

from dployr.supervision import (
    DISABLED_BACKOFF,
    ChildContext,
    ChildSpec,
    Intensity,
    Supervisor,
    Topic,
)

RESTARTS = 50_000
ITEMS = 1_000_000
BATCHES = (1_000, 100, 10)
SUBSCRIBERS = 10


async def restart_latency() -> float:
    """Seconds per restart of a child that crashes as soon as it has started."""
    done = trio.Event()
    count = 0

    async def crasher(
        ctx: ChildContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        nonlocal count
        count += 1
        task_status.started()
        if count > RESTARTS:
            done.set()
            await trio.sleep_forever()
        raise RuntimeError("crash")

    sup = Supervisor(
        "bench",
        [ChildSpec("crasher", crasher, backoff=DISABLED_BACKOFF)],
        intensity=Intensity(RESTARTS * 2, 3600),
    )
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        await nursery.start(sup.run)
        await done.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed / RESTARTS


async def fan_out(size: int) -> float:
    """Deliveries per second: ITEMS published in batches of ``size`` to SUBSCRIBERS readers."""
    topic: Topic[int] = Topic("bench", capacity=ITEMS)
    received = [0] * SUBSCRIBERS
    batch = list(range(size))

    async def reader(index: int, sub: object) -> None:
        async for entry in sub:  # type: ignore[attr-defined]
            received[index] += len(entry)

    async with trio.open_nursery() as nursery:
        subs = [topic.subscribe() for _ in range(SUBSCRIBERS)]
        for index, sub in enumerate(subs):
            nursery.start_soon(reader, index, sub)
        start = time.perf_counter()
        for _ in range(ITEMS // size):
            topic.publish_many(batch)
            await trio.lowlevel.checkpoint()  # let readers run, as a real publisher would
        topic.close()
    elapsed = time.perf_counter() - start
    assert received == [ITEMS] * SUBSCRIBERS
    return ITEMS * SUBSCRIBERS / elapsed


def main() -> None:
    per_restart = trio.run(restart_latency)
    print(f"supervision.restart: {per_restart * 1e6:.1f} µs per restart ({RESTARTS} restarts)")
    for size in BATCHES:
        rate = trio.run(fan_out, size)
        print(
            f"supervision.fan_out: {rate / 1e6:.1f} M deliveries/s "
            f"({ITEMS} items x {SUBSCRIBERS} subscribers, batches of {size})"
        )
