"""A real instance on a temporary data dir, with real processes and git repositories."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import attrs
import httpx
import pytest
import trio
import trio.testing

from dployr.engine.handle import LocalHandle
from dployr.engine.instance import EngineConfig, Instance
from dployr.logs.values import LogLine, lines_of
from dployr.models import (
    Deployment,
    DeploymentStatus,
    RestartPolicy,
    ServiceSettings,
    ServiceStatus,
    Source,
)
from dployr.protocol.events import Change, SupervisionReport
from dployr.protocol.feed import Gap
from dployr.protocol.handle import Feed
from dployr.protocol.messages import Deploy, GetService, ListDeployments, ServiceInfo
from dployr.store.store import Store
from tests.helpers import PYTHON, TEST_ENGINE, pids_of_service

T = TypeVar("T")
WAIT = 30.0
"""A guard on every wait: a test that waits longer than this has failed."""
FAST_RESTARTS = RestartPolicy(delay=0.1, max_delay=0.4, max_restarts=3, window=30, min_uptime=0.3)
"""A restart policy for crash loops that end within a test's patience."""


@attrs.define
class Engine:
    """An instance under test and the handle that drives it."""

    instance: Instance
    handle: LocalHandle
    data_dir: Path

    async def wait_log(self, name: str, text: str, *, after: int = 0) -> LogLine:
        """Wait for a line containing ``text`` in the service's log (after cursor ``after``)."""
        feed = self.handle.follow_logs(name, after=after)
        with trio.fail_after(WAIT):
            async with contextlib.aclosing(feed):
                async for entry in feed:
                    live = lines_of(entry) if isinstance(entry, tuple) else []
                    for line in entry if isinstance(entry, list) else live:
                        if text in line.line:
                            return line
        raise AssertionError("the log feed ended")

    def pids(self, name: str) -> list[int]:
        """The live processes of a service of this instance."""
        return pids_of_service(name, self.instance.id)

    async def status(self, name: str) -> ServiceInfo:
        return await self.handle.request(GetService(name))

    async def wait_info(
        self,
        name: str,
        check: Callable[[ServiceInfo], bool],
        seen: list[Change] | None = None,
        changes: Feed[Change] | None = None,
    ) -> ServiceInfo:
        """Wait until the service's info, asked of the handle at every change, passes
        ``check``; return it.

        The changes seen meanwhile are appended to ``seen``: those since ``changes`` was
        subscribed, if given (subscribe before acting to see every change it causes).
        """
        with contextlib.ExitStack() as stack:
            if changes is None:
                changes = stack.enter_context(self.handle.subscribe_changes())
            with trio.fail_after(WAIT):
                async with contextlib.aclosing(aiter(changes)) as entries:
                    while not check(info := await self.status(name)):
                        entry = await anext(entries)
                        if seen is not None and not isinstance(entry, Gap):
                            seen.extend(entry)
        return info

    async def wait_status(self, name: str, status: ServiceStatus) -> ServiceInfo:
        return await self.wait_info(name, lambda info: info.status is status)

    async def deployment(self, name: str, deployment: int) -> Deployment:
        """A deployment's record, as the handle lists it."""
        listed = await self.handle.request(ListDeployments(name, 1000))
        return next(d for d in listed if d.id == deployment)

    async def wait_deployment(self, name: str, deployment: int) -> DeploymentStatus:
        """Wait until a deploy has ended and the service is free again; return how."""
        with self.handle.subscribe_changes() as changes, trio.fail_after(WAIT):
            async with contextlib.aclosing(aiter(changes)) as entries:
                while True:
                    record = await self.deployment(name, deployment)
                    info = await self.status(name)
                    if record.status.finished and info.deploying != deployment:
                        return record.status
                    await anext(entries)

    async def deploy(self, name: str, settings: ServiceSettings, **kwargs: object) -> int:
        """Deploy and wait for the deploy to end; return the deployment id."""
        deployment = await self.handle.request(Deploy(name, settings, **kwargs))  # type: ignore[arg-type]
        await self.wait_deployment(name, deployment.id)
        return deployment.id


async def drain(feed: Feed[T], into: list[T]) -> None:
    """Take what a handle's feed holds now, without waiting for more: every task of the
    test is blocked (waiting for something) once it has taken all there is."""

    async def take() -> None:
        async for entry in feed:
            if not isinstance(entry, Gap):
                into.extend(entry)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def started_children(events: Feed[SupervisionReport]) -> list[str]:
    """The ids of the children whose start ``events`` has reported so far (never waits)."""
    reports: list[SupervisionReport] = []
    await drain(events, reports)
    return [report.child for report in reports if report.kind == "child_started"]


def start_engine(data_dir: Path, **config: object) -> tuple[Instance, Store]:
    store = Store.open(data_dir / "dployr.db")
    defaults: dict[str, object] = {
        "service_host": "127.0.0.1",
        "ready_timeout": 20.0,
        **TEST_ENGINE,
    }
    defaults.update(config)
    return Instance(EngineConfig(data_dir=data_dir, **defaults), store), store  # type: ignore[arg-type]


@pytest.fixture
async def engine(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Engine]:
    data_dir = tmp_path / "data"
    instance, _ = start_engine(data_dir)
    handle = await nursery.start(instance.run)
    yield Engine(instance, handle, data_dir)
    nursery.cancel_scope.cancel()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


QUICK_START = RestartPolicy(min_uptime=0.3)
"""Tests need not wait the default 5 s for a release to count as started."""


def web_settings(repo: Path, port: int | None, **kwargs: object) -> ServiceSettings:
    """Settings that run the test web app from ``repo``."""
    kwargs.setdefault("restart", QUICK_START)
    return ServiceSettings(
        source=Source(str(repo)),
        run_cmd=f"{PYTHON} app.py",
        port=port,
        stop_grace=5.0,
        **kwargs,  # type: ignore[arg-type]
    )
