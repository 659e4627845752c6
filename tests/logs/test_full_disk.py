"""A log book on a disk that fills up: appends never fail, the gap is counted, and history
resumes by itself when there is room again (a real tmpfs, filled for real)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from dployr.logs.book import LogBook
from dployr.logs.history import HistoryWriteFailed, LogHistory
from dployr.logs.values import LogBatch, LogLine
from dployr.store.reserve import RESERVE_FILE_NAME, DiskReserve
from dployr.supervision import Gap
from tests.faults.disks import fill, small_disk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "1m") as path:
        yield path


BIG = "x" * 5000
"""More than the page a tmpfs file's last write may still have room in."""


def texts(lines: list[LogLine]) -> list[str]:
    return [line.line for line in lines]


def test_a_full_disk_drops_lines_then_says_how_many_when_writing_works_again(disk: Path) -> None:
    book = LogBook(disk / "logs")
    assert book.append("stdout", ["before"], deployment=1) is not None
    filler = fill(disk)
    # Nothing big fits: each append is dropped and counted, and raises nothing.
    assert book.append("stdout", [BIG, BIG], deployment=1) is None
    statistics = book.statistics()
    assert (statistics.unwritten, statistics.lines_dropped, statistics.last_cursor) == (2, 2, 1)
    # The count is written as soon as anything can be: here the small line that says so
    # fits in what is left of the segment's last page, and the big line after it does not.
    assert book.system(f"exited with code 1 {BIG}", deployment=1) is None
    statistics = book.statistics()
    assert (statistics.unwritten, statistics.lines_dropped, statistics.last_cursor) == (1, 3, 2)
    filler.unlink()
    assert book.append("stdout", ["after"], deployment=1) is not None
    written = [
        "before",
        "2 lines dropped: disk full",
        "1 line dropped: disk full",
        "after",
    ]
    lines = book.read()
    assert texts(lines) == written
    assert [line.cursor for line in lines] == [1, 2, 3, 4]
    assert {lines[1].stream, lines[2].stream} == {"system"}
    assert book.statistics().unwritten == 0
    assert book.statistics().lines_dropped == 3
    book.close()
    # What was written is all there after the history is opened again.
    with LogHistory(disk / "logs") as history:
        assert texts(history.read()) == written


async def test_followers_see_the_gap_line_and_never_a_line_that_was_not_written(
    disk: Path,
) -> None:
    book = LogBook(disk / "logs")
    book.append("stdout", ["one"], deployment=None)
    seen: list[list[LogLine] | Gap] = []
    async with aclosing(book.follow(after=0)) as feed:
        seen.append(await anext(feed))
        filler = fill(disk)
        book.append("stdout", [BIG], deployment=None)
        filler.unlink()
        book.append("stdout", ["two"], deployment=None)
        with trio.fail_after(5):
            while "two" not in texts(seen[-1]):  # type: ignore[arg-type]
                seen.append(await anext(feed))
    assert not any(isinstance(entry, Gap) for entry in seen)
    shown = [line for entry in seen for line in entry]  # type: ignore[union-attr]
    assert texts(shown) == ["one", "1 line dropped: disk full", "two"]
    assert [line.cursor for line in shown] == [1, 2, 3]
    book.close()


def test_a_history_whose_next_segment_cannot_be_made_makes_it_at_the_next_append(
    tmp_path: Path,
) -> None:
    # An inode is all a new segment needs: a tmpfs with none left refuses it.
    with small_disk(tmp_path / "disk", "1m", inodes=8) as disk:
        history = LogHistory(disk / "logs", max_bytes=2**20, segment_bytes=1024)
        inodes = []
        with contextlib.suppress(OSError):
            while True:
                (disk / f"inode-{len(inodes)}").touch()
                inodes.append(disk / f"inode-{len(inodes)}")
        history.append(LogBatch(1, 1.0, "stdout", None, b"x" * 2000, 1))  # fills its segment
        second = LogBatch(2, 2.0, "stdout", None, b"y", 1)
        with pytest.raises(HistoryWriteFailed):
            history.append(second)  # the next segment cannot be created yet
        inodes.pop().unlink()
        history.append(second)
        assert [line.cursor for line in history.read()] == [1, 2]
        history.close()


def test_the_reserve_is_released_when_the_disk_fills_and_made_again_when_room_returns(
    disk: Path,
) -> None:
    changes: list[bool] = []
    reserve = DiskReserve(disk, 128 * 1024, on_change=changes.append)
    assert reserve.make()
    assert (disk / RESERVE_FILE_NAME).stat().st_size == 128 * 1024
    book = LogBook(disk / "logs", disk=reserve)
    filler = fill(disk)
    assert book.append("stdout", [BIG], deployment=None) is None
    # The reserve went to the database's use; history pauses, with room on the disk.
    assert reserve.full
    assert not (disk / RESERVE_FILE_NAME).exists()
    assert reserve.free_bytes() >= 128 * 1024
    assert book.append("stdout", ["paused"], deployment=None) is None
    assert book.statistics().last_cursor == 0
    assert changes == [True]
    filler.unlink()
    assert book.append("stdout", ["back"], deployment=None) is not None
    assert not reserve.full
    assert (disk / RESERVE_FILE_NAME).stat().st_size == 128 * 1024
    assert changes == [True, False]
    assert texts(book.read()) == ["2 lines dropped: disk full", "back"]
    assert reserve.times_full == 1
    assert reserve.lines_dropped == 2
    book.close()
