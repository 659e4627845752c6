"""A topic subscription served as the protocol's :class:`~dployr.protocol.handle.Feed`.

:class:`TopicFeed` is the common part of the feeds the engine's ``LocalHandle`` and the
cluster's router hand out: it receives the subscription's batches and gap notices, turns a
topic's :class:`~dployr.supervision.topic.Gap` into the protocol's
:class:`~dployr.protocol.feed.Gap`, and ends the subscription on close. A subclass says
only how a batch becomes runs of items (:meth:`TopicFeed.runs`).

It lives beside the topics rather than in :mod:`dployr.protocol`, which is pure (no trio),
and where both the engine and the cluster may import it.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable
from typing import Generic, Self, TypeVar

import trio

from dployr.protocol.feed import Gap
from dployr.supervision import topic as topics

S = TypeVar("S")
T = TypeVar("T")


def protocol_gap(gap: topics.Gap) -> Gap:
    """A topic's gap notice as the protocol's."""
    return Gap(gap.missed, gap.first, gap.last)


class TopicFeed(abc.ABC, Generic[S, T]):
    """A subscription to a topic of ``S`` items, iterated as runs of ``T`` items and
    :class:`~dployr.protocol.feed.Gap` notices; close it, or leave its ``with``, to end it."""

    def __init__(self, subscription: topics.Subscription[S]) -> None:
        self._subscription = subscription

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe: what is queued can still be read, then the iteration ends."""
        self._subscription.close()

    async def __aiter__(self) -> AsyncIterator[list[T] | Gap]:
        while True:
            # Received one by one, not through a second generator: a consumer that stops
            # early (closing this one) leaves nothing suspended behind.
            try:
                entry = await self._subscription.receive()
            except trio.EndOfChannel:
                return
            if isinstance(entry, topics.Gap):
                yield protocol_gap(entry)
                continue
            for run in self.runs(entry):
                yield run

    @abc.abstractmethod
    def runs(self, batch: list[S]) -> Iterable[list[T] | Gap]:
        """What a batch of the topic is on the feed: runs of items (none empty), and gap
        notices carried in the batch itself."""
