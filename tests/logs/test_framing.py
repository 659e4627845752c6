"""Log-line framing: lines, CRLF, over-long lines, invalid UTF-8, any chunking."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dployr.errors import SpecError
from dployr.logs.framing import MAX_LINE, Lines, LineSplitter
from dployr.logs.values import InvalidBatch

FRAGMENTS = st.one_of(
    st.binary(max_size=12),
    st.sampled_from(
        [
            b"\n",
            b"\r\n",
            b"\r",
            b"\r\r\n",
            "é".encode(),
            "€".encode(),
            "😀".encode(),
            b"\xff",
            b"\xe2\x82",  # a truncated character
            b"\xf0\x9f",
            b"\x80\x80\x80\x80",  # stray continuation bytes
            b"\xed\xa0\x80",  # an encoded surrogate
            b"abcdefghij",
        ]
    ),
)
OUTPUT = st.lists(FRAGMENTS, max_size=40).map(b"".join)


def run(splitter: LineSplitter, chunks: list[bytes]) -> list[tuple[str, bool]]:
    """Feed every chunk then flush; the lines with their continued flags."""
    out: list[tuple[str, bool]] = []
    for lines in [*(splitter.feed(chunk) for chunk in chunks), splitter.flush()]:
        check_lines(lines)
        out.extend((line, i in lines.continued) for i, line in enumerate(lines.lines))
    return out


def check_lines(lines: Lines) -> None:
    text = lines.lines
    assert lines.payload == "\n".join(text).encode("utf-8")
    assert len(lines) == lines.count == len(text)
    assert lines.nbytes == len(lines.payload)
    assert all(0 <= i < len(text) for i in lines.continued)
    # The splitter builds its output without checking it: it must pass the checks that a
    # value built by hand goes through.
    assert Lines(lines.payload, lines.count, lines.continued) == lines


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def rejoin(lines: list[tuple[str, bool]]) -> str:
    return "".join(line if continued else line + "\n" for line, continued in lines)


def expected_text(data: bytes) -> str:
    """What the lines say: the decoded output, CRLF as LF, every line ended by a newline."""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        text = text.removesuffix("\r") + "\n"
    return text


@given(OUTPUT, st.integers(4, 16), st.data())
def test_any_chunking_gives_the_same_lines_as_feeding_it_whole(
    data: bytes, max_line: int, draw: st.DataObject
) -> None:
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=10))
    whole = run(LineSplitter(max_line), [data])
    assert run(LineSplitter(max_line), chunked(data, cuts)) == whole
    assert run(LineSplitter(max_line), [bytes([b]) for b in data]) == whole


@given(OUTPUT, st.integers(4, 16), st.data())
def test_no_line_is_longer_than_the_maximum_and_pieces_rejoin_to_the_input(
    data: bytes, max_line: int, draw: st.DataObject
) -> None:
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=10))
    splitter = LineSplitter(max_line)
    lines = run(splitter, chunked(data, cuts))
    assert all(len(line.encode()) <= max_line for line, _ in lines)
    assert rejoin(lines) == expected_text(data)
    if lines:
        assert not lines[-1][1]  # the last piece of a line is never marked continued


@given(OUTPUT, st.integers(4, 16), st.data())
def test_the_held_partial_line_stays_bounded(
    data: bytes, max_line: int, draw: st.DataObject
) -> None:
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=10))
    splitter = LineSplitter(max_line)
    for chunk in chunked(data, cuts):
        splitter.feed(chunk)
        assert splitter.pending <= max_line + 1


@given(
    st.text(st.characters(exclude_characters="\r", exclude_categories=["Cs"])),
    st.integers(4, 16),
    st.data(),
)
def test_valid_utf8_round_trips_exactly(text: str, max_line: int, draw: st.DataObject) -> None:
    data = text.encode("utf-8")
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=10))
    lines = run(LineSplitter(max_line), chunked(data, cuts))
    joined = rejoin(lines)
    assert joined == (text if text.endswith("\n") or not text else text + "\n")
    # Pieces are as long as they can be: a cut moves back at most 3 bytes, to a boundary.
    assert all(len(line.encode()) > max_line - 4 for line, continued in lines if continued)


def test_common_case_payload_is_the_chunk_without_its_last_newline() -> None:
    chunk = "".join(f"line {i} ünïcode\n" for i in range(100)).encode()
    lines = LineSplitter().feed(chunk)
    assert lines.payload == chunk[:-1]
    assert lines.payload is not chunk
    assert len(lines) == 100
    assert lines.lines[7] == "line 7 ünïcode"
    assert not lines.continued


def test_a_partial_line_waits_for_its_newline_and_flush_emits_it() -> None:
    splitter = LineSplitter()
    assert not splitter.feed(b"hel")
    assert splitter.feed(b"lo\nwor").lines == ["hello"]
    assert splitter.feed(b"ld").lines == []
    assert splitter.flush().lines == ["world"]
    assert splitter.flush().lines == []


def test_a_character_split_across_chunks_comes_out_whole() -> None:
    euro = "€".encode()
    splitter = LineSplitter()
    assert not splitter.feed(b"price: " + euro[:1])
    assert splitter.feed(euro[1:] + b"5\n").lines == ["price: €5"]


def test_crlf_and_empty_lines() -> None:
    lines = LineSplitter().feed(b"a\r\n\r\n\nb\r\r\nc\rd\n")
    assert lines.lines == ["a", "", "", "b\r", "c\rd"]
    assert lines.payload == b"a\n\n\nb\r\nc\rd"


def test_invalid_utf8_is_replaced_never_fatal() -> None:
    lines = LineSplitter().feed(b"ok\n\xff\xfe bad \xe2\x82\nend\n")
    assert lines.lines == ["ok", "\ufffd\ufffd bad \ufffd", "end"]
    assert lines.payload == "\n".join(lines.lines).encode()


def test_a_long_line_is_cut_into_continued_pieces_on_character_boundaries() -> None:
    line = "€" * MAX_LINE  # 3 bytes each: three times the maximum
    splitter = LineSplitter()
    pieces: list[tuple[str, bool]] = []
    data = line.encode() + b"\nnext\n"
    for start in range(0, len(data), 64 * 1024):
        lines = splitter.feed(data[start : start + 64 * 1024])
        pieces.extend((text, i in lines.continued) for i, text in enumerate(lines.lines))
        assert splitter.pending <= MAX_LINE + 1
    assert "".join(text for text, _ in pieces[:-1]) == line
    assert [continued for _, continued in pieces] == [True] * (len(pieces) - 2) + [False, False]
    assert all(len(text.encode()) <= MAX_LINE for text, _ in pieces)
    assert pieces[-1] == ("next", False)


def test_a_line_of_exactly_the_maximum_is_kept_whole() -> None:
    lines = LineSplitter().feed(b"x" * MAX_LINE + b"\r\n")
    assert lines.lines == ["x" * MAX_LINE]
    assert not lines.continued


def test_a_too_small_maximum_is_refused() -> None:
    with pytest.raises(SpecError, match="at least 4 bytes"):
        LineSplitter(3)


def test_feed_takes_any_bytes_like_chunk() -> None:
    splitter = LineSplitter()
    assert splitter.feed(bytearray(b"a\nb")).lines == ["a"]
    assert splitter.feed(memoryview(b"c\n")).lines == ["bc"]


LINE_TEXT = st.text(st.characters(exclude_characters="\n", exclude_categories=["Cs"]))


@given(st.lists(LINE_TEXT, max_size=8), st.data())
def test_lines_built_by_hand_are_checked(texts: list[str], draw: st.DataObject) -> None:
    payload = "\n".join(texts).encode()
    count = len(texts)
    continued = draw.draw(st.frozensets(st.integers(0, max(count - 1, 0)), max_size=count))
    lines = Lines(payload, count, continued)
    assert lines.lines == texts
    assert bool(lines) == (count > 0)
    # An empty payload is no line (0) or one empty line (1); any other count is refused.
    valid = {0, 1} if not payload else {count}
    wrong = draw.draw(st.integers(-2, count + 3).filter(lambda n: n not in valid))
    with pytest.raises(InvalidBatch):
        Lines(payload, wrong, frozenset())
    with pytest.raises(InvalidBatch, match="indices"):
        Lines(payload, count, frozenset({count}))


def test_lines_must_be_valid_utf8() -> None:
    assert Lines(b"", 1).lines == [""]  # one empty line
    assert Lines().lines == []
    with pytest.raises(InvalidBatch, match="UTF-8"):
        Lines(b"caf\xe9", 1)
    with pytest.raises(InvalidBatch, match="one line or more"):
        Lines(b"x", 0)
