"""Topics: publish/subscribe with a bounded queue per subscriber.

A topic fans items out to any number of subscribers. Publishing never waits and never
fails: each subscriber has a bounded queue, and what does not fit is replaced by a single
:class:`Gap` notice saying how many items were missed and which range they covered (by
sequence number, or by the keys a ``span`` function reads off the items, such as log
cursors), so a slow subscriber can read that range from history instead.

Batches are first-class: ``publish_many`` hands the same list to every subscriber with
room for it, so fan-out costs one append per subscriber per batch, not per item.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Generic, TypeVar

import attrs
import trio

from dployr.supervision.policy import DEFAULT_TOPIC_CAPACITY

T = TypeVar("T")


@attrs.frozen
class Gap:
    """A subscriber missed ``missed`` items covering ``first`` to ``last`` (inclusive)."""

    missed: int
    first: int
    last: int


@attrs.frozen
class TopicStatistics:
    """A snapshot of a topic."""

    name: str
    subscribers: int
    published: int
    """Items published so far (each item of a batch counts)."""
    gaps: int
    """Items dropped for slow subscribers so far, summed over subscribers."""


class Subscription(Generic[T]):
    """One subscriber's bounded queue of batches and gap notices.

    Iterate it (``async for entry in sub``) to receive, in order, lists of items and
    :class:`Gap` notices; iteration ends when the subscription or the topic is closed.
    Use it as a context manager, or call :meth:`close`, to unsubscribe.
    """

    def __init__(self, topic: Topic[T], capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a subscription needs room for at least one item")
        self._topic = topic
        self.capacity = capacity
        # Invariant: _size is the total weight of the batches in _queue, and never exceeds
        # capacity; two Gap entries are never adjacent (a new gap merges into the last one).
        self._queue: collections.deque[tuple[list[T] | Gap, int]] = collections.deque()
        self._size = 0
        self._waiter: trio.Event | None = None
        self._closed = False

    # -- publisher side (called by Topic, never waits) ----------------------------------

    def _offer(self, batch: list[T], weight: int, seqs: tuple[int, int]) -> int:
        """Queue what fits of ``batch``; return the number of items dropped."""
        room = self.capacity - self._size
        if weight <= room:
            self._queue.append((batch, weight))
            self._size += weight
            self._wake()
            return 0
        topic = self._topic
        keep = 0
        if room > 0:
            if topic._weight is None:
                keep = room
            else:
                used = 0
                for item in batch:
                    used += topic._weight(item)
                    if used > room:
                        break
                    keep += 1
        if keep:
            kept = batch[:keep]
            kept_weight = topic._weigh(kept)
            self._queue.append((kept, kept_weight))
            self._size += kept_weight
        dropped = batch[keep:]
        self._add_gap(dropped, seqs[0] + keep, seqs[1])
        self._wake()
        return len(dropped)

    def _add_gap(self, dropped: list[T], first_seq: int, last_seq: int) -> None:
        span = self._topic._span
        if span is None:
            first, last = first_seq, last_seq
        else:
            first, last = span(dropped[0])[0], span(dropped[-1])[1]
        if self._queue and isinstance(tail := self._queue[-1][0], Gap):
            self._queue[-1] = (Gap(tail.missed + len(dropped), tail.first, last), 0)
        else:
            self._queue.append((Gap(len(dropped), first, last), 0))

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    # -- subscriber side -------------------------------------------------------------------

    def receive_nowait(self) -> list[T] | Gap:
        """The next batch or gap notice; raises ``trio.WouldBlock`` when there is none."""
        if self._queue:
            entry, weight = self._queue.popleft()
            self._size -= weight
            return entry
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def receive_more(self, weight: int) -> list[T]:
        """The batches queued before the next gap notice, in one list, as long as they
        weigh at most ``weight`` together (empty if a gap or nothing is next); never
        waits. For a subscriber that sends what it receives on: fewer, bigger batches,
        while what waits for it stays in its bounded queue."""
        items: list[T] = []
        queue = self._queue
        taken = 0
        while queue and not isinstance(queue[0][0], Gap) and taken + queue[0][1] <= weight:
            entry, size = queue.popleft()
            self._size -= size
            taken += size
            items.extend(entry)  # type: ignore[arg-type]  # not a Gap: checked above
        return items

    async def receive(self) -> list[T] | Gap:
        """Wait for the next batch or gap notice; raises ``trio.EndOfChannel`` once closed."""
        while True:
            try:
                entry = self.receive_nowait()
            except trio.WouldBlock:
                self._waiter = waiter = trio.Event()
                await waiter.wait()
            else:
                await trio.lowlevel.checkpoint()
                return entry

    def __aiter__(self) -> AsyncIterator[list[T] | Gap]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[T] | Gap]:
        while True:
            try:
                entry = await self.receive()
            except trio.EndOfChannel:
                return
            yield entry

    @property
    def pending(self) -> int:
        """The weight of the items waiting in this subscriber's queue."""
        return self._size

    def close(self) -> None:
        """Unsubscribe; queued entries can still be received, then iteration ends."""
        if not self._closed:
            self._closed = True
            self._topic._subscribers.discard(self)
            self._wake()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Topic(Generic[T]):
    """A named stream of items fanned out to subscribers with bounded queues.

    ``weight`` says how many items one published value counts for (a batch of log lines
    counts its lines); ``span`` reads the first and last key a value covers, so that gap
    notices speak the subscriber's language (cursors) rather than topic sequence numbers.
    """

    def __init__(
        self,
        name: str,
        *,
        capacity: int = DEFAULT_TOPIC_CAPACITY,
        weight: Callable[[T], int] | None = None,
        span: Callable[[T], tuple[int, int]] | None = None,
    ) -> None:
        self.name = name
        self.capacity = capacity
        self._weight = weight
        self._span = span
        self._subscribers: set[Subscription[T]] = set()
        self._published = 0
        self._gaps = 0
        self._closed = False

    def _weigh(self, batch: Sequence[T]) -> int:
        if self._weight is None:
            return len(batch)
        return sum(map(self._weight, batch))

    def subscribe(self, capacity: int | None = None) -> Subscription[T]:
        """A new subscription that receives everything published from now on."""
        sub = Subscription(self, self.capacity if capacity is None else capacity)
        if self._closed:
            sub._closed = True
        else:
            self._subscribers.add(sub)
        return sub

    def publish(self, item: T) -> None:
        """Send one item to every subscriber; never waits."""
        self.publish_many([item])

    def publish_many(self, items: Sequence[T]) -> None:
        """Send a batch to every subscriber, in order; never waits.

        The batch is shared between subscribers, so it must not be changed afterwards.
        """
        if not items or self._closed:
            return
        batch = items if isinstance(items, list) else list(items)
        first = self._published
        self._published += len(batch)
        if not self._subscribers:
            return
        weight = self._weigh(batch)
        seqs = (first, self._published - 1)
        for sub in self._subscribers:
            self._gaps += sub._offer(batch, weight, seqs)

    @property
    def published(self) -> int:
        """How many items have been published on this topic."""
        return self._published

    def statistics(self) -> TopicStatistics:
        """A frozen snapshot: subscribers, items published, items dropped as gaps."""
        return TopicStatistics(self.name, len(self._subscribers), self._published, self._gaps)

    def close(self) -> None:
        """End the topic: every subscription ends once its queue is drained."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.close()
