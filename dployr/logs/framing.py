"""Log-line framing: the bytes a service writes, cut into lines.

Pure (no trio, no I/O), so that the rules can be tested with Hypothesis:

* lines end at ``b"\\n"``; one ``b"\\r"`` before it is dropped (CRLF output reads as lines);
* bytes that are not UTF-8 are shown as U+FFFD, never refused;
* a line longer than :data:`MAX_LINE` bytes (as kept, so after replacing bad bytes) is cut
  into pieces of at most that size, each cut on a character boundary, and every piece but
  the last is marked *continued*;
* a line without its newline yet is held until the next chunk (so a character split
  across two reads comes out whole), but never more than ``MAX_LINE + 1`` bytes of it.

Lines are kept as they are stored: one payload of UTF-8 (the lines joined by ``b"\\n"``)
and a count, never a Python string per line. The history writes the payload as it is; a
reader or a follower that needs the text splits it (:attr:`Lines.lines`). So the common
case costs a handful of C-level passes per chunk, not a Python step per line: one
``rfind``, a check that the bytes are ASCII (else that they decode), one ``count``, and the
payload is a slice of the input. Only chunks holding an over-long line or invalid UTF-8
take a slower path.
"""

from __future__ import annotations

import codecs
from typing import Final

import attrs

from dployr.errors import SpecError
from dployr.logs.values import check_payload, split_payload

MAX_LINE: Final = 64 * 1024
"""The longest line kept whole, in bytes of UTF-8; longer lines are cut into pieces."""


def _check(lines: Lines, _: object, continued: frozenset[int]) -> None:
    check_payload(lines.payload, lines.count, continued)


@attrs.frozen
class Lines:
    """The complete lines one chunk (or a few chunks) of output produced.

    Built by a :class:`LineSplitter`, which keeps them as one payload: when the chunk was
    valid UTF-8 and held no over-long line, the payload is a slice of the chunk, not a
    re-encoding. Built by hand, the parts are checked against each other
    (:class:`~dployr.logs.values.InvalidBatch` if they do not agree).
    """

    payload: bytes = b""
    """The lines as UTF-8, joined by ``b"\\n"`` (no newline after the last one)."""
    count: int = 0
    """How many lines: ``payload.count(b"\\n") + 1``, or 0 for no line at all."""
    continued: frozenset[int] = attrs.field(default=frozenset(), validator=_check)
    """Indices of the lines that are pieces of a longer line and go on in the next one."""

    @property
    def lines(self) -> list[str]:
        """The text of each line, without its newline (split from the payload each time)."""
        return split_payload(self.payload, self.count)

    @property
    def nbytes(self) -> int:
        """The size of the payload in bytes."""
        return len(self.payload)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0


def trusted_lines(payload: bytes, count: int, continued: frozenset[int] = frozenset()) -> Lines:
    """Lines made of parts known to agree, without checking them again (hot paths only).

    The splitter's output agrees by construction; checking it would cost another pass over
    every byte of every chunk.
    """
    lines: Lines = object.__new__(Lines)
    object.__setattr__(lines, "payload", payload)
    object.__setattr__(lines, "count", count)
    object.__setattr__(lines, "continued", continued)
    return lines


_NO_LINES: Final = trusted_lines(b"", 0)


class _Pieces:
    """Lines collected piece by piece, on the slow paths (over-long lines)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []  # payloads, each of one or more lines
        self.count = 0
        self.continued: list[int] = []

    def add(self, lines: Lines) -> None:
        if lines.count:
            self.parts.append(lines.payload)
            self.continued.extend(self.count + index for index in lines.continued)
            self.count += lines.count

    def piece(self, piece: bytes, *, continued: bool) -> None:
        """Add one line or piece of a line: valid UTF-8, with no newline."""
        self.parts.append(piece)
        if continued:
            self.continued.append(self.count)
        self.count += 1

    def lines(self) -> Lines:
        return trusted_lines(b"\n".join(self.parts), self.count, frozenset(self.continued))


def _cut(line: bytes, max_line: int) -> int:
    """Where the first piece of ``line`` (longer than ``max_line``) ends.

    At ``max_line`` or up to three bytes before it, where no UTF-8 character is split: a
    continuation byte (``0b10xxxxxx``) is never the first byte of a piece, unless four in a
    row show that the bytes are not UTF-8 anyway.
    """
    for cut in range(max_line, max_line - 4, -1):
        if line[cut] & 0xC0 != 0x80:
            return cut
    return max_line


def _fits(data: bytes, max_line: int) -> bool:
    """Whether no line of ``data`` (lines joined by newlines) is longer than ``max_line``.

    Each step looks for the last newline in the next ``max_line + 1`` bytes, so every two
    steps move at least ``max_line`` bytes on: a few steps per chunk, never one per line.
    """
    start = 0
    while len(data) - start > max_line:
        newline = data.rfind(b"\n", start, start + max_line + 1)
        if newline < 0:
            return False
        start = newline + 1
    return True


def _split(complete: bytes, max_line: int) -> Lines:
    """The lines of ``complete`` (lines joined by newlines, the last one's newline removed)."""
    if b"\r" in complete:
        # Drop one CR before each newline, and before the (removed) final newline.
        complete = complete.replace(b"\r\n", b"\n").removesuffix(b"\r")
    if not complete.isascii():
        try:
            complete.decode("utf-8")
        except UnicodeDecodeError:
            # A newline always ends an invalid sequence, so decoding the whole chunk gives
            # the same text as decoding line by line. Lengths are measured on what is kept:
            # each replacement character takes three bytes, whatever it replaced.
            complete = complete.decode("utf-8", "replace").encode("utf-8")
    if _fits(complete, max_line):
        return trusted_lines(complete, complete.count(b"\n") + 1)
    pieces = _Pieces()
    for line in complete.split(b"\n"):
        rest = line
        while len(rest) > max_line:
            cut = _cut(rest, max_line)
            pieces.piece(rest[:cut], continued=True)
            rest = rest[cut:]
        pieces.piece(rest, continued=False)
    return pieces.lines()


class LineSplitter:
    """Cuts a stream of output chunks into lines; one per pipe of a running process.

    Feed it each chunk read from the pipe, and call :meth:`flush` when the pipe closes to
    get a last line that had no newline.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 4:
            # A piece must have room for any UTF-8 character.
            raise SpecError(f"the longest log line must be at least 4 bytes, not {max_line}")
        self.max_line = max_line
        # Invariant: _partial is the start of the current line (no newline in it), at most
        # max_line + 1 bytes long: beyond that its leading pieces have been emitted as
        # continued lines. One byte of slack, because a final CR is not yet known to be
        # part of the line or of its CRLF ending. Once pieces have been cut from it, its
        # invalid bytes have already been replaced.
        self._partial = b""

    def feed(self, chunk: bytes | bytearray | memoryview) -> Lines:
        """The lines completed by ``chunk``; an empty :class:`Lines` if none was."""
        data = self._partial + chunk if self._partial else bytes(chunk)
        end = data.rfind(b"\n")
        if end < 0:
            self._partial = data
            if len(data) <= self.max_line + 1:
                return _NO_LINES
            pieces = _Pieces()
            self._emit_held(pieces)
            return pieces.lines()
        self._partial = data[end + 1 :]
        lines = _split(data[:end], self.max_line)
        if len(self._partial) > self.max_line + 1:
            pieces = _Pieces()
            pieces.add(lines)
            self._emit_held(pieces)
            return pieces.lines()
        return lines

    def flush(self) -> Lines:
        """The line that was still waiting for its newline, if any (for example at exit)."""
        partial, self._partial = self._partial, b""
        if not partial:
            return _NO_LINES
        return _split(partial, self.max_line)

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished line are held, waiting for its newline."""
        return len(self._partial)

    def _emit_held(self, pieces: _Pieces) -> None:
        """Move the leading pieces of an over-long unfinished line out to ``pieces``."""
        # Replace what is not UTF-8 first, so that pieces are measured as they are kept.
        # The incremental decoder leaves a character that may still be completed (at most
        # three bytes) as it is; the next chunk decodes as if nothing had been replaced.
        text, consumed = codecs.utf_8_decode(self._partial, "replace", False)
        partial = text.encode("utf-8") + self._partial[consumed:]
        while len(partial) > self.max_line + 1:
            cut = _cut(partial, self.max_line)
            # The cut never splits the undecided end, which starts with a lead byte; the
            # round trip makes sure that no piece can carry invalid UTF-8 anyway.
            piece = partial[:cut].decode("utf-8", "replace").encode("utf-8")
            pieces.piece(piece, continued=True)
            partial = partial[cut:]
        self._partial = partial
