"""One service's log history on disk: append-only segments of framed batches.

Layout: a directory per service holding ``<first cursor, 20 digits>.seg`` files (the
*segments*) and a ``lock`` file. Each segment is a run of frames, one per
:class:`~dployr.logs.values.LogBatch`, all little-endian::

    offset  size  field
    0       2     magic b"DL"
    2       1     format version (1)
    3       1     stream, as an index into STREAMS
    4       1     flags: bit 0 set when the batch has a deployment
    5       3     zero
    8       8     first cursor (unsigned)
    16      8     timestamp (float64 Unix seconds)
    24      8     deployment id (signed; 0 when there is none)
    32      4     line count
    36      4     number of continued indices (k)
    40      4     payload length in bytes (n)
    44      4     CRC-32 of bytes 0-43
    48      4k    continued line indices (unsigned 32-bit, ascending)
    48+4k   n     payload: the lines as UTF-8 joined by b"\\n"
    ...     4     total frame length (48 + 4k + n + 4)

The header says how long the frame is, so a reader skips frames it does not want without
reading their payload; the trailing length lets :meth:`LogHistory.tail` walk a segment
from its end. A frame is written with one ``os.writev`` (header, the batch's payload as it
is, trailer) and never synced: the page cache survives a killed daemon. A frame torn by
a crash can only be the last one of a segment, and opening the history cuts it off.

The history is bounded: when a segment reaches ``segment_bytes`` a new one is started and
the oldest ones are deleted, so that the files never add up to more than ``max_bytes``
(plus the one frame that crossed the segment size). In memory it keeps a summary per
segment (cursors, timestamps, size), never an entry per line or per frame.

Appends happen on the event loop's thread; reads may run in worker threads at the same
time. A read takes a snapshot of the segment summaries, which are immutable tuples
replaced on each append, and opens its own file descriptors, so it sees whole frames only.

Why one module of ~850 lines: the frame format, the segment reader and :class:`LogHistory`
share the layout above and its invariants (a torn frame only at a segment's end, cursors
continuous across segments); splitting them would spread one file format over several.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

import attrs

from dployr.errors import DployrError, SpecError
from dployr.logs.values import STREAMS, LogBatch, LogLine, check_streams

__all__ = [
    "DEFAULT_MAX_BYTES",
    "STREAMS",
    "CursorMismatch",
    "HistoryClosed",
    "HistoryCorrupt",
    "HistoryError",
    "HistoryInUse",
    "HistoryStatistics",
    "HistoryWriteFailed",
    "LogBatch",
    "LogHistory",
    "LogLine",
    "encode_frame",
    "frame_parts",
]

DEFAULT_MAX_BYTES: Final = 50 * 2**20
"""The disk space one service's log history may take by default."""
MIN_SEGMENT_BYTES: Final = 64 * 2**10
MAX_SEGMENT_BYTES: Final = 8 * 2**20

_MAGIC: Final = b"DL"
_VERSION: Final = 1
_HEAD: Final = struct.Struct("<2sBBB3xQdqIII")
_CRC: Final = struct.Struct("<I")
_HEADER_SIZE: Final = _HEAD.size + _CRC.size  # 48
_TRAILER: Final = struct.Struct("<I")
_OVERHEAD: Final = _HEADER_SIZE + _TRAILER.size
_HAS_DEPLOYMENT: Final = 1
_STREAM_INDEX: Final = {stream: index for index, stream in enumerate(STREAMS)}
_SEGMENT_NAME: Final = re.compile(r"(\d{20})\.seg")
_BLOCK: Final = 256 * 2**10
"""How much a reader reads at a time when it walks frame headers."""
_HINTS: Final = 64
"""How many "where the last read ended" positions are remembered, for paging readers."""


class HistoryError(DployrError):
    """Base of the errors of a service's log history."""


class HistoryCorrupt(HistoryError):
    """A segment of the log history holds bytes that are not valid frames."""


class HistoryInUse(HistoryError):
    """Another process (or another open history) is already writing this log history."""


class HistoryClosed(HistoryError):
    """The log history was closed, so nothing more can be appended to it."""


class HistoryWriteFailed(HistoryError):
    """Writing to the log history failed (for example, the disk is full).

    Nothing of the batch was kept, and the history can be appended to again: the next
    append tries the disk anew.
    """

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full
        """Whether it failed for want of space (ENOSPC, or a quota: EDQUOT)."""


class CursorMismatch(HistoryError):
    """A batch did not start at the cursor that follows the history's last line."""


@attrs.frozen
class HistoryStatistics:
    """A snapshot of a log history."""

    first_cursor: int
    """The cursor of the oldest line kept (``last_cursor + 1`` when none is)."""
    last_cursor: int
    """The cursor of the newest line (0 before the first line ever)."""
    size: int
    """Bytes on disk, over all segments."""
    segments: int
    """Segment files, the one being written included."""


class _Segment(NamedTuple):
    """The summary of one segment file, replaced (never changed) as it grows."""

    first_cursor: int
    """From the file name: the cursor of its first line, even before it has one."""
    last_cursor: int
    """``first_cursor - 1`` while the segment is empty."""
    first_ts: float
    last_ts: float
    size: int

    @property
    def empty(self) -> bool:
        return self.last_cursor < self.first_cursor


class _Frame(NamedTuple):
    """A frame header, parsed."""

    stream: str
    first_cursor: int
    ts: float
    deployment: int | None
    nlines: int
    ncontinued: int
    length: int

    @property
    def last_cursor(self) -> int:
        return self.first_cursor + self.nlines - 1

    @property
    def total(self) -> int:
        return _OVERHEAD + 4 * self.ncontinued + self.length


class _BadFrame(Exception):
    """Internal: the bytes at a position are not a whole, valid frame."""


def _segment_name(first_cursor: int) -> str:
    return f"{first_cursor:020d}.seg"


def frame_parts(batch: LogBatch, ts: float) -> list[bytes]:
    """The frame that stores ``batch`` with timestamp ``ts``, as the parts written in one
    ``os.writev``: the payload is written as it is, never copied into a frame buffer."""
    continued = sorted(batch.continued)
    payload = batch.payload
    head = _HEAD.pack(
        _MAGIC,
        _VERSION,
        _STREAM_INDEX[batch.stream],
        0 if batch.deployment is None else _HAS_DEPLOYMENT,
        batch.first_cursor,
        ts,
        batch.deployment or 0,
        batch.count,
        len(continued),
        len(payload),
    )
    total = _OVERHEAD + 4 * len(continued) + len(payload)
    head += _CRC.pack(zlib.crc32(head))
    if continued:
        head += struct.pack(f"<{len(continued)}I", *continued)
    return [head, payload, _TRAILER.pack(total)]


def encode_frame(batch: LogBatch, ts: float) -> bytes:
    """The bytes of the frame that stores ``batch`` with timestamp ``ts``."""
    return b"".join(frame_parts(batch, ts))


def _parse_header(data: bytes, offset: int = 0) -> _Frame:
    """The frame header at ``offset`` of ``data``; raises :class:`_BadFrame` if invalid."""
    if len(data) - offset < _HEADER_SIZE:
        raise _BadFrame
    head = data[offset : offset + _HEAD.size]
    magic, version, stream, flags, first, ts, deployment, count, ncont, length = _HEAD.unpack(head)
    (crc,) = _CRC.unpack_from(data, offset + _HEAD.size)
    if (
        magic != _MAGIC
        or version != _VERSION
        or crc != zlib.crc32(head)
        or stream >= len(STREAMS)
        or count < 1
        or ncont > count
        or first < 1
    ):
        raise _BadFrame
    return _Frame(
        STREAMS[stream],
        first,
        ts,
        deployment if flags & _HAS_DEPLOYMENT else None,
        count,
        ncont,
        length,
    )


class _SegmentReader:
    """Reads the frames of one segment file through a block buffer (reader threads)."""

    def __init__(self, fd: int, name: str, size: int) -> None:
        self._fd = fd
        self.name = name
        self.size = size
        self._buffer = b""
        self._at = 0  # the file offset of _buffer[0]

    def _read(self, pos: int, n: int, *, backwards: bool = False) -> bytes:
        """``n`` bytes at ``pos``; on a miss, refill the buffer around them."""
        start = pos - self._at
        if start >= 0 and start + n <= len(self._buffer):
            return self._buffer[start : start + n]
        if pos < 0 or pos + n > self.size:
            raise _BadFrame
        if n >= _BLOCK:
            data = os.pread(self._fd, n, pos)
            if len(data) < n:
                raise _BadFrame
            return data
        # Reading backwards, keep what lies before pos: that is where the next read will be.
        low = max(0, pos + n - _BLOCK) if backwards else pos
        self._buffer = os.pread(self._fd, min(_BLOCK, self.size - low), low)
        self._at = low
        start = pos - low
        if start + n > len(self._buffer):
            raise _BadFrame
        return self._buffer[start : start + n]

    def header(self, pos: int, *, backwards: bool = False) -> _Frame:
        """The header of the frame at ``pos``."""
        frame = _parse_header(self._read(pos, _HEADER_SIZE, backwards=backwards))
        if pos + frame.total > self.size:
            raise _BadFrame
        return frame

    def header_before(self, end: int) -> tuple[int, _Frame]:
        """The position and header of the frame that ends at ``end``."""
        (total,) = _TRAILER.unpack(self._read(end - _TRAILER.size, _TRAILER.size, backwards=True))
        pos = end - total
        if total < _OVERHEAD or pos < 0:
            raise _BadFrame
        frame = self.header(pos, backwards=True)
        if frame.total != total:
            raise _BadFrame
        return pos, frame

    def trailer_ok(self, pos: int, frame: _Frame) -> bool:
        """Whether the frame at ``pos`` ends with its own length (it was written whole)."""
        end = pos + frame.total
        try:
            data = self._read(end - _TRAILER.size, _TRAILER.size)
        except _BadFrame:
            return False
        return _TRAILER.unpack(data) == (frame.total,)

    def body(self, pos: int, frame: _Frame) -> tuple[list[str], frozenset[int]]:
        """The lines of the frame at ``pos`` and the indices of its continued lines."""
        ncont = frame.ncontinued
        data = self._read(pos + _HEADER_SIZE, 4 * ncont + frame.length)
        continued: frozenset[int] = frozenset()
        if ncont:
            continued = frozenset(struct.unpack_from(f"<{ncont}I", data))
            if max(continued) >= frame.nlines:
                raise _BadFrame
        # Frames are written as valid UTF-8; "replace" only shields readers from damage.
        lines = data[4 * ncont :].decode("utf-8", "replace").split("\n")
        if len(lines) != frame.nlines:
            raise _BadFrame
        return lines, continued


def _over(lines: list[LogLine], max_text: int) -> bool:
    """Whether ``lines`` hold more than ``max_text`` characters; if so, cut them to fit.

    The first line is always kept, however long.
    """
    text = 0
    for index, line in enumerate(lines):
        text += len(line.line)
        if text > max_text and index > 0:
            del lines[index:]
            return True
    return text >= max_text


def _to_lines(
    frame: _Frame, lines: list[str], continued: frozenset[int], low: int, high: int
) -> list[LogLine]:
    """LogLines for cursors ``low`` to ``high`` (inclusive) of a frame."""
    first, ts, stream, deployment = frame.first_cursor, frame.ts, frame.stream, frame.deployment
    return [
        LogLine(first + i, ts, stream, lines[i], deployment, i in continued)
        for i in range(low - first, high - first + 1)
    ]


class LogHistory:
    """The log history of one service: bounded, append-only segments in ``directory``.

    Opening it recovers the last cursor from the files and cuts off a frame torn by a
    crash; it then holds the directory's lock until :meth:`close`. Appending is meant for
    one thread (the event loop's); reads are synchronous and may run in other threads,
    alongside appends (run big reads in a worker thread).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int | None = None,
    ) -> None:
        if segment_bytes is None:
            segment_bytes = min(
                max(max_bytes // 16, MIN_SEGMENT_BYTES), MAX_SEGMENT_BYTES, max_bytes
            )
        if segment_bytes < 1 or max_bytes < segment_bytes:
            raise SpecError(
                f"a log history needs 1 <= segment_bytes <= max_bytes, "
                f"not segment_bytes={segment_bytes} and max_bytes={max_bytes}"
            )
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        # Invariants: _segments is ordered by cursor and never empty once open; its last
        # entry is the segment being written through _fd, whose file is never deleted (its
        # name carries the next cursor across restarts even when it is empty). Entries are
        # replaced, never changed, so readers in other threads can take snapshots.
        # _size is the sum of the segments' sizes; _last_ts the newest frame's timestamp.
        self._segments: list[_Segment] = []
        self._size = 0
        self._last_cursor = 0
        self._last_ts = float("-inf")
        # _fd is the segment being written; None when closed, or when the next segment
        # could not be created yet (a full disk): the next append creates it.
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._closed = False
        # Where recent reads ended: {last cursor returned: (segment, offset of the frame
        # holding the next line)}, so that paging through a big segment is not quadratic.
        self._hints: dict[int, tuple[int, int]] = {}
        self._hints_lock = threading.Lock()
        self._open()

    # -- opening and recovery -------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise HistoryInUse(
                f"the log history in {self.directory} is already open, and only one "
                "daemon may write it at a time"
            ) from None
        self._lock_fd = lock_fd
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> None:
        names = sorted(
            (int(match[1]), entry.name)
            for entry in os.scandir(self.directory)
            if (match := _SEGMENT_NAME.fullmatch(entry.name))
        )
        segments: list[_Segment] = []
        for index, (first, name) in enumerate(names):
            newest = index == len(names) - 1
            segment = self._recover_segment(first, self.directory / name)
            if segments and segment.first_cursor <= segments[-1].last_cursor:
                raise HistoryCorrupt(
                    f"the log history segment {self.directory / name} overlaps the one "
                    f"before it; move one of them out of {self.directory}"
                )
            if segment.empty and not newest:
                os.unlink(self.directory / name)  # left by a crash: keeps nothing
                continue
            segments.append(segment)
        self._segments = segments
        self._size = sum(segment.size for segment in segments)
        if segments:
            newest_segment = segments[-1]
            self._last_cursor = newest_segment.last_cursor
            for segment in reversed(segments):
                if not segment.empty:
                    self._last_ts = segment.last_ts
                    break
            if newest_segment.size < self.segment_bytes:
                self._fd = self._open_segment(newest_segment.first_cursor)
                self._trim()
                return
        self._start_segment()
        self._trim()

    def _recover_segment(self, first: int, path: Path) -> _Segment:
        """The summary of one segment file, cutting off whatever follows its last whole frame."""
        empty = _Segment(first, first - 1, 0.0, 0.0, 0)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return empty
            reader = _SegmentReader(fd, path.name, size)
            whole = self._check_ends(reader, first)
            if whole is None:
                end, head_or_none, tail_or_none = self._scan(reader, first)
            else:
                end, (head_or_none, tail_or_none) = size, whole
        finally:
            os.close(fd)
        if end < size:
            os.truncate(path, end)
        if head_or_none is None or tail_or_none is None:
            return empty
        return _Segment(first, tail_or_none.last_cursor, head_or_none.ts, tail_or_none.ts, end)

    def _check_ends(self, reader: _SegmentReader, first: int) -> tuple[_Frame, _Frame] | None:
        """The first and last frame of a segment that ends cleanly, else None.

        A segment written to its end starts with a frame of its first cursor and ends with
        a whole frame: checking both ends costs four small reads, not a walk of the file.
        """
        try:
            head = reader.header(0)
            _, tail = reader.header_before(reader.size)
        except _BadFrame:
            return None
        if not reader.trailer_ok(0, head):
            return None
        if head.first_cursor != first:
            raise HistoryCorrupt(
                f"the log history segment {self.directory / reader.name} starts at cursor "
                f"{head.first_cursor}, not at the cursor in its name; move it out of "
                f"{self.directory}"
            )
        return head, tail

    def _scan(self, reader: _SegmentReader, first: int) -> tuple[int, _Frame | None, _Frame | None]:
        """Walk a segment that does not end cleanly: where its whole frames end, its first
        and last frame.

        What follows the last whole frame is what a crash leaves behind, and is cut off;
        whole frames whose cursors do not follow on are not, and are refused.
        """
        pos = 0
        head: _Frame | None = None
        tail: _Frame | None = None
        expected = first
        while pos < reader.size:
            try:
                frame = reader.header(pos)
            except _BadFrame:
                break
            if not reader.trailer_ok(pos, frame):
                break
            if frame.first_cursor != expected:
                raise HistoryCorrupt(
                    f"the log history segment {self.directory / reader.name} holds cursor "
                    f"{frame.first_cursor} at byte {pos} where cursor {expected} should be; "
                    f"move it out of {self.directory}"
                )
            head = head or frame
            tail = frame
            expected = frame.last_cursor + 1
            pos += frame.total
        return pos, head, tail

    def _open_segment(self, first_cursor: int) -> int:
        path = self.directory / _segment_name(first_cursor)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        return os.open(path, flags, 0o640)

    def _start_segment(self) -> None:
        """Start the next segment, named by the next cursor, and make it the one written."""
        first = self._last_cursor + 1
        self._fd = self._open_segment(first)
        self._segments.append(_Segment(first, first - 1, 0.0, 0.0, 0))

    def _trim(self) -> None:
        """Delete the oldest segments until the rest, and a full new one, fit in max_bytes."""
        while (
            len(self._segments) > 1
            and self._size - self._segments[-1].size + self.segment_bytes > self.max_bytes
        ):
            oldest = self._segments[0]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / _segment_name(oldest.first_cursor))
            del self._segments[0]
            self._size -= oldest.size

    # -- writing --------------------------------------------------------------------------

    def append(self, batch: LogBatch) -> None:
        """Write ``batch`` as one frame; its first cursor must follow :attr:`last_cursor`.

        Timestamps are kept in order: a batch older than the last one (the wall clock
        stepped back) is stored with the last one's timestamp.
        """
        if self._closed:
            raise HistoryClosed(f"the log history in {self.directory} is closed")
        fd = self._fd if self._fd is not None else self._resume_segment()
        if batch.first_cursor != self._last_cursor + 1:
            raise CursorMismatch(
                f"a batch starting at cursor {batch.first_cursor} cannot follow cursor "
                f"{self._last_cursor} in the log history in {self.directory}"
            )
        ts = max(batch.ts, self._last_ts)
        parts = frame_parts(batch, ts)
        length = len(parts[0]) + len(parts[1]) + len(parts[2])
        active = self._segments[-1]
        self._write(fd, parts, length, active.size)
        last_cursor = batch.first_cursor + batch.count - 1
        self._last_cursor = last_cursor
        self._last_ts = ts
        self._size += length
        self._segments[-1] = _Segment(
            active.first_cursor,
            last_cursor,
            ts if active.empty else active.first_ts,
            ts,
            active.size + length,
        )
        if active.size + length >= self.segment_bytes:
            os.close(fd)
            self._fd = None
            # A new segment that cannot be created now (no inode left) is created by the
            # next append; the frame just written is kept either way.
            with contextlib.suppress(OSError):
                self._start_segment()
            self._trim()

    def _resume_segment(self) -> int:
        """Create the segment that could not be created when the last one filled up."""
        try:
            self._start_segment()
        except OSError as error:
            raise _write_failed(self.directory, error) from error
        assert self._fd is not None
        return self._fd

    def _write(self, fd: int, parts: list[bytes], length: int, size: int) -> None:
        """Write a frame's parts at the end of the segment (``size`` bytes long before)."""
        written = 0
        try:
            written = os.writev(fd, parts)
            if written < length:  # a short write (the disk is filling up): write the rest
                rest = memoryview(b"".join(parts))
                while written < length:
                    written += os.write(fd, rest[written:])
        except OSError as error:
            if written:
                os.ftruncate(fd, size)  # never leave a torn frame behind a live writer
            raise _write_failed(self.directory, error) from error

    # -- reading --------------------------------------------------------------------------

    @property
    def last_cursor(self) -> int:
        """The cursor of the newest line, or 0 before the first line ever."""
        return self._last_cursor

    @property
    def last_ts(self) -> float | None:
        """The timestamp of the newest line kept, or None when no line is."""
        return None if self._last_ts == float("-inf") else self._last_ts

    @property
    def first_cursor(self) -> int:
        """The cursor of the oldest line kept, or ``last_cursor + 1`` when none is."""
        for segment in tuple(self._segments):
            if not segment.empty:
                return segment.first_cursor
        return self._last_cursor + 1

    @property
    def size(self) -> int:
        """The bytes the history takes on disk."""
        return self._size

    def statistics(self) -> HistoryStatistics:
        """A frozen snapshot: cursors, size and segment count."""
        return HistoryStatistics(
            self.first_cursor, self._last_cursor, self._size, len(self._segments)
        )

    def read(
        self,
        *,
        after: int | None = None,
        limit: int = 1000,
        streams: Iterable[str] | None = None,
        since: float | None = None,
        until: int | None = None,
        max_text: int | None = None,
    ) -> list[LogLine]:
        """Up to ``limit`` lines, oldest first, with a cursor above ``after``.

        Only lines of ``streams`` (all when None), stamped ``since`` or later, and with a
        cursor of at most ``until`` are returned. Lines deleted to keep the history within
        its size are skipped: the first line returned may be well past ``after + 1``.
        With ``max_text``, the read also ends once the lines hold that many characters
        (at least one line is returned): what one read costs stays bounded.
        """
        wanted = check_streams(streams)
        if limit < 1:
            return []
        start = 1 if after is None else after + 1
        segments = tuple(self._segments)
        hint = self._hint(after)
        out: list[LogLine] = []
        for segment in segments:
            if segment.empty or segment.last_cursor < start:
                continue
            if since is not None and segment.last_ts < since:
                continue
            if until is not None and segment.first_cursor > until:
                break
            begin = hint[1] if hint is not None and hint[0] == segment.first_cursor else 0
            with self._open_segment_reader(segment) as reader:
                if reader is None:
                    continue
                for pos, frame in self._frames(reader, begin):
                    if frame.last_cursor < start:
                        continue
                    if until is not None and frame.first_cursor > until:
                        return out
                    if (wanted is not None and frame.stream not in wanted) or (
                        since is not None and frame.ts < since
                    ):
                        continue
                    low = max(start, frame.first_cursor)
                    high = frame.last_cursor if until is None else min(frame.last_cursor, until)
                    high = min(high, low + limit - len(out) - 1)
                    lines, continued = self._body(reader, pos, frame)
                    out.extend(_to_lines(frame, lines, continued, low, high))
                    if max_text is not None and _over(out, max_text):
                        high = out[-1].cursor  # the lines past the budget are left out
                        limit = len(out)
                    if len(out) == limit:
                        # Whatever follows cursor `high` is in this frame or after it, for
                        # any filter: where a read after `high` may start.
                        next_pos = pos if high < frame.last_cursor else pos + frame.total
                        self._remember(high, segment.first_cursor, next_pos)
                        return out
            if segment is segments[-1]:
                self._remember(segment.last_cursor, segment.first_cursor, segment.size)
        return out

    def tail(
        self,
        n: int,
        streams: Iterable[str] | None = None,
        *,
        until: int | None = None,
        max_text: int | None = None,
    ) -> list[LogLine]:
        """The last ``n`` lines (of ``streams``; up to cursor ``until``), oldest first.

        Segments are walked newest first and each from its end, so a short tail of a big
        history reads only the end of the newest segment. With ``max_text``, only the newest
        lines that hold that many characters together are returned (at least one).
        """
        wanted = check_streams(streams)
        chunks: list[list[LogLine]] = []  # newest first
        need, text = n, 0
        for segment in reversed(tuple(self._segments)):
            if need <= 0:
                break
            if segment.empty or (until is not None and segment.first_cursor > until):
                continue
            with self._open_segment_reader(segment) as reader:
                if reader is None:
                    break  # this one and the older ones were deleted meanwhile
                for pos, frame in self._frames_backwards(reader):
                    if (until is not None and frame.first_cursor > until) or (
                        wanted is not None and frame.stream not in wanted
                    ):
                        continue
                    high = frame.last_cursor if until is None else min(frame.last_cursor, until)
                    low = max(frame.first_cursor, high - need + 1)
                    lines, continued = self._body(reader, pos, frame)
                    chunks.append(_to_lines(frame, lines, continued, low, high))
                    need -= high - low + 1
                    if max_text is not None:
                        text += sum(len(line.line) for line in chunks[-1])
                        if text >= max_text:
                            need = 0
                    if need <= 0:
                        break
        out = [line for chunk in reversed(chunks) for line in chunk]
        if max_text is not None:
            keep, text = 0, 0
            for line in reversed(out):
                if keep and text + len(line.line) > max_text:
                    break
                keep, text = keep + 1, text + len(line.line)
            out = out[len(out) - keep :]
        return out

    def _frames(self, reader: _SegmentReader, pos: int) -> Iterator[tuple[int, _Frame]]:
        """The frames of a segment from offset ``pos`` on, with their offsets."""
        while pos < reader.size:
            try:
                frame = reader.header(pos)
            except _BadFrame:
                raise self._corrupt(reader, pos) from None
            yield pos, frame
            pos += frame.total

    def _frames_backwards(self, reader: _SegmentReader) -> Iterator[tuple[int, _Frame]]:
        """The frames of a segment, newest first, with their offsets."""
        end = reader.size
        while end > 0:
            try:
                pos, frame = reader.header_before(end)
            except _BadFrame:
                raise self._corrupt(reader, end) from None
            yield pos, frame
            end = pos

    def _body(
        self, reader: _SegmentReader, pos: int, frame: _Frame
    ) -> tuple[list[str], frozenset[int]]:
        try:
            return reader.body(pos, frame)
        except _BadFrame:
            raise self._corrupt(reader, pos) from None

    def _open_segment_reader(self, segment: _Segment) -> _OpenSegment:
        return _OpenSegment(self.directory / _segment_name(segment.first_cursor), segment.size)

    def _corrupt(self, reader: _SegmentReader, pos: int) -> HistoryCorrupt:
        return HistoryCorrupt(
            f"the log history segment {self.directory / reader.name} is damaged at byte "
            f"{pos}; move it out of {self.directory} to read the rest"
        )

    def _hint(self, after: int | None) -> tuple[int, int] | None:
        if after is None:
            return None
        with self._hints_lock:
            return self._hints.get(after)

    def _remember(self, cursor: int, segment: int, pos: int) -> None:
        with self._hints_lock:
            self._hints.pop(cursor, None)
            self._hints[cursor] = (segment, pos)
            if len(self._hints) > _HINTS:
                del self._hints[next(iter(self._hints))]

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the files and release the directory; reads keep working, appends fail."""
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> LogHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_failed(directory: Path, error: OSError) -> HistoryWriteFailed:
    reason = error.strerror or errno.errorcode.get(error.errno or 0, str(error))
    return HistoryWriteFailed(
        f"could not write to the log history in {directory}: {reason}",
        disk_full=error.errno in {errno.ENOSPC, errno.EDQUOT},
    )


class _OpenSegment:
    """A segment opened for reading; None inside the block when it has been deleted."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._size = size
        self._fd: int | None = None

    def __enter__(self) -> _SegmentReader | None:
        try:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # deleted to keep the history within its size: its lines are gone
        # Read only up to the size in the snapshot: frames beyond it may be half-written.
        return _SegmentReader(self._fd, self._path.name, self._size)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
