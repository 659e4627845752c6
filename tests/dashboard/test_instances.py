"""The Instances page: every instance of the cluster, connected or not, with its facts."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Daemon, app_repo, deploy, sign_in, snap


def test_the_instances_page_lists_every_instance(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    deploy(daemon, "web", app_repo(tmp_path / "repo"))
    with daemon.api() as api:
        added = api.post("/instances", json={"name": "east"})
    assert added.status_code == 201, added.text
    sign_in(page, daemon, "/instances")

    local = page.locator('[data-instance="local"]')
    expect(local.get_by_role("heading", level=2)).to_contain_text("connected")
    expect(local).to_contain_text("dployr ")
    expect(local).to_contain_text("web")
    expect(local.locator(".meter")).to_have_count(3)  # CPU, memory, disk
    expect(local.locator(".meter").nth(2)).to_contain_text("free")

    east = page.locator('[data-instance="east"]')
    expect(east.get_by_role("heading", level=2)).to_contain_text("pending")
    expect(east).to_contain_text("its agent has not joined yet")
    expect(east).to_contain_text("No services on this instance yet")
    snap(page, "instances-cluster")

    # Removed, it is gone from the page at its next refresh (a reload here).
    with daemon.api() as api:
        assert api.delete("/instances/east").status_code == 200
    page.reload()
    expect(page.locator('[data-instance="local"]')).to_be_visible()
    expect(page.locator('[data-instance="east"]')).to_have_count(0)
