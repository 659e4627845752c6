"""Redeploys, rollbacks and failures of container services (real podman and registry)."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.cli.conftest import Daemon, free_port, http_get
from tests.images.conftest import Registry

# podman's store is the machine's: each test keeps to images and names of its own (see
# tests/images/conftest.py), so these run beside the rest of the suite.
pytestmark = pytest.mark.slow

UP = ("--min-uptime", "0.3")


async def test_redeploy_of_a_moved_tag_under_load_then_rollback_and_a_failed_pull(
    daemon: Daemon, registry: Registry
) -> None:
    registry.push("v1", "live")
    port = free_port()
    await daemon.ok("deploy", "--name", "web", "--image", f"{registry.repo}:live",
                    "--port", str(port), *UP)  # fmt: skip
    assert await http_get(port, "/version") == "v1\n"

    # The tag moves to v2; a redeploy pulls it again, under a request loop.
    registry.push("v2", "live")
    answers: dict[str, int] = {}
    failures: list[str] = []
    done = trio.Event()

    async def request_loop() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while not done.is_set():
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/version")
                    response.raise_for_status()
                    answers[response.text] = answers.get(response.text, 0) + 1
                except httpx.HTTPError as error:
                    failures.append(repr(error))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request_loop)
        await daemon.ok("deploy", "--name", "web")
        done.set()
    assert failures == []
    assert answers.get("v1\n", 0) > 0, answers
    assert answers.get("v2\n", 0) > 0, answers
    assert await http_get(port, "/version") == "v2\n"

    # A rollback runs the digest deployment 1 recorded, though the tag names v2 now.
    await daemon.ok("rollback", "web")
    assert await http_get(port, "/version") == "v1\n"

    # A pull that fails fails the deploy, and the running release keeps serving.
    failed = await daemon.cli("deploy", "--name", "web", "--image", f"{registry.repo}:nope")
    error = failed.one_line_error()
    assert "fetch failed: podman pull exited 125" in error, error
    assert "manifest unknown" in error, error
    assert await http_get(port, "/version") == "v1\n"
