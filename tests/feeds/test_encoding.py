"""The batched log feed's encoder: the codec's messages, each batch encoded once."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dployr.gateway.feeds import BatchEncoder
from dployr.logs.values import LogBatch
from dployr.protocol import codec
from dployr.protocol.feed import LogLines

texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"), max_size=40)


@st.composite
def batches(draw: st.DrawFn) -> LogBatch:
    lines = draw(st.lists(texts, min_size=1, max_size=8))
    continued = draw(st.sets(st.integers(0, len(lines) - 2))) if len(lines) > 1 else set()
    return LogBatch(
        first_cursor=draw(st.integers(1, 2**40)),
        ts=draw(st.floats(0, 2**33, allow_nan=False, allow_infinity=False)),
        stream=draw(st.sampled_from(["stdout", "stderr", "build", "system"])),
        deployment=draw(st.none() | st.integers(1, 10**6)),
        payload="\n".join(lines).encode(),
        count=len(lines),
        continued=frozenset(continued),
    )


@given(st.lists(batches(), min_size=1, max_size=3))
def test_a_logs_message_holds_exactly_the_log_messages_of_its_lines(
    entry: list[LogBatch],
) -> None:
    encoder = BatchEncoder(size=200)
    [text] = encoder.messages(tuple(entry))
    lines = [line for batch in entry for line in batch.to_lines()]
    # The very text the codec writes for these lines, and it reads them back.
    assert text == codec.dumps(LogLines(tuple(lines)))
    assert codec.loads(text) == LogLines(tuple(lines))
    expected = [json.loads(codec.dumps(line)) for line in lines]
    assert json.loads(text) == {"type": "logs", "lines": expected}
    # From the cache, the same text again; history's lines give the same message.
    assert encoder.messages(tuple(entry)) == [text]
    assert encoder.messages(lines) == [text]


@given(st.lists(batches(), min_size=1, max_size=3), st.integers(1, 400))
def test_logs_messages_stay_within_their_limit_and_hold_every_line_in_order(
    entry: list[LogBatch], limit: int
) -> None:
    encoder = BatchEncoder(size=200, limit=limit)
    lines = [line for batch in entry for line in batch.to_lines()]
    for made in (encoder.messages(tuple(entry)), encoder.messages(lines)):
        decoded = [codec.loads(text) for text in made]
        assert [line for message in decoded for line in message.lines] == lines
        for text, message in zip(made, decoded, strict=True):
            # Over the limit only as one line alone (a message holds at least one).
            assert len(text) <= limit + len('{"type":"logs","lines":[]}') or len(message.lines) == 1


def test_the_cache_never_answers_for_another_batch_and_stays_within_its_bound() -> None:
    encoder = BatchEncoder(size=300)
    one = LogBatch(first_cursor=1, ts=1.0, stream="stdout", deployment=1, payload=b"a", count=1)
    assert '"line":"a"' in encoder.encode(one)[0]
    for n in range(2, 50):  # batches made and dropped: ids are reused
        other = LogBatch(
            first_cursor=n, ts=1.0, stream="stdout", deployment=1, payload=b"b", count=1
        )
        [text] = encoder.encode(other)
        assert f'"cursor":{n},' in text
        assert '"line":"b"' in text
        assert encoder.held <= 300
        del other
