"""Deploying container images with the real CLI, daemon, podman and a loopback registry."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Daemon, free_port, http_get
from tests.images.conftest import Registry, podman_cmd

pytestmark = pytest.mark.slow


async def containers_of(daemon: Daemon) -> list[str]:
    """The names of the containers dployr made for this daemon's instance, running or not."""
    async with daemon.http() as http:
        instance = (await http.get("/instances")).json()[0]["id"]
    out = podman_cmd("ps", "--all", "--filter", f"label=dployr.instance={instance}",
                     "--format", "{{.Names}}")  # fmt: skip
    return out.split()


async def test_deploy_by_tag_serves_the_image_and_its_output_is_the_log(
    daemon: Daemon, registry: Registry
) -> None:
    port = free_port()
    out = await daemon.ok(
        "deploy", "--name", "web", "--image", f"{registry.repo}:v1", "--port", str(port),
        "--min-uptime", "0.3", "--env", "GREETING=hi", "--secret", "TOKEN=s3cret-value",
    )  # fmt: skip
    assert "Copying" in out or "pull" in out, out
    assert await http_get(port, "/version") == "v1\n"
    logs = await daemon.ok("logs", "web")
    assert "serving v1 on " in logs, logs
    assert "to stderr" in logs, logs
    listing = await daemon.ok("deployments", "web")
    assert registry.digests["v1"][:19] in listing, listing
