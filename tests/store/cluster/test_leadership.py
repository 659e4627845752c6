"""One leader among the control planes sharing a state, and change notices between them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import psycopg
import pytest
import trio
import trio.testing

from dployr.store.cluster import (
    CHANGES,
    INSTANCES,
    PLACEMENT,
    SNAPSHOTS,
    ClusterState,
    LeadershipLost,
    SqliteClusterState,
    while_leader,
)
from dployr.store.cluster.postgres import PostgresClusterState

TIMEOUT = 20  # a guard: every wait below is on an event


async def open_pg(url: str) -> PostgresClusterState:
    return await trio.to_thread.run_sync(PostgresClusterState.open, url)


def backends(url: str, where: str) -> list[int]:
    """The server pids of this database's sessions matching ``where`` (SQL)."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity"
            f" WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
        ).fetchall()
    return [pid for (pid,) in rows]


def leader_sessions(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    return [pid for (pid,) in rows]


def terminate(url: str, pids: list[int]) -> None:
    """Cut these sessions for real, as a database restart or a network fault would."""
    with psycopg.connect(url, autocommit=True) as db:
        for pid in pids:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_changes_are_told_to_whoever_listens(state: ClusterState) -> None:
    async with state.notifications() as changes:
        with trio.fail_after(TIMEOUT):
            await state.add_instance("web-1")
            assert await anext(changes) == {INSTANCES}
            await state.place("api", "web-1")
            assert await anext(changes) == {PLACEMENT}
            await state.record_snapshot("web-1", [], at=1.0)
            await state.record_seen("web-1", address=None, version=None, machine=None, at=1.0)
            # A reader that was away gets what changed meanwhile, once.
            seen: set[str] = set()
            while seen != {SNAPSHOTS, INSTANCES}:
                seen |= await anext(changes)
            await state.remove_instance("web-1")
            seen = set()
            while seen != {INSTANCES, PLACEMENT, SNAPSHOTS}:
                seen |= await anext(changes)


async def test_the_one_control_plane_on_sqlite_always_leads(tmp_path: Path) -> None:
    state = SqliteClusterState.open(tmp_path / "cluster.db")
    worked = trio.Event()

    async def work() -> None:
        worked.set()

    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                await nursery.start(state.lead)
                nursery.cancel_scope.cancel()
            await while_leader(state, work)
        assert worked.is_set()
    finally:
        await state.aclose()


async def test_a_control_plane_hears_what_another_changed(postgres_url: str) -> None:
    one, two = await open_pg(postgres_url), await open_pg(postgres_url)
    try:
        async with two.notifications() as changes:
            with trio.fail_after(TIMEOUT):
                await one.add_instance("web-1")
                assert await anext(changes) == {INSTANCES}
                await one.place("api", "local")
                assert await anext(changes) == {PLACEMENT}
    finally:
        await one.aclose()
        await two.aclose()


async def test_notices_survive_a_cut_connection_and_report_everything_changed(
    postgres_url: str,
) -> None:
    state = await open_pg(postgres_url)
    try:
        async with state.notifications(retry=0.05) as changes:
            with trio.fail_after(TIMEOUT):
                [listener] = backends(postgres_url, "query LIKE 'LISTEN%'")
                terminate(postgres_url, [listener])
                # Notices sent while it was cut are lost: it reports that all may have changed.
                assert await anext(changes) == set(CHANGES)
                await state.place("api", "local")
                assert await anext(changes) == {PLACEMENT}
    finally:
        await state.aclose()


async def test_one_control_plane_leads_and_another_takes_over_when_its_session_ends(
    postgres_url: str,
) -> None:
    one, two = await open_pg(postgres_url), await open_pg(postgres_url)
    one_lost, two_leads = trio.Event(), trio.Event()

    async def lead_one(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with pytest.raises(LeadershipLost, match="lost the connection"):
            await one.lead(task_status=task_status)
        one_lost.set()

    async def lead_two() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(two.lead)
            two_leads.set()

    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                await nursery.start(lead_one)
                [holder] = leader_sessions(postgres_url)
                nursery.start_soon(lead_two)
                await trio.testing.wait_all_tasks_blocked()
                assert not two_leads.is_set()

                terminate(postgres_url, [holder])
                await one_lost.wait()
                await two_leads.wait()
                [new_holder] = leader_sessions(postgres_url)
                assert new_holder != holder
                nursery.cancel_scope.cancel()
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_work_of_the_leader_moves_with_the_leadership(postgres_url: str) -> None:
    one, two = await open_pg(postgres_url), await open_pg(postgres_url)
    working: dict[str, trio.Event] = {"one": trio.Event(), "two": trio.Event()}
    stopped: dict[str, trio.Event] = {"one": trio.Event(), "two": trio.Event()}

    def work_of(name: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            working[name].set()
            try:
                await trio.sleep_forever()
            finally:
                stopped[name].set()

        return work

    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(while_leader, one, work_of("one"), retry=0.05))
                await working["one"].wait()
                nursery.start_soon(partial(while_leader, two, work_of("two"), retry=0.05))
                await trio.testing.wait_all_tasks_blocked()
                assert not working["two"].is_set()

                terminate(postgres_url, leader_sessions(postgres_url))
                await stopped["one"].wait()  # cancelled at once: it may not lead any more
                await working["two"].wait()
                nursery.cancel_scope.cancel()
    finally:
        await one.aclose()
        await two.aclose()


# A control plane in a process of its own: it leads, says so, and waits to be killed.
LEADER = """
import sys
import trio
from dployr.store.cluster.postgres import PostgresClusterState

async def main() -> None:
    state = await trio.to_thread.run_sync(PostgresClusterState.open, sys.argv[1])
    async with trio.open_nursery() as nursery:
        await nursery.start(state.lead)
        print("leading", flush=True)

trio.run(main)
"""


@pytest.mark.slow
async def test_when_the_leader_is_killed_another_control_plane_leads_within_seconds(
    postgres_url: str,
) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", LEADER, postgres_url], stdout=subprocess.PIPE
    )
    state = await open_pg(postgres_url)
    leads = trio.Event()

    async def lead() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(state.lead)
            leads.set()

    try:
        assert process.stdout is not None
        with trio.fail_after(TIMEOUT):
            said = b""
            while b"leading\n" not in said:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the leader process ended: {said!r}"
                said += chunk
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lead)
                await trio.testing.wait_all_tasks_blocked()
                assert not leads.is_set()

                killed_at = time.monotonic()
                os.kill(process.pid, signal.SIGKILL)
                with trio.fail_after(5):
                    await leads.wait()
                took = time.monotonic() - killed_at
                nursery.cancel_scope.cancel()
        print(f"took over {took * 1000:.0f} ms after the leader was killed")
    finally:
        process.kill()
        await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
        await state.aclose()
