"""Fixtures for the cluster state tests: each runs on a real SQLite file and on a real
PostgreSQL database (a new one per test, on this test process's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from dployr.store.cluster import ClusterState, SqliteClusterState
from dployr.store.cluster.postgres import PostgresClusterState
from tests.pg import postgres, postgres_url
from tests.store.conftest import Clock

__all__ = ["postgres", "postgres_url"]  # fixtures, used by name


BACKENDS = ["sqlite", "postgres"]


async def open_state(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> ClusterState:
    """A cluster state on ``backend``, in ``tmp_path`` or the test's PostgreSQL database."""
    if backend == "sqlite":
        return SqliteClusterState.open(tmp_path / "cluster.db", clock=clock)
    url = request.getfixturevalue("postgres_url")
    return await trio.to_thread.run_sync(lambda: PostgresClusterState.open(url, clock=clock))


@pytest.fixture(params=BACKENDS)
async def state(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[ClusterState]:
    """A new, empty cluster state whose join tokens expire by ``clock``."""
    opened = await open_state(request.param, request, tmp_path, clock)
    try:
        yield opened
    finally:
        await opened.aclose()
