"""This control plane among those sharing the cluster state (dployr/cluster/peers.py): it
tells its agents every control plane, and when it leads it forgets the silent ones."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from dployr.cluster.hub import AgentHub
from dployr.cluster.peers import ALIVE_EVERY, FORGET_AFTER, Peers, default_url
from dployr.cluster.remote import Outgoing
from dployr.protocol import messages as m
from dployr.protocol import wire as w
from dployr.protocol.wire import ControlPlane
from dployr.store.cluster import SqliteClusterState

ME = "http://10.0.0.1:7879"
DEAD = "http://10.0.0.9:7879"


async def test_the_leader_forgets_a_silent_control_plane_and_the_agents_are_told(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    state = SqliteClusterState.open(
        tmp_path / "cluster.db", clock=lambda: 1_700_000_000 + trio.current_time()
    )
    try:
        await state.announce("dead", DEAD)  # killed long ago, without leaving
        hub = AgentHub(state, control_plane="me")
        peers = Peers(state, hub, ME)
        said: list[str] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(peers.run)
            assert hub.control_planes == (ControlPlane("dead", DEAD), ControlPlane("me", ME))
            await trio.testing.wait_all_tasks_blocked()
            assert peers.leading  # SQLite: the one control plane always leads
            peers.tell(said.append)
            assert said == [f"this control plane (me, {ME}) leads the cluster"]

            await trio.sleep(FORGET_AFTER + 2 * ALIVE_EVERY)
            assert hub.control_planes == (ControlPlane("me", ME),)
            (me,) = await state.control_planes(within=FORGET_AFTER)
            assert (me.id, me.leader_since) == ("me", 1_700_000_000.0)
            nursery.cancel_scope.cancel()
        assert await state.control_planes(within=1e9) == []  # it left as it stopped
    finally:
        await state.aclose()


async def test_the_calls_of_a_control_plane_start_with_its_id(tmp_path: Path) -> None:
    # Two control planes' Calls to one agent share its outbox: their ids never collide.
    state = SqliteClusterState.open(tmp_path / "cluster.db")
    try:
        hub = AgentHub(state, control_plane="a1b2")
        remote = hub._handle_of("east")
        outgoing = Outgoing()
        remote.attach(outgoing)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(remote.request, m.GetInstance())
            with trio.fail_after(10):
                call = w.decode_frame(await outgoing.receive.receive())
            assert isinstance(call, w.Call)
            assert call.id.startswith("a1b2-")
            nursery.cancel_scope.cancel()
        assert AgentHub(state).control_plane != AgentHub(state).control_plane  # new each time
    finally:
        await state.aclose()


def test_a_control_plane_on_every_address_is_told_to_agents_by_its_host_name() -> None:
    assert default_url("http://127.0.0.1:7879", "127.0.0.1", 7879, "cp-1") == (
        "http://127.0.0.1:7879"
    )
    assert default_url("http://0.0.0.0:7879", "0.0.0.0", 7879, "cp-1") == "http://cp-1:7879"
    assert default_url("https://[::]:443", "::", 443, "cp-1") == "https://cp-1:443"


async def test_the_listing_names_the_leader_and_the_one_that_answered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    state = SqliteClusterState.open(
        tmp_path / "cluster.db", clock=lambda: 1_700_000_000 + trio.current_time()
    )
    try:
        await state.announce("dead", DEAD)  # killed, not yet forgotten
        peers = Peers(state, AgentHub(state, control_plane="me"), ME)
        async with trio.open_nursery() as nursery:
            await nursery.start(peers.run)
            await trio.testing.wait_all_tasks_blocked()
            dead, me = await peers.listing()
            assert (dead.id, dead.url, dead.leads, dead.is_self) == ("dead", DEAD, False, False)
            assert (me.id, me.url, me.leads, me.is_self) == ("me", ME, True, True)
            assert me.leader_since == 1_700_000_000.0

            # Its row gone (forgotten while the database was away, say): it still answers
            # as itself, leading as it knows it does.
            await state.leave("me")
            (*_, me) = await peers.listing()
            assert (me.id, me.url, me.leads, me.is_self) == ("me", ME, True, True)
            nursery.cancel_scope.cancel()
    finally:
        await state.aclose()
