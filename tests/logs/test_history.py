"""The log history on disk: frames, segments, recovery after a crash, bounds, reads."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dployr.errors import SpecError
from dployr.logs.history import (
    CursorMismatch,
    HistoryClosed,
    HistoryCorrupt,
    HistoryInUse,
    HistoryWriteFailed,
    LogHistory,
    encode_frame,
)
from dployr.logs.values import STREAMS, InvalidBatch, InvalidStream, LogBatch, LogLine


def make_batch(
    first: int,
    texts: list[str],
    *,
    stream: str = "stdout",
    ts: float = 1000.0,
    deployment: int | None = None,
    continued: frozenset[int] = frozenset(),
) -> LogBatch:
    return LogBatch(
        first_cursor=first,
        ts=ts,
        stream=stream,
        deployment=deployment,
        payload="\n".join(texts).encode(),
        count=len(texts),
        continued=continued,
    )


def fill(
    history: LogHistory, batches: int, per_batch: int = 3, *, stream: str = "stdout"
) -> list[LogLine]:
    """Append numbered batches; return the lines written."""
    written: list[LogLine] = []
    for _ in range(batches):
        first = history.last_cursor + 1
        texts = [f"line {first + i}" for i in range(per_batch)]
        batch = make_batch(first, texts, stream=stream, ts=1000.0 + first)
        history.append(batch)
        written.extend(batch.to_lines())
    return written


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_lines_read_back_with_every_field(tmp_path: Path) -> None:
    with LogHistory(tmp_path) as history:
        history.append(make_batch(1, ["a", "b"], stream="build", deployment=7, ts=5.5))
        history.append(make_batch(3, ["piece", "rest", ""], continued=frozenset({0})))
        assert history.read() == [
            LogLine(1, 5.5, "build", "a", 7),
            LogLine(2, 5.5, "build", "b", 7),
            LogLine(3, 1000.0, "stdout", "piece", None, continued=True),
            LogLine(4, 1000.0, "stdout", "rest", None),
            LogLine(5, 1000.0, "stdout", "", None),
        ]
        assert (history.first_cursor, history.last_cursor) == (1, 5)


def test_cursors_continue_after_reopening(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=4096, segment_bytes=512) as history:
        written = fill(history, 40)
    with LogHistory(tmp_path, max_bytes=4096, segment_bytes=512) as history:
        assert history.last_cursor == 120
        fill(history, 1)
        assert history.last_cursor == 123
        assert history.tail(4) == [*written[-1:], *history.read(after=120)]


def test_cursors_continue_even_when_every_line_was_deleted(tmp_path: Path) -> None:
    # With room for one segment only, each rotation deletes all the lines before it; the
    # empty new segment's name still carries the next cursor across a restart.
    with LogHistory(tmp_path, max_bytes=200, segment_bytes=200) as history:
        fill(history, 10, per_batch=10)
        assert history.read() == []
        assert history.first_cursor == history.last_cursor + 1 == 101
    assert [p.name for p in segment_files(tmp_path)] == [f"{101:020d}.seg"]
    with LogHistory(tmp_path, max_bytes=200, segment_bytes=200) as history:
        assert history.last_cursor == 100
        fill(history, 1)
        assert [line.cursor for line in history.read()] == [101, 102, 103]


def test_the_empty_directory_starts_at_cursor_1(tmp_path: Path) -> None:
    with LogHistory(tmp_path / "new" / "logs") as history:
        assert (history.first_cursor, history.last_cursor, history.last_ts) == (1, 0, None)
        assert history.read() == []
        assert history.tail(10) == []


@pytest.mark.parametrize("keep", [1, 2, 20, 44, 47, 48, 52, -6, -4, -1])
def test_a_torn_final_frame_is_cut_off_on_reopening(tmp_path: Path, keep: int) -> None:
    with LogHistory(tmp_path) as history:
        written = fill(history, 3)
        size = history.size
    frame = encode_frame(make_batch(10, ["torn", "frame"]), 1.0)
    (segment,) = segment_files(tmp_path)
    with segment.open("ab") as file:  # the daemon was killed in the middle of a write
        file.write(frame[:keep])
    with LogHistory(tmp_path) as history:
        assert history.last_cursor == 9
        assert segment.stat().st_size == size
        after = fill(history, 2)
        assert history.read() == written + after
        assert history.tail(100) == written + after
    with LogHistory(tmp_path) as history:
        assert history.read() == written + after


@pytest.mark.parametrize("garbage", [b"\0" * 4096, b"DL" + os.urandom(100), b"\xff" * 3])
def test_garbage_after_the_last_frame_is_cut_off(tmp_path: Path, garbage: bytes) -> None:
    with LogHistory(tmp_path) as history:
        written = fill(history, 2)
    (segment,) = segment_files(tmp_path)
    with segment.open("ab") as file:
        file.write(garbage)
    with LogHistory(tmp_path) as history:
        assert history.read() == written
        assert history.last_cursor == 6


def test_a_torn_first_frame_of_a_new_segment_leaves_it_empty_but_named(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100) as history:
        written = fill(history, 3, per_batch=10)  # frames over 100 bytes: a segment each
        assert history.statistics().segments == 4  # and the empty one being written
    newest = segment_files(tmp_path)[-1]
    assert newest.name == f"{31:020d}.seg"
    newest.write_bytes(encode_frame(make_batch(31, ["lost"]), 1.0)[:30])
    with LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100) as history:
        assert newest.stat().st_size == 0
        assert history.last_cursor == 30
        assert history.read() == written
        after = fill(history, 1)
        assert history.read() == written + after


def test_an_empty_segment_left_before_the_newest_is_removed(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100) as history:
        written = fill(history, 2)
    # A crash between starting a segment and its first frame, then a later segment.
    stray = segment_files(tmp_path)[-1]
    (tmp_path / f"{50:020d}.seg").write_bytes(b"")
    with LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100) as history:
        assert not stray.exists()
        assert history.last_cursor == 49
        assert history.read() == written


def test_segments_that_a_crash_cannot_explain_are_refused_not_repaired(
    tmp_path: Path,
) -> None:
    with LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100) as history:
        fill(history, 3, per_batch=10)
    first, _, third = segment_files(tmp_path)[:3]
    # Two copies of the same lines: segments that overlap.
    copy = tmp_path / f"{15:020d}.seg"
    copy.write_bytes(encode_frame(make_batch(15, ["again"]), 1.0))
    with pytest.raises(HistoryCorrupt, match="overlaps"):
        LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100)
    copy.unlink()
    # A segment whose name is not its first cursor.
    first.rename(tmp_path / f"{5:020d}.seg")
    with pytest.raises(HistoryCorrupt, match="starts at cursor 1"):
        LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100)
    (tmp_path / f"{5:020d}.seg").rename(first)
    # Whole frames whose cursors do not follow each other (and a torn one after them).
    stray = encode_frame(make_batch(99, ["x"]), 1.0)
    third.write_bytes(third.read_bytes() + stray + stray[:10])
    with pytest.raises(HistoryCorrupt, match="cursor 99"):
        LogHistory(tmp_path, max_bytes=10_000, segment_bytes=100)
    assert third.stat().st_size > 0  # nothing was cut off


def test_the_size_bound_drops_the_oldest_segments_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    max_bytes, segment_bytes = 40_000, 4_000
    with LogHistory(tmp_path, max_bytes=max_bytes, segment_bytes=segment_bytes) as history:
        largest_frame = 0
        for _ in range(3000):
            before = history.size
            fill(history, 1, per_batch=5)
            largest_frame = max(largest_frame, history.size - before)
            stats = history.statistics()
            assert stats.size <= max_bytes + largest_frame
            assert stats.segments <= max_bytes // segment_bytes + 1
            assert len(history._hints) <= 64
        files = segment_files(tmp_path)
        assert len(files) == history.statistics().segments
        assert sum(f.stat().st_size for f in files) == history.size
        assert history.size > max_bytes - 2 * segment_bytes  # and it keeps what it may
        lines = history.read(limit=10**6)
        assert lines[0].cursor == history.first_cursor > 1
        assert [line.cursor for line in lines] == list(range(lines[0].cursor, 15_001))
        assert history.read(after=0, limit=1)[0].cursor == history.first_cursor


def test_read_filters_by_cursor_stream_time_and_limit(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=100_000, segment_bytes=300) as history:
        lines: list[LogLine] = []
        for i in range(60):
            stream = STREAMS[i % 4]
            lines += fill(history, 1, per_batch=2, stream=stream)
        assert history.statistics().segments > 5
        assert history.read(limit=10**6) == lines
        assert history.read(after=50, limit=7) == lines[50:57]
        assert history.read(after=120) == []
        assert history.read(limit=0) == []
        assert history.read(streams={"build"}, limit=10**6) == [
            line for line in lines if line.stream == "build"
        ]
        assert (
            history.read(streams={"stderr", "system"}, after=100, limit=3)
            == [
                line for line in lines if line.stream in ("stderr", "system") and line.cursor > 100
            ][:3]
        )
        assert history.read(since=1061.0, limit=10**6) == [
            line for line in lines if line.ts >= 1061.0
        ]
        assert history.read(since=10**9) == []
        assert history.read(after=10, until=20) == lines[10:20]


def test_paging_with_read_after_yields_every_line_once(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=100_000, segment_bytes=500) as history:
        lines: list[LogLine] = []
        for i in range(100):
            lines += fill(history, 1, per_batch=1 + i % 5, stream=STREAMS[i % 3])
        for streams in (None, {"stdout"}, {"build", "stderr"}):
            for limit in (1, 7, 64):
                got: list[LogLine] = []
                after = 0
                while page := history.read(after=after, limit=limit, streams=streams):
                    got += page
                    after = page[-1].cursor
                assert got == [line for line in lines if streams is None or line.stream in streams]


def test_tail_returns_the_last_lines_oldest_first(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=100_000, segment_bytes=300) as history:
        lines: list[LogLine] = []
        for i in range(40):
            lines += fill(history, 1, per_batch=3, stream="build" if i % 5 == 0 else "stdout")
        assert history.tail(1) == lines[-1:]
        assert history.tail(10) == lines[-10:]
        assert history.tail(0) == []
        assert history.tail(10**6) == lines
        build = [line for line in lines if line.stream == "build"]
        assert history.tail(4, {"build"}) == build[-4:]
        assert history.tail(100, ["build"]) == build
        assert history.tail(5, until=50) == lines[45:50]


def test_tail_touches_only_the_newest_segments(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=100_000, segment_bytes=1000) as history:
        lines = fill(history, 100)
        oldest = segment_files(tmp_path)[0]
        size = oldest.stat().st_size
        oldest.write_bytes(os.urandom(size))  # damage it in place
        assert history.tail(5) == lines[-5:]
        with pytest.raises(HistoryCorrupt, match="damaged"):
            history.read()


def test_a_segment_deleted_under_a_reader_is_skipped(tmp_path: Path) -> None:
    with LogHistory(tmp_path, max_bytes=100_000, segment_bytes=200) as history:
        lines = fill(history, 10)
        oldest = segment_files(tmp_path)[0]
        oldest.unlink()  # as if the writer deleted it after the reader's snapshot
        got = history.read(limit=10**6)
        assert got == [line for line in lines if line.cursor >= got[0].cursor]
        assert got[0].cursor > 1
        assert history.tail(10**6) == got


def test_timestamps_never_go_back(tmp_path: Path) -> None:
    with LogHistory(tmp_path) as history:
        history.append(make_batch(1, ["now"], ts=2000.0))
        history.append(make_batch(2, ["clock stepped back"], ts=1500.0))
        assert [line.ts for line in history.read()] == [2000.0, 2000.0]
        assert history.last_ts == 2000.0


def test_a_batch_must_follow_the_last_cursor(tmp_path: Path) -> None:
    with LogHistory(tmp_path) as history:
        fill(history, 1)
        with pytest.raises(CursorMismatch, match="cannot follow cursor 3"):
            history.append(make_batch(5, ["skipped"]))


def test_appending_after_close_fails_and_reads_still_work(tmp_path: Path) -> None:
    history = LogHistory(tmp_path)
    lines = fill(history, 1)
    history.close()
    history.close()
    with pytest.raises(HistoryClosed):
        fill(history, 1)
    assert history.read() == lines


def test_only_one_writer_at_a_time(tmp_path: Path) -> None:
    with LogHistory(tmp_path), pytest.raises(HistoryInUse, match="only one daemon"):
        LogHistory(tmp_path)
    with LogHistory(tmp_path):  # released on close
        pass


def test_bad_settings_and_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="segment_bytes"):
        LogHistory(tmp_path, max_bytes=100, segment_bytes=1000)
    with pytest.raises(InvalidStream, match="unknown log stream 'stdin'"):
        make_batch(1, ["x"], stream="stdin")
    with pytest.raises(InvalidBatch, match="at least one line"):
        make_batch(1, [])
    with pytest.raises(InvalidBatch, match="cursor"):
        make_batch(0, ["x"])
    with pytest.raises(InvalidBatch, match="separated by 1 newlines"):
        LogBatch(1, 1.0, "stdout", None, b"ab", 2)
    with pytest.raises(InvalidBatch, match="valid UTF-8"):
        LogBatch(1, 1.0, "stdout", None, b"\xff", 1)
    with pytest.raises(InvalidBatch, match="last cursor"):
        make_batch(2**63 - 1, ["a", "b"])
    with pytest.raises(InvalidBatch, match="continued"):
        make_batch(1, ["a"], continued=frozenset({1}))
    with pytest.raises(InvalidBatch, match="finite"):
        make_batch(1, ["a"], ts=float("nan"))
    with LogHistory(tmp_path) as history:
        with pytest.raises(InvalidStream):
            history.read(streams={"bogus"})
        with pytest.raises(InvalidStream, match="not the string"):
            history.tail(1, "stdout")


def test_the_default_segment_size_is_a_sixteenth_clamped(tmp_path: Path) -> None:
    with LogHistory(tmp_path / "a") as history:
        assert history.segment_bytes == 50 * 2**20 // 16
    with LogHistory(tmp_path / "b", max_bytes=2**30) as history:
        assert history.segment_bytes == 8 * 2**20
    with LogHistory(tmp_path / "c", max_bytes=2**20) as history:
        assert history.segment_bytes == 64 * 2**10


TEXT = st.text(st.characters(exclude_characters="\n", exclude_categories=["Cs"]), max_size=8)
ACTIONS = st.lists(
    st.one_of(
        st.just("reopen"),
        st.tuples(st.sampled_from(STREAMS), st.lists(TEXT, min_size=1, max_size=5)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ACTIONS, st.data())
def test_what_is_read_is_what_was_appended(actions: list[object], draw: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        history = LogHistory(path, max_bytes=10**6, segment_bytes=128)
        model: list[LogLine] = []
        try:
            for action in actions:
                if action == "reopen":
                    history.close()
                    history = LogHistory(path, max_bytes=10**6, segment_bytes=128)
                    continue
                stream, texts = action  # type: ignore[misc]
                batch = make_batch(history.last_cursor + 1, texts, stream=stream, ts=len(model))
                history.append(batch)
                model += batch.to_lines()
            assert history.read(limit=10**6) == model
            after = draw.draw(st.integers(0, len(model) + 1))
            limit = draw.draw(st.integers(1, 10))
            streams = draw.draw(st.none() | st.sets(st.sampled_from(STREAMS)))
            n = draw.draw(st.integers(0, len(model) + 1))
            wanted = [line for line in model if streams is None or line.stream in streams]
            assert (
                history.read(after=after, limit=limit, streams=streams)
                == [line for line in wanted if line.cursor > after][:limit]
            )
            assert history.tail(n, streams) == (wanted[-n:] if n else [])
        finally:
            history.close()


def test_a_failed_write_leaves_no_torn_frame_and_no_cursor_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LogHistory(tmp_path) as history:
        written = fill(history, 1)
        size = history.size
        real_writev = os.writev

        def short_writev(fd: int, parts: list[bytes]) -> int:
            return real_writev(fd, [b"".join(parts)[:20]])  # a short write ...

        def disk_full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... then nothing

        monkeypatch.setattr(os, "writev", short_writev)
        monkeypatch.setattr(os, "write", disk_full)
        with pytest.raises(HistoryWriteFailed, match="No space left on device"):
            fill(history, 1)
        monkeypatch.undo()
        assert (history.size, history.last_cursor) == (size, 3)
        (segment,) = segment_files(tmp_path)
        assert segment.stat().st_size == size
        written += fill(history, 1)
        assert history.read() == written


def test_a_short_write_is_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev

    def short_writev(fd: int, parts: list[bytes]) -> int:
        return real_writev(fd, [b"".join(parts)[:30]])

    with LogHistory(tmp_path) as history:
        monkeypatch.setattr(os, "writev", short_writev)
        written = fill(history, 3)
        monkeypatch.undo()
        assert history.read() == written
    with LogHistory(tmp_path) as history:  # whole frames, nothing to cut off
        assert history.read() == written
        assert history.size == sum(f.stat().st_size for f in segment_files(tmp_path))
