"""Fixtures for the cluster state tests: a real database, and the store tests' clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dployr.store.cluster import ClusterState, SqliteClusterState
from tests.store.conftest import Clock


@pytest.fixture
async def state(tmp_path: Path, clock: Clock) -> AsyncIterator[ClusterState]:
    """A new, empty cluster state whose join tokens expire by ``clock``."""
    opened = SqliteClusterState.open(tmp_path / "cluster.db", clock=clock)
    try:
        yield opened
    finally:
        await opened.aclose()
