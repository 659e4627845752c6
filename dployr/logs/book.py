"""A service's log book: its history on disk and its live feed, as one object.

Everything a service writes goes through :meth:`LogBook.append`, one batch at a time: the
batch gets its cursors, is written to the history as one frame and is published on the
book's topic. Publishing never waits: a follower that falls behind is sent a
:class:`~dployr.supervision.topic.Gap` naming the cursors it missed, which it can read
from the history.

:meth:`LogBook.follow` joins the two without a hole or a repeat: it subscribes to the topic
and notes the last cursor in the same synchronous step, reads the history up to that cursor
(in a worker thread, page by page), then hands over the live batches, which all come after.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Iterable
from pathlib import Path
from typing import Final, Protocol

import attrs
import trio

from dployr.errors import SpecError
from dployr.logs.framing import Lines, LineSplitter
from dployr.logs.history import DEFAULT_MAX_BYTES, HistoryWriteFailed, LogHistory
from dployr.logs.values import LogBatch, LogLine, check_stream, check_streams, lines_of
from dployr.supervision.topic import Gap, Topic

DEFAULT_TOPIC_CAPACITY: Final = 4 * 2**20
"""Bytes of lines one follower may have waiting before it is sent a gap notice instead."""
FOLLOW_PAGE: Final = 1000
"""Lines per page when a follower is sent history."""
FOLLOW_TEXT: Final = 256 << 10
"""The most text (characters) one page of history sent to a follower holds."""
FOLLOW_TAIL_TEXT: Final = 512 << 10
"""The most text a follower's ``tail`` holds: the newest lines that fit (at least one).

With :data:`FOLLOW_TEXT`, this bounds what a follower holds of the history, and so what a
stalled one costs, whatever lines the service writes (up to 64 KiB each)."""
FOLLOW_TAKE: Final = 256 * 1024
"""The most a follower takes from its queue at once beyond one batch (by weight, ~bytes):
what it holds outside its bounded queue while it sends them on."""


@attrs.frozen
class LogBookStatistics:
    """A snapshot of a log book."""

    first_cursor: int
    """The cursor of the oldest line kept (``last_cursor + 1`` when none is)."""
    last_cursor: int
    """The cursor of the newest line (0 before the first line ever)."""
    size: int
    """Bytes of history on disk."""
    segments: int
    """Segment files of history."""
    followers: int
    """Live subscriptions to the book's topic."""
    dropped: int
    """Batches dropped for followers that fell behind, so far (each was told by a gap)."""
    unwritten: int = 0
    """Lines not written to the history since the last one that was (the disk is full):
    a line "N lines dropped: disk full" will say so once writing works again."""
    lines_dropped: int = 0
    """Lines never written to the history because it could not be written, so far."""


class DiskSpace(Protocol):
    """What a log book asks of the disk its history is on (the daemon's ``DiskReserve``)."""

    def writable(self) -> bool:
        """Whether to write now: False while the disk is full and space has not returned."""

    def full_seen(self) -> None:
        """A write failed for want of space."""

    def dropped(self, lines: int) -> None:
        """``lines`` lines could not be written to a history."""


BATCH_OVERHEAD: Final = 400
"""Bytes a queued batch costs in memory beyond its payload: the batch object and its
fields, the payload's header, the one-item list it is published in and the queue slot
(measured: 284-380; tests/logs/test_book.py checks that the weight stays an upper bound)."""
CONTINUED_OVERHEAD: Final = 80
"""Bytes each continued-line index costs in a batch's set (an int and its slot)."""


def _weight(batch: LogBatch) -> int:
    # What a queued batch holds: its payload and a few small objects. The text of each
    # line is only made when a follower takes the batch off its queue (to_lines), so no
    # Python string per line waits in a queue.
    return len(batch.payload) + BATCH_OVERHEAD + CONTINUED_OVERHEAD * len(batch.continued)


def _span(batch: LogBatch) -> tuple[int, int]:
    return batch.first_cursor, batch.last_cursor


def frame_texts(texts: Iterable[str]) -> Lines:
    """Frame text given as strings the way output read from a pipe is framed.

    A string holding newlines becomes several lines; an over-long one, several pieces.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        return Lines()
    data = "\n".join(texts).encode("utf-8", "replace")
    return LineSplitter().feed(data + b"\n")


class LogBook:
    """The log of one service: its bounded history in ``directory`` and its live feed.

    Appends and follows happen on the event loop; :meth:`read` and :meth:`tail` touch the
    disk and may be run in a worker thread (``trio.to_thread.run_sync``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        topic_capacity: int = DEFAULT_TOPIC_CAPACITY,
        name: str | None = None,
        disk: DiskSpace | None = None,
    ) -> None:
        if topic_capacity < 1:
            raise SpecError(f"a log follower needs room for at least 1 byte, not {topic_capacity}")
        self.history = LogHistory(directory, max_bytes=max_bytes)
        """The history on disk (its ``first_cursor`` and ``last_cursor`` are often handy)."""
        self._topic: Topic[LogBatch] = Topic(
            name or f"logs:{Path(directory).name}",
            capacity=topic_capacity,
            weight=_weight,
            span=_span,
        )
        self._disk = disk
        # Lines that could not be written since the last line that was, and why: they are
        # counted in one line written before the next batch that can be.
        self._unwritten = 0
        self._unwritten_reason = ""
        self._lines_dropped = 0

    def append(
        self,
        stream: str,
        lines: Lines | Iterable[str],
        *,
        deployment: int | None,
        ts: float | None = None,
    ) -> LogBatch | None:
        """Store and publish ``lines`` as one batch; return it, or None when there were none.

        ``lines`` is what a :class:`~dployr.logs.framing.LineSplitter` produced, or plain
        strings (framed the same way). ``ts`` defaults to now; a timestamp older than the
        last line's is raised to it, so timestamps never go back.

        A batch that cannot be written (the disk is full) is dropped, counted, and not
        published, and None is returned: a service's output never fails because of its
        log. While the disk is full nothing is written; once a write works again, a line
        "N lines dropped: disk full" comes first, where the missing lines were.
        """
        check_stream(stream)
        if not isinstance(lines, Lines):
            lines = frame_texts(lines)
        if not lines:
            return None
        now = time.time() if ts is None else ts
        if self._disk is not None and not self._disk.writable():
            self._drop(lines.count, "disk full")
            return None
        if self._unwritten:
            count = self._unwritten
            text = f"{count} line{'s' if count != 1 else ''} dropped: {self._unwritten_reason}"
            if self._write(self._batch("system", frame_texts([text]), None, now)) is None:
                self._drop(lines.count, self._unwritten_reason)
                return None
            self._unwritten, self._unwritten_reason = 0, ""
        return self._write(self._batch(stream, lines, deployment, now), lines.count)

    def _batch(self, stream: str, lines: Lines, deployment: int | None, now: float) -> LogBatch:
        last_ts = self.history.last_ts
        if last_ts is not None and now < last_ts:
            now = last_ts
        # A Lines value agrees with its payload (checked when built by hand, true by
        # construction when built by the splitter): only the other fields need a check.
        return LogBatch.trusted(
            first_cursor=self.history.last_cursor + 1,
            ts=now,
            stream=stream,
            deployment=deployment,
            payload=lines.payload,
            count=lines.count,
            continued=lines.continued,
        )

    def _write(self, batch: LogBatch, count: int = 0) -> LogBatch | None:
        """Write ``batch`` to the history, then publish it; None (``count`` lines dropped)
        when it could not be written. Writing first: a line a follower saw is on disk."""
        try:
            self.history.append(batch)
        except HistoryWriteFailed as error:
            if error.disk_full and self._disk is not None:
                self._disk.full_seen()
            self._drop(count, "disk full" if error.disk_full else "the log history failed")
            return None
        self._topic.publish(batch)
        return batch

    def _drop(self, count: int, reason: str) -> None:
        if count and not self._unwritten:
            self._unwritten_reason = reason
        self._unwritten += count
        self._lines_dropped += count
        if self._disk is not None:
            self._disk.dropped(count)

    def system(self, text: str, *, deployment: int | None = None) -> LogBatch | None:
        """Log a message of dployr's own about the service ("exited with code 1")."""
        return self.append("system", [text], deployment=deployment)

    def read(
        self,
        *,
        after: int | None = None,
        limit: int = 1000,
        streams: Iterable[str] | None = None,
        since: float | None = None,
        max_text: int | None = None,
    ) -> list[LogLine]:
        """Up to ``limit`` lines after cursor ``after``, oldest first (see ``LogHistory.read``)."""
        return self.history.read(
            after=after, limit=limit, streams=streams, since=since, max_text=max_text
        )

    def tail(
        self, n: int, streams: Iterable[str] | None = None, *, max_text: int | None = None
    ) -> list[LogLine]:
        """The last ``n`` lines (of ``streams``, all when None), oldest first."""
        return self.history.tail(n, streams, max_text=max_text)

    async def follow(
        self,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: Iterable[str] | None = None,
    ) -> AsyncGenerator[list[LogLine] | Gap, None]:
        """History, then live lines, with nothing missing or repeated where they meet.

        First the lines after cursor ``after``, or the last ``tail`` lines (both: the last
        ``tail`` lines after ``after``; neither: no history), then every line appended
        from the moment iteration started. Yields lists of lines, oldest first, and
        :class:`Gap` notices for lines that were missed, with ``missed`` counted in lines:
        those a slow follower had no room for, and those of the history deleted (to keep
        it within its size) before they could be read.

        It subscribes when iteration starts. Use it in ``async with
        contextlib.aclosing(book.follow(...))``: closing it unsubscribes.
        """
        feed = self.follow_batches(after=after, tail=tail, streams=streams)
        async with contextlib.aclosing(feed):
            async for entry in feed:
                if isinstance(entry, tuple):
                    yield lines_of(entry)
                else:
                    yield entry

    async def follow_batches(
        self,
        *,
        after: int | None = None,
        tail: int | None = None,
        streams: Iterable[str] | None = None,
    ) -> AsyncGenerator[list[LogLine] | tuple[LogBatch, ...] | Gap, None]:
        """:meth:`follow`, with live lines handed over as the batches that were published.

        Every follower is handed the same batch objects, so work done once per batch (a
        feed encoding it for the wire) can be shared by all of them. Live batches queued
        together are handed over together, up to :data:`FOLLOW_TAKE`. History, and live
        lines at the seam that only part of a batch belongs to, still come as lists of
        lines.
        """
        wanted = check_streams(streams)
        if tail is not None and tail < 0:
            raise SpecError(f"a log tail must be a number of lines, at least 0, not {tail}")
        history = self.history
        # Subscribing and noting the last cursor in one synchronous step splits the log at
        # `seam`: lines up to it come from the history, every line after it from the topic.
        subscription = self._topic.subscribe()
        seam = history.last_cursor
        floor = seam if after is None else max(seam, after)  # live lines come after it
        try:
            if tail is not None:
                read_tail = functools.partial(
                    history.tail, tail, wanted, until=seam, max_text=FOLLOW_TAIL_TEXT
                )
                lines = await trio.to_thread.run_sync(read_tail)
                if after is not None:
                    lines = [line for line in lines if line.cursor > after]
                for start in range(0, len(lines), FOLLOW_PAGE):
                    yield lines[start : start + FOLLOW_PAGE]
            elif after is not None:
                position = after
                while position < seam:
                    read_page = functools.partial(
                        history.read,
                        after=position,
                        limit=FOLLOW_PAGE,
                        streams=wanted,
                        until=seam,
                        max_text=FOLLOW_TEXT,
                    )
                    page = await trio.to_thread.run_sync(read_page)
                    lost = _deleted(position + 1, history.first_cursor, page, seam)
                    if lost is not None:
                        yield lost
                    if page:
                        yield page
                    if not page:
                        break
                    position = page[-1].cursor
            while True:
                try:
                    entry = await subscription.receive()
                except trio.EndOfChannel:
                    return
                if isinstance(entry, Gap):
                    if entry.last > floor:
                        first = max(entry.first, floor + 1)
                        yield Gap(entry.last - first + 1, first, entry.last)
                    continue
                # What else is queued goes with it, up to the next gap notice and a bound.
                batches = entry + subscription.receive_more(FOLLOW_TAKE)
                live = tuple(
                    batch
                    for batch in batches
                    if (wanted is None or batch.stream in wanted) and batch.last_cursor > floor
                )
                if live and live[0].first_cursor <= floor:
                    # Asked for lines after one that was still to come: part of a batch.
                    yield [line for line in lines_of(live) if line.cursor > floor]
                elif live:
                    yield live
        finally:
            subscription.close()

    def statistics(self) -> LogBookStatistics:
        """A frozen snapshot: cursors, history size, followers and what they missed."""
        history = self.history.statistics()
        topic = self._topic.statistics()
        return LogBookStatistics(
            history.first_cursor,
            history.last_cursor,
            history.size,
            history.segments,
            topic.subscribers,
            topic.gaps,
            self._unwritten,
            self._lines_dropped,
        )

    def close(self) -> None:
        """End every follow (once each has received what it was sent) and close the history."""
        self._topic.close()
        self.history.close()


def _deleted(expected: int, oldest: int, page: list[LogLine], seam: int) -> Gap | None:
    """A gap for history lines from ``expected`` on that were deleted before being read."""
    last = min(oldest - 1, page[0].cursor - 1 if page else seam)
    if last < expected:
        return None
    return Gap(last - expected + 1, expected, last)
