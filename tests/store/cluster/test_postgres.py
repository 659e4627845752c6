"""The PostgreSQL backend: several control planes on one database, migrations that run once,
and a database that cannot be used said in one line."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psycopg
import pytest
import trio

from dployr.store import SchemaTooNew, StoreError
from dployr.store.cluster import InvalidJoinToken, UnknownInstance, open_cluster_state
from dployr.store.cluster.postgres import PostgresClusterState
from dployr.store.cluster.schema import POSTGRES_MIGRATIONS
from tests.pg import PostgresServer, free_port


async def open_state(url: str) -> PostgresClusterState:
    return await trio.to_thread.run_sync(PostgresClusterState.open, url)


async def test_control_planes_starting_at_once_migrate_the_database_once(
    postgres_url: str,
) -> None:
    opened: list[PostgresClusterState] = []

    async def start() -> None:
        opened.append(await open_state(postgres_url))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(start)
    try:
        assert len(opened) == 4
        with psycopg.connect(postgres_url) as db:
            versions = db.execute("SELECT version FROM dployr_schema ORDER BY version")
            assert [version for (version,) in versions] == list(
                range(1, len(POSTGRES_MIGRATIONS) + 1)
            )
        # They share one state.
        join = await opened[0].add_instance("web-1")
        _, credential = await opened[1].redeem(join.token)
        assert await opened[2].authenticate(credential) == "web-1"
        await opened[3].remove_instance("web-1")
        assert await opened[2].authenticate(credential) is None
    finally:
        for state in opened:
            await state.aclose()


async def test_a_join_token_redeemed_by_two_control_planes_at_once_joins_once(
    postgres_url: str,
) -> None:
    one, two = await open_state(postgres_url), await open_state(postgres_url)
    try:
        for round_ in range(10):
            join = await one.add_instance(f"web-{round_}")
            outcomes: list[str] = []

            async def redeem(
                state: PostgresClusterState, token: str = join.token, outcomes: list[str] = outcomes
            ) -> None:
                try:
                    await state.redeem(token)
                    outcomes.append("joined")
                except InvalidJoinToken:
                    outcomes.append("refused")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(redeem, one)
                nursery.start_soon(redeem, two)
            assert sorted(outcomes) == ["joined", "refused"]
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_database_written_by_a_newer_dployr_is_refused(postgres_url: str) -> None:
    state = await open_state(postgres_url)
    await state.aclose()
    with psycopg.connect(postgres_url) as db:
        db.execute(
            "INSERT INTO dployr_schema VALUES (%s, 'from the future', 0)",
            (len(POSTGRES_MIGRATIONS) + 1,),
        )
    with pytest.raises(SchemaTooNew, match="upgrade dployr"):
        await open_state(postgres_url)


async def test_a_database_url_opens_the_state_there_and_nothing_in_the_data_dir(
    postgres_url: str, tmp_path: Path
) -> None:
    state = await trio.to_thread.run_sync(open_cluster_state, postgres_url, tmp_path)
    try:
        assert isinstance(state, PostgresClusterState)
        await state.add_instance("web-1")
        with psycopg.connect(postgres_url) as db:
            assert db.execute("SELECT name FROM instances").fetchall() == [("web-1",)]
        assert os.listdir(tmp_path) == []
    finally:
        await state.aclose()


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://dployr:hunter2@127.0.0.1:{free_port()}/dployr"
    with pytest.raises(StoreError, match="cannot open the database") as refused:
        open_cluster_state(url, tmp_path)
    message = str(refused.value)
    assert "hunter2" not in message
    assert "postgresql://dployr:***@127.0.0.1" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://admin:hunter2@db.example/dployr", "unsupported database URL"),
        ("postgresql://admin:hunter2@db.example/dployr?colour=blue", "invalid database URL"),
        ("postgresql://admin:hunter2@db.example:port/dployr", "cannot open the database"),
        ("db.example", "unsupported database URL"),
    ],
)
def test_a_bad_database_url_is_one_line_without_its_password(
    tmp_path: Path, url: str, said: str
) -> None:
    with pytest.raises(StoreError, match=said) as refused:
        open_cluster_state(url, tmp_path)
    assert "hunter2" not in str(refused.value)
    assert "\n" not in str(refused.value)


async def test_a_database_that_goes_away_fails_calls_in_one_line_and_is_used_again_after(
    postgres: PostgresServer, postgres_url: str
) -> None:
    state = await open_state(postgres_url)
    try:
        await state.add_instance("web-1")
        # Every connection of the pool is cut, as a database restart would.
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            database = postgres_url.rpartition("/")[2]
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
        # The pool checks a connection before lending it: the next call gets a new one.
        assert [record.name for record in await state.instances()] == ["web-1"]
    finally:
        await state.aclose()


async def test_an_instance_removed_while_another_control_plane_uses_it_leaves_nothing_behind(
    postgres_url: str,
) -> None:
    one, two = await open_pg_pair(postgres_url)
    try:
        for round_ in range(10):
            name = f"web-{round_}"
            join = await one.add_instance(name)

            async def use(name: str = name, token: str = join.token) -> None:
                # Each may find the instance gone: what matters is what is left after.
                with contextlib.suppress(UnknownInstance, InvalidJoinToken):
                    await two.redeem(token)
                with contextlib.suppress(UnknownInstance):
                    await two.place(f"api-{name}", name)
                with contextlib.suppress(UnknownInstance):
                    await two.record_snapshot(name, [{"name": "api"}], at=1.0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(use)
                nursery.start_soon(one.remove_instance, name)
        assert await one.instances() == []
        assert await one.placement() == {}
        assert await one.snapshots() == {}
        with psycopg.connect(postgres_url) as db:
            assert db.execute("SELECT count(*) FROM credentials").fetchone() == (0,)
    finally:
        await one.aclose()
        await two.aclose()


async def open_pg_pair(url: str) -> tuple[PostgresClusterState, PostgresClusterState]:
    return await open_state(url), await open_state(url)
