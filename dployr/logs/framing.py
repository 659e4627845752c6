"""Log-line framing: the bytes a service writes, cut into lines.

Pure (no trio, no I/O), so that the rules can be tested with Hypothesis:

* lines end at ``b"\\n"``; one ``b"\\r"`` before it is dropped (CRLF output reads as lines);
* bytes that are not UTF-8 are shown as U+FFFD, never refused;
* a line longer than :data:`MAX_LINE` bytes (as kept, so after replacing bad bytes) is cut
  into pieces of at most that size, each cut on a character boundary, and every piece but
  the last is marked *continued*;
* a line without its newline yet is held until the next chunk (so a character split
  across two reads comes out whole), but never more than ``MAX_LINE + 1`` bytes of it.

The common case costs a handful of C-level calls per chunk, not a Python step per line:
one ``rfind``, one ``decode`` and one ``split``, and the payload to store is a slice of
the input. Only chunks holding an over-long line or invalid UTF-8 take a slower path.
"""

from __future__ import annotations

import codecs
from typing import Final

import attrs

from dployr.errors import SpecError

MAX_LINE: Final = 64 * 1024
"""The longest line kept whole, in bytes of UTF-8; longer lines are cut into pieces."""


@attrs.frozen
class Lines:
    """The complete lines one chunk of output produced.

    ``payload`` is the lines as valid UTF-8 joined by ``b"\\n"``; when the chunk was valid
    UTF-8 and held no over-long line it is a slice of the chunk, not a re-encoding.
    """

    lines: list[str] = attrs.field(factory=list)
    """The text of each line, without its newline."""
    payload: bytes = b""
    """The lines as UTF-8, joined by ``b"\\n"``."""
    continued: frozenset[int] = frozenset()
    """Indices of the lines that are pieces of a longer line and go on in the next one."""

    @property
    def nbytes(self) -> int:
        """The size of the payload in bytes."""
        return len(self.payload)

    def __len__(self) -> int:
        return len(self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)


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


def _pieces(line: bytes, max_line: int, lines: list[str], continued: list[int]) -> None:
    """Append one line (valid UTF-8, newline and CR removed) to ``lines``, cut into pieces."""
    while len(line) > max_line:
        cut = _cut(line, max_line)
        continued.append(len(lines))
        lines.append(line[:cut].decode("utf-8", "replace"))
        line = line[cut:]
    lines.append(line.decode("utf-8", "replace"))


def _split(complete: bytes, max_line: int) -> tuple[list[str], bytes | None, list[int]]:
    """The lines of ``complete`` (lines joined by newlines, the last one's newline removed).

    Returns the lines, their payload when it is cheaper to make here (else None), and the
    indices of continued pieces.
    """
    if b"\r" in complete:
        # Drop one CR before each newline, and before the (removed) final newline.
        complete = complete.replace(b"\r\n", b"\n").removesuffix(b"\r")
    try:
        text = complete.decode("utf-8")
    except UnicodeDecodeError:
        # A newline always ends an invalid sequence, so decoding the whole chunk gives the
        # same text as decoding line by line. Lengths are measured on what is kept: each
        # replacement character takes three bytes, whatever it replaced.
        text = complete.decode("utf-8", "replace")
        complete = text.encode("utf-8")
    if _fits(complete, max_line):
        return text.split("\n"), complete, []
    lines: list[str] = []
    continued: list[int] = []
    for line in complete.split(b"\n"):
        _pieces(line, max_line, lines, continued)
    return lines, None, continued


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
                return Lines()
            lines: list[str] = []
            continued: list[int] = []
            self._emit_held(lines, continued)
            return _lines(lines, None, continued)
        self._partial = data[end + 1 :]
        lines, payload, continued = _split(data[:end], self.max_line)
        if len(self._partial) > self.max_line + 1:
            self._emit_held(lines, continued)
            payload = None
        return _lines(lines, payload, continued)

    def flush(self) -> Lines:
        """The line that was still waiting for its newline, if any (for example at exit)."""
        partial, self._partial = self._partial, b""
        if not partial:
            return Lines()
        return _lines(*_split(partial, self.max_line))

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished line are held, waiting for its newline."""
        return len(self._partial)

    def _emit_held(self, lines: list[str], continued: list[int]) -> None:
        """Move the leading pieces of an over-long unfinished line out to ``lines``."""
        # Replace what is not UTF-8 first, so that pieces are measured as they are kept.
        # The incremental decoder leaves a character that may still be completed (at most
        # three bytes) as it is; the next chunk decodes as if nothing had been replaced.
        text, consumed = codecs.utf_8_decode(self._partial, "replace", False)
        partial = text.encode("utf-8") + self._partial[consumed:]
        while len(partial) > self.max_line + 1:
            cut = _cut(partial, self.max_line)
            continued.append(len(lines))
            lines.append(partial[:cut].decode("utf-8", "replace"))
            partial = partial[cut:]
        self._partial = partial


def _lines(lines: list[str], payload: bytes | None, continued: list[int]) -> Lines:
    if payload is None:
        payload = "\n".join(lines).encode("utf-8")
    return Lines(lines, payload, frozenset(continued))
