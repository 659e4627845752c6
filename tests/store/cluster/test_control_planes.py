"""The control planes sharing a cluster state: each records itself and the URL agents reach
it at; the leader records itself and forgets those gone silent."""

from __future__ import annotations

import pytest
import trio

from dployr.store.cluster import CONTROL_PLANES, ClusterState, InvalidClusterValue
from tests.store.conftest import Clock


async def test_control_planes_are_listed_with_their_urls_until_they_leave(
    state: ClusterState, clock: Clock
) -> None:
    await state.announce("cp-a", "http://10.0.0.1:7879")
    clock.advance(1)
    await state.announce("cp-b", "https://cp-b.example")
    listed = await state.control_planes(within=60)
    assert [(cp.id, cp.url, cp.leader_since) for cp in listed] == [
        ("cp-a", "http://10.0.0.1:7879", None),
        ("cp-b", "https://cp-b.example", None),
    ]
    await state.leave("cp-a")
    await state.leave("never-there")
    assert [cp.id for cp in await state.control_planes(within=60)] == ["cp-b"]


async def test_the_leader_is_recorded_and_its_predecessor_no_longer_leads(
    state: ClusterState, clock: Clock
) -> None:
    await state.announce("cp-a", "http://a:1")
    await state.announce("cp-b", "http://b:1")
    await state.record_leader("cp-a")
    clock.advance(5)
    await state.record_leader("cp-b")  # cp-a was killed without a word
    leaders = {cp.id: cp.leader_since for cp in await state.control_planes(within=60)}
    assert leaders == {"cp-a": None, "cp-b": clock.now}


async def test_silent_control_planes_are_not_listed_and_are_pruned(
    state: ClusterState, clock: Clock
) -> None:
    await state.announce("cp-a", "http://a:1")
    await state.announce("cp-b", "http://b:1")
    clock.advance(50)
    await state.record_alive("cp-b", "http://b:1")
    clock.advance(20)
    assert [cp.id for cp in await state.control_planes(within=60)] == ["cp-b"]
    async with state.notifications() as changes:
        assert await state.prune_control_planes(after=60) == 1
        with trio.fail_after(10):
            assert CONTROL_PLANES in await anext(changes)
        assert await state.prune_control_planes(after=60) == 0  # nothing left to prune
    assert [cp.id for cp in await state.control_planes(within=3600)] == ["cp-b"]
    # A control plane pruned while it still runs (a long pause) records itself again.
    clock.advance(120)
    await state.prune_control_planes(after=60)
    await state.record_alive("cp-b", "http://b:1")
    assert [cp.id for cp in await state.control_planes(within=60)] == ["cp-b"]


@pytest.mark.parametrize(
    ("control_plane", "url", "message"),
    [
        ("", "http://a:1", "1 to 64 characters"),
        ("cp-a", "ftp://a", "starts with http:// or https://"),
    ],
)
async def test_a_control_plane_no_agent_could_reach_is_refused(
    state: ClusterState, control_plane: str, url: str, message: str
) -> None:
    with pytest.raises(InvalidClusterValue, match=message):
        await state.announce(control_plane, url)
    assert await state.control_planes(within=60) == []
