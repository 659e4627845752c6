"""Live data: scrolling back through history, 100,000 lines, metrics, and reconnecting."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Daemon, app_repo, deploy, fetch, free_port, sign_in, snap

pytestmark = pytest.mark.slow


def test_scrolling_up_loads_older_lines_page_by_page(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    deploy(daemon, "web", repo, port=free_port(), env_vars={"START_LINES": "1400"})
    sign_in(page, daemon, "/services/web/logs")
    view = page.locator("#log-view")
    expect(view).to_contain_text("listening on")
    # Open the page again now that the 1,400 lines are history, not live lines.
    page.reload()
    expect(view).to_contain_text("listening on")
    expect(view).to_have_attribute("data-history", "more")
    count = int(view.get_attribute("data-lines") or 0)
    assert count >= 500  # the last 500 lines, and what came since

    # Each scroll to the top loads an older page (500 lines) until the beginning.
    pages = 0
    while view.get_attribute("data-history") != "start":
        assert pages < 10, "scrolling up never reached the beginning of the log"
        view.evaluate("el => { el.scrollTop = 0; }")
        expect(view).not_to_have_attribute("data-lines", str(count))
        count = int(view.get_attribute("data-lines") or 0)
        expect(view).not_to_have_attribute("data-history", "loading")
        pages += 1
    assert pages >= 2
    view.evaluate("el => { el.scrollTop = 0; }")
    expect(view.locator(".log-row.older")).to_have_text("Beginning of the log history")
    expect(view).to_contain_text("deploy 1 started")
    expect(view).to_contain_text("boot line 00000")
    assert count > 1400
    snap(page, "logs-scrolled-back")


def test_the_log_view_stays_responsive_with_100000_lines(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    port = free_port()
    deploy(daemon, "web", repo, port=port)
    sign_in(page, daemon, "/services/web/logs")
    view = page.locator("#log-view")
    expect(view).to_contain_text("listening on")
    expect(page.locator("#log-status")).to_contain_text("live")

    assert fetch(port, "/spam?n=100000") == "spammed 100000"
    expect(view).to_contain_text("spam 099999")
    assert int(view.get_attribute("data-lines") or 0) >= 100_000
    # Only what is on screen is in the page.
    assert view.locator(".log-row").count() < 200

    # Jumping to the middle and back renders at once.
    timing = view.evaluate(
        """el => {
            const start = performance.now();
            el.scrollTop = el.scrollHeight / 2;
            el.dispatchEvent(new Event("scroll"));
            return performance.now() - start;
        }"""
    )
    assert timing < 100
    expect(view).to_contain_text(re.compile(r"spam 04\d{4}|spam 05\d{4}"))
    assert view.locator(".log-row").count() < 200
    # Filtering 100,000 lines is quick too.
    page.get_by_label("stdout").uncheck()
    expect(view).not_to_contain_text("spam 0")
    page.get_by_label("stdout").check()
    page.get_by_role("button", name="Jump to latest").click()
    expect(view).to_contain_text("spam 099999")
    snap(page, "logs-100k")


def test_a_metrics_chart_with_data(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    repo = app_repo(tmp_path / "repo")
    deploy(daemon, "web", repo, port=free_port())
    sign_in(page, daemon, "/services/web/metrics")
    expect(page.locator("#status-badge")).to_have_text("running")
    charts = page.locator("#metrics-charts")
    expect(charts).to_be_visible()
    expect(page.locator("#cpu-chart canvas")).to_be_visible()
    expect(page.locator("#memory-now")).to_contain_text(re.compile(r"now \d"))
    page.get_by_role("button", name="15 min").click()
    expect(page.get_by_role("button", name="15 min")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#memory-chart canvas")).to_be_visible()
    snap(page, "service-metrics-chart")
    page.goto("/services")
    expect(page.locator('tr[data-service="web"]')).to_contain_text(re.compile(r"\d+(\.\d)? MiB"))
    snap(page, "services-with-metrics")


def test_the_dashboard_reconnects_by_itself_when_the_daemon_restarts(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    port = free_port()
    deploy(daemon, "web", repo, port=port)
    sign_in(page, daemon, "/services/web/logs")
    connection = page.locator("#connection")
    view = page.locator("#log-view")
    expect(view).to_contain_text("listening on")
    expect(view).to_contain_text("deploy 1: succeeded")  # what a restart brings back
    expect(connection).to_have_attribute("data-state", re.compile("live|online"))

    daemon.stop()
    expect(connection).to_have_attribute("data-state", "offline")
    expect(connection).to_contain_text("Reconnecting")
    expect(page.locator("#log-status")).to_contain_text("reconnecting")
    snap(page, "reconnecting")

    daemon.start()
    expect(connection).to_have_attribute("data-state", re.compile("live|online"))
    expect(page.locator("#log-status")).to_contain_text("live")
    expect(page.locator("#status-badge")).to_have_text("running")
    # The session survived the restart, and the log feed resumed where it was.
    assert fetch(port, "/after-restart") == "hello v1"
    expect(view).to_contain_text("request /after-restart")
    with httpx.Client() as client:
        assert client.get(daemon.url + "/healthz").status_code == 200
    page.reload()
    expect(page).to_have_url(f"{daemon.url}/services/web/logs")


def test_a_redeploy_counts_the_wait_and_the_logs_show_each_lines_release(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    deploy(daemon, "web", repo, port=free_port(), restart={"min_uptime": 3})
    sign_in(page, daemon, "/services/web")
    page.get_by_role("button", name="Redeploy", exact=True).click()
    # While the new release is waited for, the time so far is shown and grows.
    steps = page.locator("#deploy-steps")
    expect(steps).to_contain_text(re.compile(r"Waiting for it to stay up 3 s: 1 s"))
    expect(steps).to_contain_text(re.compile(r"Waiting for it to stay up 3 s: 2 s"))
    expect(page.locator("#deploy-result")).to_contain_text("web is deployed")
    snap(page, "redeploy-waited")

    page.get_by_role("link", name="Logs").click()
    view = page.locator("#log-view")
    expect(view).to_contain_text("deploy 2: succeeded")
    expect(view.locator(".rl")).to_have_count(0)
    page.get_by_label("release").check()
    # Each line says which deployment's process (or deploy) wrote it.
    expect(view.locator(".log-row", has_text="deploy 2: succeeded").locator(".rl")).to_have_text(
        "#2"
    )
    expect(view.locator(".log-row", has_text="deploy 1: succeeded").locator(".rl")).to_have_text(
        "#1"
    )
    snap(page, "logs-with-releases")
