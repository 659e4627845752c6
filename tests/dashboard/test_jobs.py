"""A scheduled job in the browser: its next run, its last runs, and Run now."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Daemon, deploy, sign_in, snap

pytestmark = pytest.mark.slow


def test_a_job_shows_its_next_run_and_runs_now_from_the_overview(
    page: Page, daemon: Daemon, tmp_path: Path
) -> None:
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "job.sh").write_text('echo "report for run $DPLOYR_RUN"\n')
    deploy(
        daemon,
        "report",
        folder,
        run_cmd="sh job.sh",
        restart=None,
        job={"schedule": "0 3 * * *", "timezone": "Europe/Berlin"},
    )
    sign_in(page, daemon, "/services/report")
    panel = page.get_by_role("region", name="Runs")
    expect(panel).to_contain_text("0 3 * * * (Europe/Berlin)")
    expect(page.locator("#job-next")).not_to_have_text("—")
    expect(panel).to_contain_text("No runs yet.")

    panel.get_by_role("button", name="Run now").click()
    expect(panel).to_contain_text("Run 1 started.")
    row = page.locator('#runs-rows tr[data-run="1"]')
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("manual")
    expect(row).to_contain_text("Exited with code 0.")
    expect(page.locator("#health-badge")).to_have_text("healthy")
    snap(page, "job-runs")

    # Between runs a job is stopped, yet scheduled: Stop ends the schedule.
    expect(page.locator("#status-badge")).to_have_text("stopped")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#job-next")).to_have_text("not scheduled (stopped)")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#job-next")).not_to_have_text("not scheduled (stopped)")

    with daemon.api() as api:
        lines = api.get("/services/report/runs/1/logs").json()["lines"]
    assert "report for run 1" in [line["line"] for line in lines]
