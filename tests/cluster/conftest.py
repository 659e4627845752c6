"""A cluster in one process: real instances (each its own data dir, store and processes)
given to a ClusterHandle through a member source of the test's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import attrs
import pytest
import trio

from dployr.cluster import ClusterHandle
from dployr.engine.handle import LocalHandle
from dployr.engine.instance import EngineConfig, Instance
from dployr.models import DeploymentStatus, RestartPolicy, ServiceSettings, Source
from dployr.protocol.events import DeploymentChanged
from dployr.protocol.feed import Gap
from dployr.protocol.handle import InstanceHandle
from dployr.protocol.messages import Deploy, ListServices, ServiceInfo
from dployr.store.cluster import ClusterState, open_cluster_state
from dployr.store.store import Store
from tests.helpers import PYTHON, TEST_ENGINE

WAIT = 30.0
"""A guard on every wait."""


class InProcessMembers:
    """The router's members as the hub would give them: instances that connect and leave."""

    def __init__(self) -> None:
        self._handles: dict[str, InstanceHandle] = {}
        self._changed = trio.Event()

    def member(self, name: str, /) -> InstanceHandle | None:
        return self._handles.get(name)

    def connected(self) -> Mapping[str, InstanceHandle]:
        return dict(self._handles)

    @property
    def changed(self) -> trio.Event:
        return self._changed

    def connect(self, name: str, handle: InstanceHandle) -> None:
        self._handles[name] = handle
        self._announce()

    def leave(self, name: str) -> None:
        del self._handles[name]
        self._announce()

    def disconnect(self, name: str, reason: str) -> None:
        if name in self._handles:
            self.leave(name)

    def _announce(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()


@attrs.define
class Cluster:
    """The router under test, its state, its members and their instances."""

    router: ClusterHandle
    state: ClusterState
    members: InProcessMembers
    instances: dict[str, Instance]

    async def deploy(self, request: Deploy) -> int:
        """Deploy through the router; wait until the deployment succeeded; its id."""
        with self.router.subscribe_changes() as changes, trio.fail_after(WAIT):
            deployment = await self.router.request(request)
            async with contextlib.aclosing(aiter(changes)) as entries:
                async for entry in entries:
                    if isinstance(entry, Gap):
                        continue
                    for change in entry:
                        if (
                            isinstance(change, DeploymentChanged)
                            and change.service == request.name
                            and change.deployment == deployment.id
                            and change.status.finished
                        ):
                            assert change.status is DeploymentStatus.SUCCEEDED, change
                            return deployment.id
        raise AssertionError("the changes feed ended")

    async def listed(self) -> list[tuple[str, str, bool]]:
        """The merged services list: (service, instance, stale)."""
        rows: tuple[ServiceInfo, ...] = await self.router.request(ListServices())
        return [(row.name, row.instance, row.stale) for row in rows]


def web_settings(repo: Path, port: int) -> ServiceSettings:
    """The test web app from ``repo`` on ``port`` (counted as started after 0.3 s)."""
    return ServiceSettings(
        source=Source(str(repo)),
        run_cmd=f"{PYTHON} app.py",
        port=port,
        stop_grace=5.0,
        restart=RestartPolicy(min_uptime=0.3),
    )


def _instance(data_dir: Path, name: str) -> Instance:
    store = Store.open(data_dir / "dployr.db")
    config = EngineConfig(
        data_dir=data_dir,
        name=name,
        service_host="127.0.0.1",
        ready_timeout=20.0,
        metrics_interval=0.5,  # a sample of every service within a test's patience
        **TEST_ENGINE,
    )
    return Instance(config, store)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """``local`` plus the agents ``east`` and ``west``, joined and connected."""
    state = open_cluster_state(None, tmp_path / "control")
    members = InProcessMembers()
    instances = {name: _instance(tmp_path / name, name) for name in ("local", "east", "west")}
    async with trio.open_nursery() as nursery:
        handles: dict[str, LocalHandle] = {}
        for name, instance in instances.items():
            handles[name] = await nursery.start(instance.run)
        for name in ("east", "west"):
            await state.redeem((await state.add_instance(name)).token)
            members.connect(name, handles[name])
        router = ClusterHandle(handles["local"], members, state)
        await nursery.start(router.run)
        try:
            yield Cluster(router, state, members, instances)
        finally:
            nursery.cancel_scope.cancel()
    for instance in instances.values():
        instance.store.close()
    await state.aclose()
