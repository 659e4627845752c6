"""The dashboard's deploy view shows a pull's layers and bytes (real browser, podman and
registry)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard import conftest as dashboard
from tests.dashboard.conftest import Daemon, deploy_over, sign_in
from tests.images.conftest import Registry, podman_cmd
from tests.images.test_pull_progress import push_fresh

pytestmark = pytest.mark.slow

# The dashboard tests' fixtures (a daemon in a subprocess, a tab of the suite's chromium),
# instead of the CLI tests' daemon that the other image tests use.
daemon = dashboard.daemon
page = dashboard.page


def test_a_redeploy_that_pulls_shows_its_progress_as_one_step(
    page: Page, daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    ref = f"{registry.host}/dployr-tests/dashboard:{os.environ['TESTS_RUN']}"
    pushed = [push_fresh(tmp_path / "first", ref)]
    try:
        with daemon.api() as api:
            # A port of its own: without one the image's httpd exits, and the service gives
            # up before the redeploy when the machine is busy.
            body = {
                "image": ref,
                "remote": {"url": ref},
                "port": dashboard.free_port(),
                "restart": {"min_uptime": 0.3},
            }
            response = api.post("/services/web/deploy", json=body)
        assert response.status_code == 202, response.text
        deploy_over(daemon, "web", int(response.json()["id"]))
        pushed.append(push_fresh(tmp_path / "second", ref))  # the tag moves: it is pulled

        sign_in(page, daemon, "/services/web")
        expect(page.locator("#status-badge")).to_have_text("running")
        page.get_by_role("button", name="Redeploy", exact=True).click()
        expect(page.locator("#deploy-result")).to_contain_text("web is deployed")
        steps = page.locator("#deploy-steps li", has_text="Pull progress: ")
        expect(steps).to_have_count(1)
        expect(steps).to_contain_text("1 layer, ")
        expect(steps).to_contain_text(" MB downloaded")
        with daemon.api() as api:
            assert api.delete("/services/web", params={"purge_image": "true"}).status_code < 300
    finally:
        podman_cmd("rmi", "--force", "--ignore", *pushed, capture=True)
