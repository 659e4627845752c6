"""Status people can trust: old tabs and ended sessions say so, an unreachable daemon shows no
stale status, a failed service shows why, and a deploy shows which release serves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import (
    Daemon,
    app_repo,
    deploy,
    fetch,
    free_port,
    sign_in,
    snap,
)
from tests.helpers import commit, make_repo

pytestmark = pytest.mark.slow


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_an_old_tab_gets_a_page_saying_its_form_expired_never_raw_json(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    deploy(daemon, "web", app_repo(tmp_path / "repo"), port=free_port())
    sign_in(page, daemon, "/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")

    # Another tab signs out and in again: the first tab's forms carry the old session's token.
    other = page.context.new_page()
    other.goto("/services")
    sign_out(other)
    other.get_by_label("API token").fill(daemon.token)
    other.get_by_role("button", name="Sign in").click()
    expect(other).to_have_url(daemon.url + "/services")

    page.get_by_role("button", name="Restart", exact=True).click()
    expect(page.locator("#action-message")).to_contain_text("This page has expired")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("This form has expired")
    expect(page.locator("body")).not_to_contain_text('"error"')
    expect(page.locator("body")).to_contain_text("Nothing was changed")
    snap(page, "form-expired")
    page.get_by_role("link", name="Back to the page").click()
    expect(page).to_have_url(daemon.url + "/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")


def test_a_session_ended_in_another_tab_says_so_on_the_next_action(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    deploy(daemon, "web", app_repo(tmp_path / "repo"), port=free_port())
    sign_in(page, daemon, "/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")
    other = page.context.new_page()
    other.goto("/services")
    sign_out(other)

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Your session has ended")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    snap(page, "session-ended")
    with daemon.api() as api:
        assert api.get("/services/web").json()["status"] == "running"
    page.get_by_label("API token").fill(daemon.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(daemon.url + "/services/web")


def test_with_the_daemon_unreachable_badges_say_reconnecting_not_the_last_status(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    deploy(daemon, "web", app_repo(tmp_path / "repo"), port=free_port())
    sign_in(page, daemon)
    row = page.locator('tr[data-service="web"]')
    expect(row.locator('[data-cell="status"]')).to_have_text("running")
    service_page = page.context.new_page()
    service_page.goto("/services/web")
    expect(service_page.locator("#status-badge")).to_have_text("running")
    for tab in (page, service_page):
        expect(tab.locator("#connection")).to_have_attribute("data-state", "live")

    assert daemon.process is not None
    daemon.process.kill()  # unreachable, as after a crash: nothing says goodbye
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    expect(row.locator('[data-cell="status"]')).to_have_text("reconnecting")
    expect(row.locator('[data-cell="health"]')).to_have_text("unknown")
    expect(service_page.locator("#status-badge")).to_have_text("reconnecting")
    expect(service_page.locator("#health-badge")).to_have_text("unknown")
    status_fact = service_page.locator('[data-fact="status"]')
    expect(status_fact).to_have_text("unknown (reconnecting)")
    snap(page, "services-unreachable")
    snap(service_page, "service-unreachable")

    daemon.stop()
    daemon.start()
    expect(row.locator('[data-cell="status"]')).to_have_text("running")
    expect(service_page.locator("#status-badge")).to_have_text("running")
    expect(status_fact).to_have_text("running")


CRASHER = """\
import sys
print("starting the crasher", flush=True)
print("boom: the config file is missing", file=sys.stderr, flush=True)
sys.exit(3)
"""


def test_a_failed_service_shows_its_crash_output_and_a_link_to_its_logs(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "crasher", {"crash.py": CRASHER})
    deploy(daemon, "crasher", repo, run_cmd=f"{sys.executable} crash.py")
    sign_in(page, daemon, "/services/crasher")
    # It gives up after its restart budget (seconds of backoff).
    expect(page.locator("#status-badge")).to_have_text("failed", timeout=120_000)
    crash = page.locator("#crash")
    expect(crash).to_be_visible()
    expect(crash.locator("#crash-output")).to_contain_text("boom: the config file is missing")
    expect(crash.locator("#crash-output .stderr").last).to_contain_text("boom")
    snap(page, "service-failed")
    crash.get_by_role("link", name="Open the full log in the Logs tab").click()
    expect(page).to_have_url(daemon.url + "/services/crasher/logs")
    expect(page.locator("#log-view")).to_contain_text("boom: the config file is missing")


def test_while_a_deploy_runs_the_header_and_list_say_which_release_serves(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    port = free_port()
    deploy(daemon, "web", repo, port=port)
    sign_in(page, daemon, "/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")
    expect(page.locator("#serving")).to_have_text("")
    # Its URL is a link, on the host this page came from.
    link = page.locator("#service-url").get_by_role("link")
    expect(link).to_have_attribute("href", f"http://127.0.0.1:{port}")

    # The next build waits for a file this test creates: the deploy is in progress meanwhile.
    gate = tmp_path / "go"
    commit(repo, {"VERSION": "v2\n"}, "version v2")
    wait = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    deploy(daemon, "web", repo, port=port, build_cmd=wait, wait=False)
    expect(page.locator("#serving")).to_have_text("deploying #2, #1 serves")
    page.goto("/services")
    row = page.locator('tr[data-service="web"] [data-cell="status"]')
    expect(row).to_contain_text("deploying #2, #1 serves")
    snap(page, "services-deploying")
    assert fetch(port) == "hello v1"

    gate.touch()
    expect(row).not_to_contain_text("serves")
    expect(row).to_have_text("running")
    assert fetch(port) == "hello v2"
