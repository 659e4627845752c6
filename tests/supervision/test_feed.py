"""A topic subscription as a protocol Feed: the engine's MappedFeed and the router's
MergedFeed share it (dployr/supervision/feed.py) and differ only in how a batch becomes
runs."""

from __future__ import annotations

from collections.abc import Sequence

from dployr.cluster.router import MergedFeed
from dployr.engine.handle import MappedFeed
from dployr.protocol.feed import Gap
from dployr.supervision import Topic


async def read_all(feed: MappedFeed[int, str] | MergedFeed[int]) -> list[Sequence[object] | Gap]:
    entries: list[Sequence[object] | Gap] = []
    async for entry in feed:
        entries.append(entry)
    return entries


async def test_a_mapped_feed_renders_items_leaves_out_nones_and_turns_gaps_into_the_protocols() -> (
    None
):
    topic: Topic[int] = Topic("numbers")
    with MappedFeed(topic.subscribe(capacity=4), lambda n: None if n % 2 else f"n{n}") as feed:
        topic.publish_many([0, 1, 2])
        topic.publish_many([3])  # rendered as nothing: no empty run
        topic.publish_many([4, 5])  # no room: a gap notice
    # Closed (by the ``with``): what was queued is read, then the feed ends.
    assert await read_all(feed) == [["n0", "n2"], Gap(missed=2, first=4, last=5)]


async def test_a_merged_feed_splits_runs_around_the_gaps_its_members_reported() -> None:
    topic: Topic[int | Gap] = Topic("merged")
    feed = MergedFeed(topic.subscribe(capacity=10))
    topic.publish_many([1, 2, Gap(5, 10, 14), 3])
    topic.publish_many([Gap(1, 20, 20)])
    feed.close()
    assert await read_all(feed) == [[1, 2], Gap(5, 10, 14), [3], Gap(1, 20, 20)]


async def test_a_reader_that_stops_early_leaves_the_feed_closable() -> None:
    topic: Topic[int] = Topic("numbers")
    with MappedFeed(topic.subscribe(), str) as feed:
        topic.publish_many([1])
        topic.publish_many([2])
        entries = aiter(feed)
        assert await anext(entries) == ["1"]
        await entries.aclose()  # type: ignore[attr-defined]
    assert topic.statistics().subscribers == 0
