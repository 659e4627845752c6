"""The batched log feed's encoder: the same objects as one message per line."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dployr.gateway.feeds import BatchEncoder, log_message
from dployr.logs.values import LogBatch

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
    message = json.loads(encoder.message(tuple(entry)))
    expected = [json.loads(log_message(line)) for batch in entry for line in batch.to_lines()]
    assert message == {"type": "logs", "lines": expected}
    # From the cache, the same text again.
    assert json.loads(encoder.message(tuple(entry))) == message
    lines = [line for batch in entry for line in batch.to_lines()]
    assert json.loads(encoder.message(lines)) == message


def test_the_cache_never_answers_for_another_batch_and_stays_within_its_bound() -> None:
    encoder = BatchEncoder(size=300)
    one = LogBatch(first_cursor=1, ts=1.0, stream="stdout", deployment=1, payload=b"a", count=1)
    assert '"line":"a"' in encoder.encode(one)
    for n in range(2, 50):  # batches made and dropped: ids are reused
        other = LogBatch(
            first_cursor=n, ts=1.0, stream="stdout", deployment=1, payload=b"b", count=1
        )
        text = encoder.encode(other)
        assert f'"cursor":{n},' in text
        assert '"line":"b"' in text
        assert encoder.held <= 300
        del other
