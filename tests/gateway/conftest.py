"""The gateway served by Hypercorn on loopback, over a real instance on a temporary data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from dployr.engine.instance import EngineConfig, Instance
from dployr.gateway.server import Gateway
from dployr.store.access_store import AccessStore
from dployr.store.store import Store
from tests.helpers import TEST_ENGINE


@attrs.frozen
class Served:
    """A gateway that serves on ``url``, and an API client with a valid token."""

    url: str
    token: str
    gateway: Gateway
    instance: Instance
    http: httpx.AsyncClient


@pytest.fixture
async def served(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Served]:
    store = Store.open(tmp_path / "dployr.db")
    token = store.create_token("admin")
    instance = Instance(
        EngineConfig(data_dir=tmp_path, service_host="127.0.0.1", **TEST_ENGINE), store
    )
    handle = await nursery.start(instance.run)
    gateway = Gateway(handle, AccessStore(store), "127.0.0.1", 0)
    url = await nursery.start(gateway.run, None)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        yield Served(url, token, gateway, instance, http)
    nursery.cancel_scope.cancel()
