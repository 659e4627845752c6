"""Signing in and out, the session cookie, CSRF and the Content-Security-Policy."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Daemon, sign_in, snap

pytestmark = pytest.mark.slow


def test_login_and_logout(page: Page, daemon: Daemon) -> None:
    response = page.goto("/services")
    assert response is not None
    expect(page).to_have_url(f"{daemon.url}/login?next=/services")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    snap(page, "login")

    page.get_by_label("API token").fill("dployr_not-a-real-token")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("That token is not valid")
    snap(page, "login-error")

    page.get_by_label("API token").fill(daemon.token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{daemon.url}/services")
    expect(page.get_by_role("heading", name="No services yet")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", re.compile("live|online"))
    snap(page, "services-empty")

    (cookie,) = page.context.cookies()
    assert cookie["name"] == "dployr_session"
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # plain HTTP here; Secure is set over TLS
    assert daemon.token not in cookie["value"]

    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(f"{daemon.url}/login")
    assert page.context.cookies() == []
    page.goto("/instances")
    expect(page).to_have_url(f"{daemon.url}/login?next=/instances")


def test_a_copied_cookie_stops_working_after_logout(page: Page, daemon: Daemon) -> None:
    sign_in(page, daemon)
    (cookie,) = page.context.cookies()
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(f"{daemon.url}/login")
    page.context.add_cookies([cookie])
    page.goto("/services")
    expect(page).to_have_url(f"{daemon.url}/login?next=/services")


def test_an_action_without_the_csrf_token_is_refused(page: Page, daemon: Daemon) -> None:
    sign_in(page, daemon)
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf

    # The session cookie alone reads (GET) but does not act.
    assert page.request.get(f"{daemon.url}/api/v1/services").status == 200
    refused = page.request.post(f"{daemon.url}/api/v1/services/web/stop")
    assert refused.status == 403
    assert refused.json()["error"]["code"] == "csrf"
    wrong = page.request.post(
        f"{daemon.url}/api/v1/services/web/stop", headers={"X-CSRF-Token": "guess"}
    )
    assert wrong.status == 403
    logout = page.request.post(f"{daemon.url}/logout", form={"csrf_token": "guess"})
    assert logout.status == 403

    # With the page's token the request gets through to the API (which has no such service).
    allowed = page.request.post(
        f"{daemon.url}/api/v1/services/web/stop", headers={"X-CSRF-Token": csrf}
    )
    assert allowed.status == 404
    # And without any session, neither works.
    page.context.clear_cookies()
    assert page.request.get(f"{daemon.url}/api/v1/services").status == 401
