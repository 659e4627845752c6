"""Accessibility checked in the browser: axe-core on every page at both widths, the login
page's heading, and a tab's focus ring that is drawn whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.dashboard.conftest import DESKTOP, PHONE, Daemon, app_repo, deploy, free_port, sign_in

pytestmark = pytest.mark.slow

AXE = Path(__file__).parent / "axe" / "axe.min.js"
"""axe-core, vendored with its licence (see axe/README.md)."""

BLOCKING = ("serious", "critical")


@pytest.fixture
def checked(browser: Browser, daemon: Daemon) -> Iterator[BrowserContext]:
    """A browser context whose pages may take axe's script (injected inline, which the
    dashboard's Content-Security-Policy rightly refuses; other tests check that policy)."""
    context = browser.new_context(base_url=daemon.url, viewport=DESKTOP, bypass_csp=True)
    try:
        yield context
    finally:
        context.close()


def axe_problems(page: Page) -> list[str]:
    """The serious and critical violations axe finds on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, { resultTypes: ['violations'] })"
    )
    problems = []
    for violation in result["violations"]:
        if violation["impact"] in BLOCKING:
            targets = [json.dumps(node["target"]) for node in violation["nodes"]][:5]
            problems.append(f"{violation['id']} ({violation['impact']}): {', '.join(targets)}")
    return problems


def test_axe_finds_no_serious_violation_on_any_page_at_either_width(
    checked: BrowserContext, daemon: Daemon, tmp_path: Path
) -> None:
    page = checked.new_page()
    page.goto("/services")
    found: dict[str, list[str]] = {}

    def check(name: str) -> None:
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(viewport)
            problems = axe_problems(page)
            if problems:
                found[f"{name} at {label} width"] = problems
        page.set_viewport_size(DESKTOP)

    check("login")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    check("login with an error")
    sign_in(page, daemon)
    expect(page.get_by_role("heading", name="No services yet")).to_be_visible()
    check("services, empty")

    repo = app_repo(tmp_path / "repo")
    deploy(daemon, "web", repo, port=free_port(), build_cmd="echo built", env_vars={"A": "b"})
    page.goto("/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")
    expect(page.locator('[data-fact="pid"]')).not_to_have_text("—")
    check("service overview")
    waits = {
        "logs": lambda: expect(page.locator("#log-view")).to_contain_text("listening on"),
        "metrics": lambda: expect(page.locator("#metrics-loading")).to_be_hidden(),
        "deployments": lambda: expect(page.locator("#deployments-table")).to_be_visible(),
        "settings": lambda: expect(page.get_by_label("Run command")).not_to_have_value(""),
        "environment": lambda: expect(page.locator('tr[data-key="A"]')).to_be_visible(),
    }
    for tab, ready in waits.items():
        page.goto(f"/services/web/{tab}")
        ready()
        check(f"service {tab}")
    page.goto("/services/web")
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("dialog")).to_be_visible()
    check("delete dialog")

    page.goto("/services")
    expect(page.locator('tr[data-service="web"] [data-cell="status"]')).to_have_text("running")
    check("services")
    page.goto("/new")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_role("alert")).to_be_visible()
    check("new service, with an error")
    page.goto("/instances")
    expect(page.locator('[data-instance="local"]')).to_contain_text("web")
    check("instances")
    page.goto("/services/nothing-here")
    check("missing service")
    assert not found, json.dumps(found, indent=1)


def test_the_login_page_has_a_level_one_heading(page: Page, daemon: Daemon) -> None:
    page.goto("/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_a_focused_tab_shows_its_whole_focus_ring(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    deploy(daemon, "web", app_repo(tmp_path / "repo"), port=free_port())
    sign_in(page, daemon, "/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")
    tab = page.get_by_role("navigation", name="Service").get_by_role("link", name="Overview")
    # Reach it with the keyboard, as a keyboard user does.
    for _ in range(40):
        page.keyboard.press("Tab")
        if tab.evaluate("el => el === document.activeElement"):
            break
    expect(tab).to_be_focused()
    # The ring (outline width plus offset around the link) lies inside the tab bar's
    # visible box, which clips whatever overflows it.
    inside = tab.evaluate(
        """el => {
            const style = getComputedStyle(el);
            const reach = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
            const ring = el.getBoundingClientRect();
            const bar = el.closest(".tabs");
            const box = bar.getBoundingClientRect();
            const edge = getComputedStyle(bar);
            const px = (name) => parseFloat(edge[name]);
            return style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2
                && ring.top - reach >= box.top + px("borderTopWidth")
                && ring.left - reach >= box.left + px("borderLeftWidth")
                && ring.bottom + reach <= box.bottom - px("borderBottomWidth")
                && ring.right + reach <= box.right - px("borderRightWidth");
        }"""
    )
    assert inside, "the focus ring of the tab is clipped by the tab bar"
