"""Service logs: framing output into lines, and appending batches to a log book.

One million short lines (about 60 bytes) as a service would write them, read in 64 KiB
chunks: split into lines, then appended to a log book on disk (default 50 MB bound, so
segments rotate and the oldest are deleted along the way), with no follower, with one
subscriber draining the raw batches, and with one ``follow()`` draining lines. Then the
same lines in 8 KiB chunks, one batch each (what a pump that appended every read of a
chatty Python service would do): the fixed cost per batch. Each figure is the best of
ROUNDS runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import trio
import trio.testing

from dployr.logs import Lines, LineSplitter, LogBook

LINES = 1_000_000
CHUNK = 64 * 1024
SMALL_CHUNK = 8 * 1024
ROUNDS = 3


def service_output() -> bytes:
    """LINES lines of about 60 bytes each, like a web service's access log."""
    return "".join(
        f"2026-11-26T12:00:00Z INFO GET /api/items/{i % 977} 200 in {i % 50} ms #{i}\n"
        for i in range(LINES)
    ).encode()


def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def split(chunks: list[bytes]) -> tuple[float, list[Lines]]:
    """Seconds to split every chunk, and the batches of lines."""
    splitter = LineSplitter()
    batches: list[Lines] = []
    start = time.perf_counter()
    for chunk in chunks:
        lines = splitter.feed(chunk)
        if lines:
            batches.append(lines)
    rest = splitter.flush()
    elapsed = time.perf_counter() - start
    if rest:
        batches.append(rest)
    assert sum(len(lines) for lines in batches) == LINES
    return elapsed, batches


async def append_all(book: LogBook, batches: list[Lines]) -> None:
    for lines in batches:
        book.append("stdout", lines, deployment=1)
        await trio.lowlevel.checkpoint()  # let a follower run, as a pipe pump would


async def no_follower(book: LogBook, batches: list[Lines]) -> float:
    start = time.perf_counter()
    await append_all(book, batches)
    return time.perf_counter() - start


async def raw_subscriber(book: LogBook, batches: list[Lines]) -> float:
    """One subscriber of the book's topic, draining batches as they come."""
    received = 0
    subscription = book._topic.subscribe()  # the batches, without the follow machinery

    async def drain() -> None:
        nonlocal received
        async for entry in subscription:
            assert isinstance(entry, list), "the subscriber fell behind"
            received += sum(batch.count for batch in entry)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await append_all(book, batches)
        subscription.close()
    elapsed = time.perf_counter() - start
    assert received == LINES
    return elapsed


async def follower(book: LogBook, batches: list[Lines]) -> float:
    """One ``follow()``, turning every batch into LogLine values."""
    received = 0
    done = trio.Event()

    async def follow() -> None:
        nonlocal received
        async with aclosing(book.follow()) as feed:
            async for entry in feed:
                assert isinstance(entry, list), "the follower fell behind"
                received += len(entry)
                if received == LINES:
                    done.set()
                    return

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await trio.testing.wait_all_tasks_blocked()
        await append_all(book, batches)
        await done.wait()
    return time.perf_counter() - start


def with_book(
    run: Callable[[LogBook, list[Lines]], object], batches: list[Lines]
) -> tuple[float, int]:
    """Seconds for ``run`` on a new book in a temporary directory, and the bytes on disk."""
    with tempfile.TemporaryDirectory() as directory:
        book = LogBook(Path(directory) / "logs", topic_capacity=64 * 2**20)
        try:
            elapsed = trio.run(run, book, batches)  # type: ignore[arg-type]
            return elapsed, book.statistics().size
        finally:
            book.close()


def main() -> None:
    data = service_output()
    chunks = chunks_of(data)
    # Best of ROUNDS: the first run pays for warming the page cache and the allocator.
    split_time, batches = min((split(chunks) for _ in range(ROUNDS)), key=lambda r: r[0])
    size = len(data) / LINES
    print(
        f"logs.split: {LINES / split_time / 1e6:.1f} M lines/s "
        f"({LINES} lines of {size:.0f} bytes in {len(chunks)} chunks of 64 KiB)"
    )
    for label, run in (
        ("no follower", no_follower),
        ("1 subscriber draining batches", raw_subscriber),
        ("1 follow() draining lines", follower),
    ):
        elapsed, on_disk = min(with_book(run, batches) for _ in range(ROUNDS))
        print(
            f"logs.append: {LINES / elapsed / 1e6:.1f} M lines/s, "
            f"{LINES / (elapsed + split_time) / 1e6:.1f} M lines/s with splitting "
            f"({label}; {len(batches)} batches, {on_disk / 2**20:.0f} MiB kept on disk)"
        )
    small = chunks_of(data, SMALL_CHUNK)
    split_time, batches = min((split(small) for _ in range(ROUNDS)), key=lambda r: r[0])
    elapsed, _ = min(with_book(no_follower, batches) for _ in range(ROUNDS))
    per_batch = (elapsed + split_time) / len(batches) * 1e6
    print(
        f"logs.append, 8 KiB chunks: {LINES / (elapsed + split_time) / 1e6:.1f} M lines/s "
        f"with splitting, {per_batch:.1f} µs a batch of {LINES // len(batches)} lines "
        f"(no follower; {len(batches)} batches)"
    )


if __name__ == "__main__":
    main()
