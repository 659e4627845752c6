"""Feedback where the person is looking, env vars on the Settings page, and a rollback that
asks first."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import (
    PHONE,
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


def test_on_a_phone_the_settings_page_shows_each_result_where_its_button_is(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    port = free_port()
    deploy(daemon, "web", app_repo(tmp_path / "repo"), port=port)
    page.set_viewport_size(PHONE)
    sign_in(page, daemon, "/services/web/settings")
    expect(page.locator("#status-badge")).to_have_text("running")
    expect(page.get_by_label("Run command")).not_to_have_value("")

    # Settings: "Saved" shows up next to the button, not at the top of the long form.
    page.get_by_label("Build command").fill("echo building again")
    page.get_by_role("button", name="Save settings", exact=True).click()
    saved = page.locator("#settings-message")
    expect(saved).to_contain_text("Saved")
    expect(saved).to_be_in_viewport()

    # The environment is on the same page, saved on its own.
    expect(page.get_by_role("heading", name="Environment")).to_be_visible()
    page.get_by_label("Name").fill("GREETING")
    page.get_by_label("Value").fill("bonjour")
    page.get_by_label("Restart the service now").check()
    page.get_by_role("button", name="Save variable", exact=True).click()
    env_notice = page.locator("#env-message")
    expect(env_notice).to_contain_text("Saved GREETING")
    expect(env_notice).to_be_in_viewport()
    expect(page.locator('tr[data-key="GREETING"]')).to_contain_text("bonjour")
    assert fetch(port, "/env/GREETING") == "bonjour"
    # Saving a variable did not touch the settings waiting for the next deploy.
    expect(page.get_by_label("Build command")).to_have_value("echo building again")
    snap(page, "settings-with-environment")

    # "Redeploy now" is at the bottom: the deploy it starts is brought into view.
    page.get_by_role("button", name="Redeploy now", exact=True).click()
    progress = page.locator("#deploy-progress")
    expect(progress).to_contain_text("deployment 2")
    expect(progress.get_by_role("heading", level=2)).to_be_in_viewport()
    expect(page.locator("#deploy-result")).to_contain_text("web is deployed")
    expect(page.locator("#deploy-output")).to_contain_text("building again")


def test_the_environment_tab_stays_as_a_shortcut(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    deploy(daemon, "web", app_repo(tmp_path / "repo"), port=free_port())
    sign_in(page, daemon, "/services/web/environment")
    page.get_by_label("Name").fill("LEVEL")
    page.get_by_label("Value").fill("info")
    page.get_by_role("button", name="Save variable", exact=True).click()
    expect(page.locator("#env-message")).to_contain_text("Saved LEVEL")
    expect(page.locator('tr[data-key="LEVEL"]')).to_contain_text("info")
    expect(page.get_by_role("button", name="Save settings")).to_have_count(0)
    page.get_by_role("link", name="Settings").click()
    expect(page.locator('tr[data-key="LEVEL"]')).to_contain_text("info")


def test_rollback_asks_for_confirmation_first(page: Page, daemon: Daemon, tmp_path: Path) -> None:
    repo = app_repo(tmp_path / "repo")
    port = free_port()
    deploy(daemon, "web", repo, port=port)
    sign_in(page, daemon, "/services/web/deployments")
    expect(page.locator('tr[data-deployment="1"]')).to_contain_text("active")
    commit(repo, {"VERSION": "v2\n"}, "version v2")
    deploy(daemon, "web", repo, port=port)
    second = page.locator('tr[data-deployment="2"]')
    expect(second).to_contain_text("active")
    assert fetch(port) == "hello v2"

    first = page.locator('tr[data-deployment="1"]')
    first.get_by_role("button", name="Rollback", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Roll back web?")
    expect(dialog).to_contain_text("from deployment #2 to the release of deployment #1")
    snap(page, "rollback-dialog")
    # Cancel changes nothing.
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(second).to_contain_text("active")
    assert fetch(port) == "hello v2"
    with daemon.api() as api:
        assert len(api.get("/services/web/deployments").json()) == 2

    first.get_by_role("button", name="Rollback", exact=True).click()
    dialog.get_by_role("button", name="Roll back to #1").click()
    expect(page.locator("#deployments-error")).to_contain_text("Rolling back to deployment 1")
    # The rollback is a deployment of its own, running the first one's release.
    rollback = page.locator('tr[data-deployment="3"]')
    expect(rollback).to_contain_text("rollback to #1")
    expect(rollback).to_contain_text("active")
    expect(first.get_by_role("button", name="Rollback")).to_have_count(0)
    expect(second.get_by_role("button", name="Rollback")).to_be_visible()
    assert fetch(port) == "hello v1"
