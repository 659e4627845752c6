"""The Instances page: every instance of the cluster, connected or not, with its facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import DESKTOP, Daemon, app_repo, deploy, sign_in, snap
from tests.pg import postgres, postgres_url

__all__ = ["postgres", "postgres_url"]  # fixtures, used by name


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
    planes = page.get_by_role("region", name="Control planes")
    expect(planes.locator("[data-answered]")).to_have_text(
        f"This page is served by the control plane at {daemon.url} ({control_plane_id(daemon)})."
    )
    expect(planes.locator("[data-leader]")).to_have_text(
        "It leads the cluster: it is the only one."
    )
    expect(planes.locator("li")).to_have_count(0)
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


def control_plane_id(daemon: Daemon) -> str:
    """The id of the control plane ``daemon`` (as its API says of itself)."""
    with daemon.api() as api:
        (me,) = [p for p in api.get("/control-planes").json() if p["self"]]
    return str(me["id"])


@pytest.mark.slow
def test_the_instances_page_says_which_control_plane_answered_and_which_leads(
    browser: Browser, postgres_url: str, tmp_path: Path
) -> None:
    daemons = []
    context = browser.new_context(viewport=DESKTOP)
    try:
        for name in ("a", "b"):  # A starts first, and leads
            data = tmp_path / name / "data"
            data.mkdir(parents=True)
            daemons.append(Daemon(data, "--database", postgres_url))
            daemons[-1].start()
        a, b = daemons
        a_id, b_id = control_plane_id(a), control_plane_id(b)

        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(b.url + "/instances")
        page.get_by_label("API token").fill(b.token)
        page.get_by_role("button", name="Sign in").click()
        planes = page.get_by_role("region", name="Control planes")
        expect(planes.locator("[data-answered]")).to_have_text(
            f"This page is served by the control plane at {b.url} ({b_id})."
        )
        expect(planes.locator("[data-leader]")).to_have_text(
            f"The control plane at {a.url} ({a_id}) leads the cluster."
        )
        expect(planes.locator(f'[data-plane="{a_id}"]')).to_contain_text("leader")
        expect(planes.locator(f'[data-plane="{b_id}"]')).to_contain_text("(this one)")
        expect(planes.locator(f'[data-plane="{b_id}"] .badge')).to_have_count(0)
        snap(page, "instances-control-planes")

        # A stopped (it leaves the list as it stops), B leads: the page says so within its
        # next refreshes.
        a.stop()
        page.reload()
        expect(planes.locator("[data-leader]")).to_have_text(
            "It leads the cluster: it is the only one."
        )
        expect(planes.locator("li")).to_have_count(0)
        assert errors == []
    finally:
        context.close()
        for daemon in daemons:
            daemon.stop()
