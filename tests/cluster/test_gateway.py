"""The gateway over the cluster: REST routes and the Prometheus endpoint name the instance
each service runs on."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import trio

from dployr.gateway.server import Gateway
from dployr.metrics import ServiceSample
from dployr.protocol.feed import Gap
from dployr.protocol.messages import Deploy, Stop
from dployr.store.access_store import AccessStore
from tests.cli.conftest import free_port
from tests.cluster.conftest import WAIT, Cluster, web_settings
from tests.helpers import web_repo


async def test_routes_and_prometheus_name_each_services_instance(
    cluster: Cluster, tmp_path: Path
) -> None:
    store = cluster.instances["local"].store
    token = store.create_token("admin-test")
    repo = web_repo(tmp_path / "repo")
    await cluster.deploy(Deploy("home", web_settings(repo, free_port())))
    await cluster.deploy(Deploy("api", web_settings(repo, free_port()), instance="east"))

    async with trio.open_nursery() as nursery:
        gateway = Gateway(cluster.router, AccessStore(store), "127.0.0.1", 0)
        url = await nursery.start(gateway.run, None)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=WAIT) as http:
            listed = (await http.get("/api/v1/services")).json()
            assert [(s["name"], s["instance"]) for s in listed] == [
                ("api", "east"),
                ("home", "local"),
            ]
            status = (await http.get("/api/v1/services/api/status")).json()
            assert status["instance"] == "east"
            logs = (await http.get("/api/v1/services/api/logs")).json()
            assert any("listening on" in line["line"] for line in logs["lines"])
            east = (await http.get("/api/v1/instances/east")).json()
            assert (east["state"], [s["name"] for s in east["services"]]) == ("connected", ["api"])

            # Once both have a sample, each is labelled with its own instance.
            seen: set[str] = set()
            with cluster.router.subscribe_metrics() as samples, trio.fail_after(WAIT):
                async with contextlib.aclosing(aiter(samples)) as entries:
                    async for entry in entries:
                        if not isinstance(entry, Gap):
                            seen.update(s.service for s in entry if isinstance(s, ServiceSample))
                        if {"api", "home"} <= seen:
                            break
            text = (await http.get("/metrics")).text
            assert 'dployr_service_memory_rss_bytes{service="api",instance="east"}' in text
            assert 'dployr_service_memory_rss_bytes{service="home",instance="local"}' in text
        nursery.cancel_scope.cancel()
    for name in ("api", "home"):
        await cluster.router.request(Stop(name))
