"""Which instance each service belongs to, and the last-known services of each instance."""

from __future__ import annotations

import pytest

from dployr.models import InvalidName
from dployr.store.cluster import ClusterState, InvalidClusterValue, UnknownInstance


async def test_services_are_placed_on_local_or_a_known_instance(state: ClusterState) -> None:
    await state.add_instance("web-1")
    await state.place("api", "web-1")
    await state.place("worker", "local")
    assert await state.placement() == {"api": "web-1", "worker": "local"}

    await state.place("api", "local")  # moved
    await state.unplace("worker")
    await state.unplace("never-placed")
    assert await state.placement() == {"api": "local"}

    with pytest.raises(UnknownInstance, match="no instance named 'elsewhere'"):
        await state.place("api", "elsewhere")
    with pytest.raises(InvalidName):
        await state.place("Not A Service", "local")
    assert await state.placement() == {"api": "local"}


async def test_the_newest_snapshot_of_each_instance_is_kept(state: ClusterState) -> None:
    await state.add_instance("web-1")
    first: list[dict[str, object]] = [{"name": "api", "status": "running", "pid": 10}]
    second: list[dict[str, object]] = [{"name": "api", "status": "failed", "pid": None}]
    await state.record_snapshot("web-1", first, at=10.0)
    await state.record_snapshot("web-1", second, at=20.0)
    await state.record_snapshot("web-1", first, at=15.0)  # late: an older one is ignored
    await state.record_snapshot("local", [], at=1.0)
    assert await state.snapshots() == {"web-1": (20.0, second), "local": (1.0, [])}

    with pytest.raises(UnknownInstance):
        await state.record_snapshot("gone", first, at=30.0)
    with pytest.raises(InvalidClusterValue):
        await state.record_snapshot("web-1", [{"pid": float("inf")}], at=30.0)
    with pytest.raises(InvalidClusterValue):
        await state.record_snapshot("web-1", ["api"], at=30.0)  # type: ignore[list-item]
    assert (await state.snapshots())["web-1"] == (20.0, second)
