"""The services list with 50+ services: order, search, sort, one metrics request, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, expect

from tests.dashboard.conftest import (
    WAIT,
    Daemon,
    app_repo,
    deploy,
    deploy_over,
    free_port,
    sign_in,
    snap,
)
from tests.helpers import make_repo

pytestmark = pytest.mark.slow

WORKERS = 51
"""Cheap portless services (``sleep``), plus one web app with a port: 52 in all."""

METRICS_EVERY = 15_000
"""How often the list asks for the services' metrics, in ms (web/static/js/services.js)."""


def shown(page: Page) -> list[str]:
    """The services in the list, in the order shown."""
    rows = page.locator("tr[data-service]")
    return list(rows.evaluate_all("rows => rows.map(r => r.dataset.service)"))


def test_the_list_of_52_services_is_ordered_searchable_and_costs_one_metrics_request(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "worker", {"README": "a worker that waits\n"})
    # All deploys at once, as a script would do it; then wait for each to be over.
    started = [
        (f"s{number}", deploy(daemon, f"s{number}", repo, run_cmd="sleep 3600", wait=False))
        for number in range(1, WORKERS + 1)
    ]
    web_port = free_port()
    started.append(("web", deploy(daemon, "web", app_repo(tmp_path / "web"), port=web_port)))
    for name, number in started:
        deploy_over(daemon, name, number)

    requests: list[str] = []

    def seen(request: Request) -> None:
        if "/api/v1/" in request.url:
            requests.append(request.url.split("/api/v1", 1)[1])

    page.on("request", seen)
    # The page's timers run on a clock the test can move: the metrics' next refresh is
    # 15 s away, the test jumps there (time flows as usual until then).
    page.clock.install()
    sign_in(page, daemon)
    count = page.locator("#services-count")
    expect(count).to_have_text(f"{WORKERS + 1} services")
    badges = page.locator('[data-cell="status"] .badge')
    expect(badges.filter(has_text="running")).to_have_count(WORKERS + 1, timeout=120_000)

    # Natural order: s2 before s10, and web after every s.
    assert shown(page) == [f"s{n}" for n in range(1, WORKERS + 1)] + ["web"]

    # One request for the metrics of every service, none per service.
    assert requests.count("/metrics/latest") == 1, requests
    assert not [path for path in requests if re.fullmatch(r"/services/[^/]+/metrics.*", path)]
    # The next refresh asks once more, for all of them, and shows what it got.
    with page.expect_request(lambda r: r.url.endswith("/metrics/latest"), timeout=WAIT * 1000):
        page.clock.fast_forward(METRICS_EVERY)
    assert requests.count("/metrics/latest") == 2, requests
    assert not [path for path in requests if re.fullmatch(r"/services/[^/]+/metrics.*", path)]
    web = page.locator('tr[data-service="web"]')
    expect(web).to_contain_text(re.compile(r"\d+(\.\d)? (KiB|MiB)"))

    # The restarts column says what the API says; the URL is a link on this page's host.
    with daemon.api() as api:
        restarts = api.get("/services/web").json()["restarts"]
    expect(web.locator('[data-cell="restarts"]')).to_have_text(str(restarts))
    link = web.get_by_role("link", name=f"http://127.0.0.1:{web_port}")
    expect(link).to_have_attribute("href", f"http://127.0.0.1:{web_port}")
    expect(page.locator('tr[data-service="s1"] [data-cell="url"]')).to_have_text("—")
    snap(page, "services-52")

    # Search by name.
    page.get_by_label("Search by name").fill("s1")
    expect(count).to_have_text(f"11 of {WORKERS + 1} services")
    assert shown(page) == ["s1"] + [f"s{n}" for n in range(10, 20)]
    page.get_by_label("Search by name").fill("nothing-like-it")
    expect(page.get_by_text("No service name matches the search.")).to_be_visible()
    page.get_by_label("Search by name").fill("")
    expect(count).to_have_text(f"{WORKERS + 1} services")

    # Sort by status: a stopped service goes after the running ones.
    with daemon.api() as api:
        assert api.post("/services/s7/stop").status_code == 200
    expect(page.locator('tr[data-service="s7"] [data-cell="status"]')).to_have_text("stopped")
    page.get_by_label("Sort by").select_option("status")
    expect(page.locator("tr[data-service]").last).to_have_attribute("data-service", "s7")
    expect(page.locator("tr[data-service]").first).to_have_attribute("data-service", "s1")
    page.get_by_label("Sort by").select_option("name")
    expect(page.locator("tr[data-service]").nth(6)).to_have_attribute("data-service", "s7")
