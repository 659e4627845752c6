"""The SQLite backend: a private ``cluster.db`` in the data dir that survives a restart."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from dployr.store import SchemaTooNew, StoreError
from dployr.store.cluster import (
    CLUSTER_DB_FILE_NAME,
    SqliteClusterState,
    open_cluster_state,
)
from dployr.store.cluster.schema import SQLITE_MIGRATIONS


async def test_the_state_lives_in_the_data_dir_and_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    state = open_cluster_state(None, data_dir)
    join = await state.add_instance("web-1")
    _, credential = await state.redeem(join.token)
    await state.place("api", "web-1")
    await state.aclose()
    await state.aclose()  # closing twice is harmless

    path = data_dir / CLUSTER_DB_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (len(SQLITE_MIGRATIONS),)
        # Secrets are kept only as digests.
        dump = "\n".join(db.iterdump())
    assert join.token not in dump
    assert credential not in dump

    reopened = open_cluster_state(None, data_dir)
    try:
        assert await reopened.authenticate(credential) == "web-1"
        assert await reopened.placement() == {"api": "web-1"}
    finally:
        await reopened.aclose()


async def test_a_closed_state_refuses_calls(tmp_path: Path) -> None:
    state = SqliteClusterState.open(tmp_path / "cluster.db")
    await state.aclose()
    with pytest.raises(StoreError, match="closed"):
        await state.instances()


async def test_a_state_written_by_a_newer_dployr_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(SQLITE_MIGRATIONS) + 1}")
    with pytest.raises(SchemaTooNew, match="upgrade dployr"):
        SqliteClusterState.open(path)


def test_an_unknown_database_url_is_one_line_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported database URL") as refused:
        open_cluster_state("mysql://admin:hunter2@db.example/dployr", tmp_path)
    assert "hunter2" not in str(refused.value)
    assert "\n" not in str(refused.value)
