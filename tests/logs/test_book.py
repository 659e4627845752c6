"""The log book: appends stored and published, reads, and following history then live."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from dployr.errors import SpecError
from dployr.logs.book import FOLLOW_PAGE, LogBook
from dployr.logs.framing import MAX_LINE, Lines, LineSplitter
from dployr.logs.values import InvalidStream, LogLine
from dployr.supervision import Gap

Feed = AsyncGenerator[list[LogLine] | Gap, None]


def cursors(entries: list[list[LogLine] | Gap]) -> list[int | Gap]:
    """Entries flattened to cursors, gap notices kept as they are."""
    out: list[int | Gap] = []
    for entry in entries:
        if isinstance(entry, Gap):
            out.append(entry)
        else:
            out.extend(line.cursor for line in entry)
    return out


def fill(book: LogBook, batches: int, per_batch: int, stream: str = "stdout") -> None:
    for _ in range(batches):
        first = book.history.last_cursor + 1
        book.append(stream, [f"line {first + i}" for i in range(per_batch)], deployment=1)


async def test_append_assigns_cursors_and_returns_the_batch(tmp_path: Path) -> None:
    with_book = LogBook(tmp_path)
    first = with_book.append("stdout", LineSplitter().feed(b"a\nb\n"), deployment=3, ts=10.0)
    assert first is not None
    assert (first.first_cursor, first.last_cursor, first.lines) == (1, 2, ("a", "b"))
    second = with_book.append("build", ["step 1\nstep 2", "done"], deployment=3)
    assert second is not None
    assert (second.first_cursor, second.lines) == (3, ("step 1", "step 2", "done"))
    one = with_book.append("stdout", "one string, one line", deployment=None)
    assert one is not None
    assert one.lines == ("one string, one line",)
    assert with_book.append("stdout", Lines(), deployment=None) is None
    assert with_book.append("stdout", [], deployment=None) is None
    message = with_book.system("exited with code 1", deployment=3)
    assert message is not None
    assert with_book.tail(1) == [LogLine(7, message.ts, "system", "exited with code 1", 3)]
    with pytest.raises(InvalidStream):
        with_book.append("stdin", ["x"], deployment=None)
    with_book.close()


async def test_timestamps_default_to_now_and_never_go_back(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    early = book.append("stdout", ["a"], deployment=None, ts=2e9)
    late = book.append("stdout", ["b"], deployment=None, ts=1e9)
    now = book.append("stdout", ["c"], deployment=None)
    assert early is not None
    assert late is not None
    assert now is not None
    assert late.ts == early.ts == now.ts == 2e9
    book.close()


async def test_reads_and_cursors_survive_reopening(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    fill(book, 10, 5)
    fill(book, 3, 2, stream="build")
    book.close()
    book = LogBook(tmp_path)
    assert book.statistics().last_cursor == 56
    assert [line.cursor for line in book.tail(3, {"build"})] == [54, 55, 56]
    assert [line.cursor for line in book.read(after=48, limit=3)] == [49, 50, 51]
    assert [line.line for line in book.read(streams={"build"}, limit=2)] == ["line 51", "line 52"]
    assert book.read(since=1e12) == []
    fill(book, 1, 1)
    assert book.tail(1)[0].cursor == 57
    book.close()


async def test_invalid_utf8_and_long_lines_end_to_end(tmp_path: Path) -> None:
    output = b"ok\r\n\xff\xfe bad \xe2\x82\n" + "€".encode() * MAX_LINE + b"\nlast words"
    splitter = LineSplitter()
    book = LogBook(tmp_path)
    for start in range(0, len(output), 64 * 1024):
        book.append("stderr", splitter.feed(output[start : start + 64 * 1024]), deployment=2)
    book.append("stderr", splitter.flush(), deployment=2)
    book.close()
    book = LogBook(tmp_path)
    lines = book.read(limit=10**6)
    assert [line.cursor for line in lines] == list(range(1, len(lines) + 1))
    assert lines[:2] == [
        LogLine(1, lines[0].ts, "stderr", "ok", 2),
        LogLine(2, lines[1].ts, "stderr", "\ufffd\ufffd bad \ufffd", 2),
    ]
    pieces = lines[2:-1]
    assert len(pieces) == 4
    assert [line.continued for line in pieces] == [True, True, True, False]
    assert "".join(line.line for line in pieces) == "€" * MAX_LINE
    assert all(len(line.line.encode()) <= MAX_LINE for line in lines)
    assert (lines[-1].line, lines[-1].continued) == ("last words", False)
    book.close()


async def collect_until(feed: Feed, last: int) -> list[int | Gap]:
    """Cursors (and gaps) from ``feed`` until cursor ``last`` has been seen."""
    seen: list[int | Gap] = []
    async for entry in feed:
        seen += cursors([entry])
        if any(isinstance(c, int) and c >= last for c in seen):
            return seen
    return seen


async def test_follow_joins_history_and_live_with_no_gap_and_no_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = LogBook(tmp_path)
    fill(book, 25, 100)  # history: 2,500 lines, several pages
    read = book.history.read

    def racing_read(**kwargs: Any) -> list[LogLine]:
        # While the follower reads the history, the service writes: these lines come
        # after the seam, are in the history file already, and must come once, live.
        trio.from_thread.run_sync(fill, book, 2, 7)
        return read(**kwargs)

    monkeypatch.setattr(book.history, "read", racing_read)
    got: list[int | Gap] = []

    async def follower() -> None:
        async with aclosing(book.follow(after=0)) as feed:
            async for entry in feed:
                got.extend(cursors([entry]))
                # Lines queued together come together: "stop" need not end its list.
                if not isinstance(entry, Gap) and any(line.line == "stop" for line in entry):
                    return

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follower)
            for _ in range(20):  # and more lines, racing the follower's thread
                fill(book, 1, 3)
                await trio.lowlevel.checkpoint()
            book.system("stop")
    stop = read(streams={"system"})[-1].cursor
    assert got[: got.index(stop) + 1] == list(range(1, stop + 1))
    assert got[got.index(stop) :] == list(range(stop, stop + len(got) - got.index(stop)))
    assert book.statistics().followers == 0
    book.close()


async def test_follow_pages_history_after_a_cursor_then_goes_live(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    fill(book, 3, FOLLOW_PAGE)
    async with aclosing(book.follow(after=10)) as feed:
        pages = [await anext(feed) for _ in range(3)]
        assert [len(page) for page in pages] == [FOLLOW_PAGE, FOLLOW_PAGE, FOLLOW_PAGE - 10]
        assert cursors(pages) == list(range(11, 3 * FOLLOW_PAGE + 1))  # type: ignore[arg-type]
        fill(book, 1, 2)
        assert cursors([await anext(feed)]) == [3001, 3002]
    assert book.statistics().followers == 0  # closing the iterator unsubscribed
    book.close()


async def test_follow_with_tail_and_with_streams(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    fill(book, 4, 5)
    fill(book, 1, 2, stream="build")  # cursors 21, 22
    async with aclosing(book.follow(tail=3)) as feed:
        assert cursors([await anext(feed)]) == [20, 21, 22]
        fill(book, 1, 1)
        assert cursors([await anext(feed)]) == [23]
    async with aclosing(book.follow(tail=10, after=19)) as feed:
        assert cursors([await anext(feed)]) == [20, 21, 22, 23]
    async with aclosing(book.follow(after=0, streams={"build"})) as feed:
        assert cursors([await anext(feed)]) == [21, 22]
        fill(book, 1, 2)  # stdout: not for this follower
        fill(book, 1, 1, stream="build")
        assert cursors([await anext(feed)]) == [26]
    async with aclosing(book.follow(after=30)) as feed:  # a cursor still to come
        fill(book, 1, 6)
        assert cursors([await anext(feed)]) == [31, 32]
    with pytest.raises(SpecError, match="at least 0"):
        await anext(book.follow(tail=-1))
    book.close()


async def test_follow_without_history_gets_only_what_comes_next(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    fill(book, 1, 3)
    got: list[int | Gap] = []

    async def follower() -> None:
        async with aclosing(book.follow()) as feed:
            async for entry in feed:
                got.extend(cursors([entry]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        await trio.testing.wait_all_tasks_blocked()
        assert book.statistics().followers == 1
        fill(book, 1, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [4, 5]
        book.close()
    assert got == [4, 5]


async def test_a_slow_follower_gets_a_gap_and_never_blocks_the_writer(tmp_path: Path) -> None:
    book = LogBook(tmp_path, topic_capacity=1200)
    book.system("started")
    async with aclosing(book.follow(after=0)) as feed:
        assert cursors([await anext(feed)]) == [1]  # history; subscribed from here on
        # A batch of 3 lines of 50 bytes weighs 552 (its 152 bytes of payload, and 400 for
        # the objects around it): room for 2, and never a wait.
        for _ in range(100):
            book.append("stdout", ["x" * 50] * 3, deployment=None)
        assert book.statistics().dropped == 98
        # The two batches that fit come in one list (queued together), then the gap.
        entries = [await anext(feed) for _ in range(2)]
        assert cursors(entries) == [*range(2, 8), Gap(missed=294, first=8, last=301)]
        book.append("stdout", ["caught up"], deployment=None)
        assert cursors([await anext(feed)]) == [302]
        # What the gap covers is in the history.
        missed = book.read(after=7, limit=294)
        assert [line.cursor for line in missed] == list(range(8, 302))
    book.close()


@pytest.mark.parametrize(("per_batch", "size"), [(1, 1), (3, 50), (130, 65), (1000, 65)])
def test_a_queued_batch_weighs_at_least_the_memory_it_holds(
    tmp_path: Path, per_batch: int, size: int
) -> None:
    # A follower's queue is bounded by weight: the weight must not understate memory ...
    book = LogBook(tmp_path, topic_capacity=2**40)
    subscription = book._topic.subscribe()
    line = b"x" * (size - 1) + b"\n"
    chunks = [line * per_batch for _ in range(100)]
    splitter = LineSplitter()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for chunk in chunks:  # as the pump does: the payload is made from what was read
            book.append("stdout", splitter.feed(chunk), deployment=7)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # ... nor overstate it much (room for followers is memory too).
    assert held <= subscription.pending <= held + 150 * len(chunks)
    book.close()


async def test_follow_reports_history_deleted_before_it_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = LogBook(tmp_path, max_bytes=256 * 1024)  # 64 KiB segments
    fill(book, 20, 100)  # 2,000 lines of about 10 bytes: all kept, in one segment
    read = book.history.read
    calls = 0

    def read_then_flood(**kwargs: Any) -> list[LogLine]:
        nonlocal calls
        calls += 1
        if calls == 2:  # between two pages, the service writes enough to drop old lines
            trio.from_thread.run_sync(fill, book, 300, 100)
        return read(**kwargs)

    monkeypatch.setattr(book.history, "read", read_then_flood)
    async with aclosing(book.follow(after=0)) as feed:
        first_page = await anext(feed)
        assert cursors([first_page]) == list(range(1, FOLLOW_PAGE + 1))
        # Lines 1,001 to 2,000 were deleted before they could be read; what came after the
        # follow started was published to it, so it is not missed.
        assert await anext(feed) == Gap(missed=1000, first=1001, last=2000)
        oldest = book.statistics().first_cursor
        assert oldest > 2001
        live = cursors([await anext(feed)])  # the batches queued meanwhile, together
        assert len(live) >= 100
        assert live == list(range(2001, 2001 + len(live)))
        # A follower asking for lines long gone is told so before it gets the rest.
        async with aclosing(book.follow(after=0)) as late:
            assert await anext(late) == Gap(oldest - 1, 1, oldest - 1)
            assert cursors([await anext(late)]) == list(range(oldest, oldest + FOLLOW_PAGE))
    book.close()


async def test_close_ends_every_follow(tmp_path: Path) -> None:
    book = LogBook(tmp_path)
    ended = trio.Event()

    async def follower() -> None:
        async with aclosing(book.follow()) as feed:
            async for _ in feed:
                pass
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        await trio.testing.wait_all_tasks_blocked()
        book.close()
        with trio.fail_after(1):
            await ended.wait()
