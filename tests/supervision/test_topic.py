"""Topics: fan-out in order, bounded per subscriber, gap notices instead of blocking."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from dployr.supervision import Gap, Topic


def drain(sub: object) -> list[object]:
    entries = []
    while True:
        try:
            entries.append(sub.receive_nowait())  # type: ignore[attr-defined]
        except (trio.WouldBlock, trio.EndOfChannel):
            return entries


async def test_every_subscriber_receives_every_batch_in_order() -> None:
    topic: Topic[int] = Topic("numbers")
    subs = [topic.subscribe() for _ in range(3)]
    topic.publish(1)
    topic.publish_many([2, 3])
    topic.publish_many(range(4, 6))
    for sub in subs:
        assert drain(sub) == [[1], [2, 3], [4, 5]]
    assert topic.statistics().published == 5


async def test_a_subscriber_sees_only_what_is_published_after_it_subscribed() -> None:
    topic: Topic[int] = Topic("numbers")
    topic.publish(1)
    sub = topic.subscribe()
    topic.publish(2)
    assert drain(sub) == [[2]]


async def test_a_slow_subscriber_gets_a_gap_and_never_blocks_the_publisher() -> None:
    topic: Topic[int] = Topic("numbers")
    slow = topic.subscribe(capacity=4)
    fast = topic.subscribe(capacity=1000)
    for start in range(0, 100, 3):
        topic.publish_many(list(range(start, min(start + 3, 100))))  # never waits
    assert slow.pending <= 4
    # The slow one has the first 4 items, then one notice covering everything it missed.
    assert drain(slow) == [[0, 1, 2], [3], Gap(missed=96, first=4, last=99)]
    assert [n for batch in drain(fast) for n in batch] == list(range(100))  # type: ignore[attr-defined]
    assert topic.statistics().gaps == 96


async def test_after_a_gap_a_subscriber_that_catches_up_receives_again() -> None:
    topic: Topic[int] = Topic("numbers")
    sub = topic.subscribe(capacity=2)
    topic.publish_many([1, 2, 3])
    assert drain(sub) == [[1, 2], Gap(1, 2, 2)]
    topic.publish(4)
    assert drain(sub) == [[4]]


async def test_gap_ranges_use_the_topics_span_and_weight() -> None:
    # Items stand for batches of log lines: (first cursor, last cursor).
    topic: Topic[tuple[int, int]] = Topic(
        "logs", weight=lambda b: b[1] - b[0] + 1, span=lambda b: b
    )
    sub = topic.subscribe(capacity=10)
    topic.publish_many([(1, 8), (9, 12), (13, 20)])
    assert drain(sub) == [[(1, 8)], Gap(missed=2, first=9, last=20)]


@given(
    st.integers(1, 50),
    st.lists(st.lists(st.integers(), min_size=1, max_size=20), max_size=40),
    st.lists(st.booleans(), max_size=40),
)
def test_subscriber_memory_is_bounded_and_nothing_is_silently_lost(
    capacity: int, batches: list[list[int]], reads: list[bool]
) -> None:
    topic: Topic[int] = Topic("t")
    sub = topic.subscribe(capacity=capacity)
    received: list[int] = []
    missed = 0
    reads = reads + [False] * len(batches)
    for batch, read in zip(batches, reads, strict=False):
        topic.publish_many(batch)
        assert sub.pending <= capacity
        if read:
            for entry in drain(sub):
                if isinstance(entry, Gap):
                    missed += entry.missed
                else:
                    received.extend(entry)  # type: ignore[arg-type]
    for entry in drain(sub):
        if isinstance(entry, Gap):
            missed += entry.missed
        else:
            received.extend(entry)  # type: ignore[arg-type]
    everything = [n for batch in batches for n in batch]
    assert len(received) + missed == len(everything)
    # What arrived is in publication order.
    it = iter(everything)
    assert all(any(n == m for m in it) for n in received)


async def test_receive_waits_for_a_publish_and_iteration_ends_when_closed() -> None:
    topic: Topic[str] = Topic("words")
    got: list[object] = []

    async def reader(sub: object) -> None:
        async for entry in sub:  # type: ignore[attr-defined]
            got.append(entry)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, topic.subscribe())
        await trio.testing.wait_all_tasks_blocked()
        topic.publish("hello")
        await trio.testing.wait_all_tasks_blocked()
        assert got == [["hello"]]
        topic.close()
    assert topic.statistics().subscribers == 0


async def test_closing_a_subscription_unsubscribes_it() -> None:
    topic: Topic[int] = Topic("numbers")
    with topic.subscribe() as sub:
        assert topic.statistics().subscribers == 1
    assert topic.statistics().subscribers == 0
    topic.publish(1)
    assert drain(sub) == []


async def test_receive_more_takes_queued_batches_up_to_a_weight_and_a_gap() -> None:
    topic: Topic[int] = Topic("numbers")  # without a weight function an item weighs 1
    sub = topic.subscribe(capacity=8)
    for batch in ([1, 2], [3, 4], [5, 6], [7]):
        topic.publish_many(batch)
    assert sub.receive_more(5) == [1, 2, 3, 4]  # [5, 6] would make 6
    assert sub.pending == 3
    topic.publish_many([8, 9, 10, 11, 12, 13])  # five fit, then a gap
    assert sub.receive_more(100) == [5, 6, 7, 8, 9, 10, 11, 12]  # stops at the gap notice
    assert drain(sub) == [Gap(1, 12, 12)]  # counted from 0, in publishing order
    assert sub.receive_more(100) == []
