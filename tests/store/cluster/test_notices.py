"""Change notices gather what changed until read: nothing lost, nothing empty, no queue."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from dployr.store.cluster import CHANGES, Changes

batches = st.lists(st.lists(st.sampled_from(CHANGES), max_size=3), max_size=30)


@given(batches, st.lists(st.booleans(), max_size=30))
def test_a_reader_gets_every_change_once_gathered_and_never_an_empty_set(
    published: list[list[str]], reads: list[bool]
) -> None:
    async def main() -> None:
        changes = Changes()
        pending: set[str] = set()
        for batch, read in zip(published, reads + [False] * len(published), strict=False):
            changes.publish(batch)
            pending |= set(batch)
            if read and pending:
                # What is read is exactly what changed since the last read.
                with trio.fail_after(1):
                    assert await anext(changes) == pending
                pending = set()
        if pending:
            assert await anext(changes) == pending
        # Nothing more is pending: a reader waits.
        with trio.move_on_after(1) as waited:
            await anext(changes)
        assert waited.cancelled_caught

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
