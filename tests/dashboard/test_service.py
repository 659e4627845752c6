"""A service's life from the browser: deploy it, read each tab, act on it, delete it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.dashboard.conftest import (
    Daemon,
    app_repo,
    deploy,
    fetch,
    free_port,
    sign_in,
    snap,
)
from tests.helpers import commit

pytestmark = pytest.mark.slow


def nav(page: Page, name: str) -> Locator:
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def open_running(page: Page, daemon: Daemon, name: str, tab: str = "") -> None:
    """Sign in on a service's page and wait until it runs."""
    sign_in(page, daemon, f"/services/{name}" + (f"/{tab}" if tab else ""))
    expect(page.locator("#status-badge")).to_have_text("running")


def test_a_new_service_deploys_from_the_form_with_its_build_output_live(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    sign_in(page, daemon)
    page.get_by_role("link", name="Deploy a service").click()
    expect(page).to_have_url(f"{daemon.url}/new")
    snap(page, "new-service")

    # Errors are shown in place, in words.
    page.get_by_label("Name").fill("Not A Name")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("The name must be")
    expect(page.get_by_label("Name")).to_be_focused()

    page.get_by_label("Name").fill("web")
    page.get_by_label("Description").fill("The test app")
    page.get_by_label("Repository").fill(str(repo))
    page.get_by_label("Build command").fill("echo compiling the app && echo build done")
    page.get_by_label("Run command").fill(f"{sys.executable} app.py")
    page.get_by_label("Port", exact=False).first.fill(str(free_port()))
    page.get_by_label("Variables").fill("GREETING=hello\n")
    page.get_by_label("Secrets").fill("API_KEY=s3cret-value\n")
    page.get_by_role("button", name="Deploy", exact=True).click()

    progress = page.locator("#deploy-progress")
    expect(progress.get_by_role("heading", level=2)).to_contain_text("Deploying web")
    expect(page.locator("#deploy-steps")).to_contain_text("Fetching")
    expect(page.locator("#deploy-output")).to_contain_text("compiling the app")
    expect(page.locator("#deploy-output")).to_contain_text("build done")
    expect(page.locator("#deploy-result")).to_contain_text("web is deployed")
    snap(page, "new-service-deployed")
    expect(page).to_have_url(f"{daemon.url}/services/web")
    expect(page.locator("#status-badge")).to_have_text("running")

    # The list shows it too.
    nav(page, "Services").click()
    row = page.locator('tr[data-service="web"]')
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("local")
    snap(page, "services")

    nav(page, "Instances").click()
    expect(page.locator('[data-instance="local"]')).to_contain_text("web")
    snap(page, "instances")


@pytest.fixture
def web(daemon: Daemon, tmp_path: Path) -> int:
    """A running service "web" of the test app (deployed through the API); its port."""
    repo = app_repo(tmp_path / "repo")
    port = free_port()
    deploy(daemon, "web", repo, port=port, build_cmd="echo building v1", description="Test app")
    return port


def test_the_overview_and_logs_tabs(page: Page, daemon: Daemon, web: int) -> None:
    port = web
    open_running(page, daemon, "web")

    # Overview
    facts = page.locator("#facts")
    expect(facts.locator('[data-fact="pid"]')).to_have_text(re.compile(r"^\d+$"))
    expect(facts.locator('[data-fact="deployment"]')).to_have_text("#1")
    expect(facts.locator('[data-fact="port"]')).to_have_text(str(port))
    expect(facts.locator('[data-fact="uptime"]')).to_have_text(re.compile(r"\d+ s"))
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_enabled()
    snap(page, "service-overview")

    # Logs: history, then a live line.
    page.get_by_role("link", name="Logs").click()
    view = page.locator("#log-view")
    expect(view).to_contain_text("listening on")
    expect(view).to_contain_text("building v1")
    expect(page.locator("#log-status")).to_contain_text("live")
    assert fetch(port, "/live-line") == "hello v1"
    expect(view).to_contain_text("request /live-line")
    assert fetch(port, "/warn") == "warned"
    expect(view.locator(".log-row.stderr")).to_contain_text("something went wrong")
    # Filter by stream.
    page.get_by_label("stdout").uncheck()
    expect(view).not_to_contain_text("request /live-line")
    expect(view).to_contain_text("something went wrong")
    page.get_by_label("stdout").check()
    expect(view).to_contain_text("request /live-line")
    # Pause: new lines wait until resumed.
    page.get_by_role("button", name="Pause", exact=True).click()
    fetch(port, "/while-paused")
    expect(page.locator("#log-status")).to_contain_text("1 new")
    expect(view).not_to_contain_text("request /while-paused")
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(view).to_contain_text("request /while-paused")
    snap(page, "service-logs")


def test_the_metrics_and_deployments_tabs(page: Page, daemon: Daemon, web: int) -> None:
    open_running(page, daemon, "web")
    # Metrics (a chart once the daemon records metrics; an empty state until then)
    page.get_by_role("link", name="Metrics").click()
    expect(page.locator("#metrics-loading")).to_be_hidden()
    expect(page.locator("#metrics-charts")).to_be_visible()  # samples every 0.5 s
    snap(page, "service-metrics")

    # Deployments, with the build log
    page.get_by_role("link", name="Deployments").click()
    first = page.locator('tr[data-deployment="1"]')
    expect(first).to_contain_text("succeeded")
    expect(first).to_contain_text("active")
    first.get_by_role("button", name="Build log", exact=True).click()
    expect(page.locator("#build-log-1")).to_contain_text("building v1")
    snap(page, "service-deployments")


def test_the_settings_tab_saves_for_the_next_deploy_and_restarts_nothing(
    page: Page, daemon: Daemon, web: int
) -> None:
    port = web
    open_running(page, daemon, "web")
    expect(page.locator('[data-fact="pid"]')).to_have_text(re.compile(r"^\d+$"))
    pid = page.locator('[data-fact="pid"]').inner_text()
    # Settings: saved, applies at the next deploy, restarts nothing.
    page.get_by_role("link", name="Settings").click()
    run = page.get_by_label("Run command")
    expect(run).to_have_value(f"{sys.executable} app.py")
    page.get_by_label("Description").fill("The test app, described")
    new_port = free_port()
    page.get_by_label("Port").fill(str(new_port))
    page.get_by_role("button", name="Save settings", exact=True).click()
    message = page.locator("#settings-message")
    expect(message).to_contain_text("apply at the next deploy")
    expect(message).to_contain_text("nothing was restarted")
    expect(message).to_contain_text("port")
    expect(page.get_by_role("button", name="Redeploy now", exact=True)).to_be_visible()
    page.get_by_label("Port").fill("99999")
    page.get_by_role("button", name="Save settings", exact=True).click()
    expect(message).to_contain_text("Not saved")
    snap(page, "service-settings")
    page.get_by_role("link", name="Overview").click()
    expect(page.locator('[data-fact="pid"]')).to_have_text(pid)
    assert fetch(port) == "hello v1"


def test_the_environment_tab_keeps_secrets_write_only(page: Page, daemon: Daemon, web: int) -> None:
    port = web
    open_running(page, daemon, "web")
    # Environment: a variable and a secret; the secret never comes back.
    page.get_by_role("link", name="Environment").click()
    page.get_by_label("Name").fill("GREETING")
    page.get_by_label("Value").fill("bonjour")
    page.get_by_role("button", name="Save variable", exact=True).click()
    env_message = page.locator("#env-message")
    expect(env_message).to_contain_text("applies at the next start, restart or deploy")
    expect(page.locator('tr[data-key="GREETING"]')).to_contain_text("bonjour")
    page.get_by_label("Name").fill("API_KEY")
    page.get_by_label("Secret (write-only").check()
    expect(page.get_by_label("Value")).to_have_attribute("type", "password")
    page.get_by_label("Value").fill("s3cret-value")
    page.get_by_label("Restart the service now").check()
    page.get_by_role("button", name="Save variable", exact=True).click()
    expect(env_message).to_contain_text("applies now")
    secret_row = page.locator('tr[data-key="API_KEY"]')
    expect(secret_row).to_contain_text("••••••••")
    expect(secret_row).to_contain_text("secret")
    assert "s3cret-value" not in page.content()
    assert fetch(port, "/env/GREETING") == "bonjour"
    assert fetch(port, "/env/API_KEY") == "s3cret-value"
    snap(page, "service-environment")


def test_the_buttons_stop_start_restart_redeploy_and_delete(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = app_repo(tmp_path / "repo")
    port = free_port()
    deploy(daemon, "web", repo, port=port)
    open_running(page, daemon, "web")
    status = page.locator("#status-badge")
    pid = page.locator('[data-fact="pid"]')
    expect(pid).to_have_text(re.compile(r"^\d+$"))
    first_pid = pid.inner_text()

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(status).to_have_text("stopped")
    expect(page.locator("#action-message")).to_contain_text("Stopped web")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Restart", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
    expect(pid).to_have_text("—")
    snap(page, "service-stopped")

    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_text("running")
    expect(pid).to_have_text(re.compile(r"^\d+$"))
    started_pid = pid.inner_text()
    assert started_pid != first_pid

    page.get_by_role("button", name="Restart", exact=True).click()
    expect(page.locator("#action-message")).to_contain_text("Restarted web")
    expect(status).to_have_text("running")
    expect(pid).not_to_have_text(started_pid)
    expect(pid).to_have_text(re.compile(r"^\d+$"))

    # Redeploy a new commit: its steps are shown live, then deployment 2 is active.
    app_repo_commit(repo, "v2")
    page.get_by_role("button", name="Redeploy", exact=True).click()
    expect(page.locator("#deploy-progress")).to_contain_text("deployment 2")
    expect(page.locator("#deploy-result")).to_contain_text("web is deployed")
    expect(page.locator('[data-fact="deployment"]')).to_have_text("#2")
    assert fetch(port) == "hello v2"
    snap(page, "service-redeployed")

    roll_back_to_the_first_deployment(page, port)

    # Delete asks first, naming the service.
    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete web?")
    snap(page, "service-delete-dialog")
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(status).to_have_text("running")
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("button", name="Delete web").click()
    expect(page).to_have_url(f"{daemon.url}/services")
    expect(page.get_by_role("status").filter(has_text="Deleted web")).to_be_visible()
    expect(page.get_by_role("heading", name="No services yet")).to_be_visible()
    page.goto("/services/web")
    expect(page.get_by_role("heading")).to_contain_text("No service named")


def roll_back_to_the_first_deployment(page: Page, port: int) -> None:
    """Roll back from the Deployments tab: no rebuild, no downtime."""
    page.get_by_role("link", name="Deployments").click()
    first = page.locator('tr[data-deployment="1"]')
    expect(page.locator('tr[data-deployment="2"]')).to_contain_text("active")
    first.get_by_role("button", name="Rollback", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back to #1").click()
    expect(page.locator("#deployments-error")).to_contain_text(
        "Rolling back to deployment 1 as deployment 3"
    )
    # The rollback is a deployment of its own, running the first one's release.
    third = page.locator('tr[data-deployment="3"]')
    expect(third).to_contain_text("active")
    expect(third).to_contain_text("rollback to #1")
    expect(
        page.locator('tr[data-deployment="2"]').get_by_role("button", name="Rollback")
    ).to_be_visible()
    assert fetch(port) == "hello v1"
    snap(page, "service-rolled-back")
    page.get_by_role("link", name="Overview").click()
    expect(page.locator('[data-fact="deployment"]')).to_have_text("#3")


def app_repo_commit(repo: Path, version: str) -> None:
    commit(repo, {"VERSION": version + "\n"}, f"version {version}")


def test_the_settings_tab_saves_health_options(page: Page, daemon: Daemon, web: int) -> None:
    open_running(page, daemon, "web")
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Kind").select_option("http")
    page.get_by_label("Path").fill("/health")
    page.get_by_label("Interval (s)").fill("2")
    page.get_by_label("Failures before degraded").fill("4")
    page.get_by_label("Restart after N failures").fill("6")
    page.get_by_role("button", name="Save settings", exact=True).click()
    message = page.locator("#settings-message")
    expect(message).to_contain_text("apply at the next deploy")
    expect(message).to_contain_text("health check")
    with daemon.api() as api:
        settings = api.get("/services/web/settings").json()["settings"]
    assert settings["health_check"] == "/health"
    health = settings["health"]
    assert (health["interval"], health["failures"], health["restart_after"]) == (2, 4, 6)
    page.get_by_label("Failures before degraded").fill("0")
    page.get_by_role("button", name="Save settings", exact=True).click()
    expect(message).to_contain_text("Not saved")
    expect(message).to_contain_text("Health failures must be a whole number from 1 to 1000")
