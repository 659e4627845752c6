"""The Instances page: every instance of the cluster, connected or not, with its facts."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import DESKTOP, Daemon, app_repo, deploy, sign_in, snap


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


def test_a_control_plane_that_runs_no_services_says_so(browser: Browser, tmp_path: Path) -> None:
    data = tmp_path / "control-plane"
    data.mkdir()
    daemon = Daemon(data, "--no-local-services")
    daemon.start()
    context = browser.new_context(base_url=daemon.url, viewport=DESKTOP)
    try:
        page = context.new_page()
        sign_in(page, daemon, "/instances")
        local = page.locator('[data-instance="local"]')
        expect(local.locator("[data-state-line]")).to_have_text("Connected. Takes no new services.")
    finally:
        context.close()
        daemon.stop()
