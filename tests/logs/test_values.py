"""The values of the log: batches checked when built, and the pump's unchecked path."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dployr.logs.values import MAX_CURSOR, STREAMS, InvalidBatch, InvalidStream, LogBatch, LogLine

TEXT = st.text(st.characters(exclude_characters="\n", exclude_categories=["Cs"]), max_size=8)


@st.composite
def batch_parts(draw: st.DrawFn) -> dict[str, Any]:
    texts = draw(st.lists(TEXT, min_size=1, max_size=6))
    return {
        "first_cursor": draw(st.integers(1, MAX_CURSOR - len(texts) + 1)),
        "ts": draw(st.floats(allow_nan=False, allow_infinity=False)),
        "stream": draw(st.sampled_from(STREAMS)),
        "deployment": draw(st.none() | st.integers(0, MAX_CURSOR)),
        "payload": "\n".join(texts).encode(),
        "count": len(texts),
        "continued": draw(st.frozensets(st.integers(0, len(texts) - 1))),
        "texts": texts,
    }


@given(batch_parts())
def test_a_trusted_batch_equals_a_checked_one_and_splits_into_its_lines(
    parts: dict[str, Any],
) -> None:
    texts = parts.pop("texts")
    batch = LogBatch(**parts)
    assert LogBatch.trusted(**parts) == batch
    assert batch.lines == tuple(texts)
    assert batch.last_cursor == batch.first_cursor + len(texts) - 1
    assert batch.nbytes == len(parts["payload"])
    first = batch.first_cursor
    assert batch.to_lines() == [
        LogLine(first + i, batch.ts, batch.stream, text, batch.deployment, i in batch.continued)
        for i, text in enumerate(texts)
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"first_cursor": 0}, InvalidBatch),
        ({"first_cursor": MAX_CURSOR}, InvalidBatch),  # its second line has no cursor
        ({"ts": math.nan}, InvalidBatch),
        ({"ts": math.inf}, InvalidBatch),
        ({"stream": "stdin"}, InvalidStream),
        ({"deployment": -1}, InvalidBatch),
        ({"count": 0, "payload": b""}, InvalidBatch),
    ],
)
def test_a_trusted_batch_still_checks_its_header(change: dict[str, Any], error: type) -> None:
    parts: dict[str, Any] = {
        "first_cursor": 1,
        "ts": 1.0,
        "stream": "stdout",
        "deployment": None,
        "payload": b"a\nb",
        "count": 2,
        "continued": frozenset(),
    }
    LogBatch.trusted(**parts)
    with pytest.raises(error):
        LogBatch.trusted(**(parts | change))
    with pytest.raises(error):
        LogBatch(**(parts | change))
