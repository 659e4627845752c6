"""Instances, their join tokens and credentials: added, joined, authenticated, removed."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dployr.store.cluster import (
    CREDENTIAL_PREFIX,
    JOIN_TOKEN_PREFIX,
    ClusterState,
    InstanceExists,
    InvalidClusterValue,
    InvalidInstanceName,
    InvalidJoinToken,
    UnknownInstance,
)
from tests.store.cluster.conftest import BACKENDS, open_state
from tests.store.conftest import Clock


async def test_an_added_instance_joins_once_and_its_credential_authenticates_it(
    state: ClusterState, clock: Clock
) -> None:
    join = await state.add_instance("web-1", ttl=600)
    assert join.instance == "web-1"
    assert join.token.startswith(JOIN_TOKEN_PREFIX)
    assert join.expires_at == clock.now + 600
    [record] = await state.instances()
    assert (record.name, record.created_at, record.joined_at) == ("web-1", clock.now, None)

    clock.advance(10)
    name, credential = await state.redeem(join.token)
    assert name == "web-1"
    assert credential.startswith(CREDENTIAL_PREFIX)
    assert await state.authenticate(credential) == "web-1"
    [record] = await state.instances()
    assert record.joined_at == clock.now

    with pytest.raises(InvalidJoinToken, match="already used"):
        await state.redeem(join.token)
    assert await state.authenticate(credential) == "web-1"  # a refused reuse changes nothing


async def test_a_join_token_is_refused_once_expired(state: ClusterState, clock: Clock) -> None:
    join = await state.add_instance("web-1", ttl=60)
    clock.advance(60)
    with pytest.raises(InvalidJoinToken, match="expired"):
        await state.redeem(join.token)
    [record] = await state.instances()
    assert record.joined_at is None


async def test_each_instance_has_its_own_token_and_credential(state: ClusterState) -> None:
    one = await state.add_instance("one")
    two = await state.add_instance("two")
    assert one.token != two.token
    _, credential_one = await state.redeem(one.token)
    _, credential_two = await state.redeem(two.token)
    assert credential_one != credential_two
    assert await state.authenticate(credential_one) == "one"
    assert await state.authenticate(credential_two) == "two"


async def test_removing_an_instance_revokes_its_credential_and_token_at_once(
    state: ClusterState,
) -> None:
    joined = await state.add_instance("joined")
    waiting = await state.add_instance("waiting")
    _, credential = await state.redeem(joined.token)
    await state.place("api", "joined")
    await state.record_snapshot("joined", [{"name": "api"}], at=5.0)

    await state.remove_instance("joined")
    await state.remove_instance("waiting")

    assert await state.authenticate(credential) is None
    with pytest.raises(InvalidJoinToken, match="unknown join token"):
        await state.redeem(waiting.token)
    assert await state.instances() == []
    assert await state.placement() == {}
    assert await state.snapshots() == {}
    with pytest.raises(UnknownInstance, match="no instance named 'joined'"):
        await state.remove_instance("joined")
    # The name is free again, with a new token.
    again = await state.add_instance("joined")
    assert again.token != joined.token


async def test_a_name_is_taken_once_and_local_always(state: ClusterState) -> None:
    await state.add_instance("web-1")
    with pytest.raises(InstanceExists, match="'web-1' already exists"):
        await state.add_instance("web-1")
    with pytest.raises(InstanceExists, match="control plane's own"):
        await state.add_instance("local")
    with pytest.raises(InvalidInstanceName, match="control plane's own"):
        await state.remove_instance("local")
    assert [record.name for record in await state.instances()] == ["web-1"]


@pytest.mark.parametrize("name", ["", "Web", "-web", "web_1", "a" * 64, "web 1"])
async def test_a_bad_instance_name_is_refused_in_one_line(state: ClusterState, name: str) -> None:
    with pytest.raises(InvalidInstanceName, match="instance name") as refused:
        await state.add_instance(name)
    assert "\n" not in str(refused.value)
    assert await state.instances() == []


@pytest.mark.parametrize("ttl", [0, -1, 0.5, 31 * 86400, float("nan"), float("inf")])
async def test_a_bad_token_lifetime_is_refused_and_adds_nothing(
    state: ClusterState, ttl: float
) -> None:
    with pytest.raises(InvalidClusterValue, match="lifetime"):
        await state.add_instance("web-1", ttl=ttl)
    assert await state.instances() == []


async def test_an_instance_seen_keeps_its_address_version_and_machine(
    state: ClusterState,
) -> None:
    await state.add_instance("web-1")
    machine: dict[str, object] = {"cpu": 0.25, "memory": {"total": 8 << 30}, "disk": [1, 2]}
    await state.record_seen("web-1", address="10.0.0.7", version="0.9", machine=machine, at=42.5)
    [record] = await state.instances()
    assert (record.address, record.version, record.last_seen) == ("10.0.0.7", "0.9", 42.5)
    assert record.machine == machine
    with pytest.raises(UnknownInstance):
        await state.record_seen("gone", address=None, version=None, machine=None, at=1.0)
    with pytest.raises(InvalidClusterValue, match="not JSON"):
        await state.record_seen(
            "web-1", address=None, version=None, machine={"cpu": float("nan")}, at=43.0
        )
    [unchanged] = await state.instances()
    assert unchanged == record


guesses = st.text() | st.text().map(lambda text: JOIN_TOKEN_PREFIX + text)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(guess=guesses)
def test_only_the_issued_token_redeems_and_only_the_issued_credential_authenticates(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, backend: str, guess: str
) -> None:
    # One database for every example (hence the sync test, each example its own trio run).
    async def example() -> None:
        state = await open_state(backend, request, tmp_path, clock)
        try:
            if not await state.instances():
                join = await state.add_instance("web-1")
                _, credential = await state.redeem(join.token)
                assert await state.authenticate(credential) == "web-1"
            # Whatever else is offered, redeeming fails and authenticating finds no one.
            with pytest.raises(InvalidJoinToken):
                await state.redeem(guess)
            assert await state.authenticate(guess) is None
            assert await state.authenticate(CREDENTIAL_PREFIX + guess) is None
        finally:
            await state.aclose()

    trio.run(example)
