"""A nightly job through the CLI, as a newcomer would use it: deploy, run, runs, logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dployr import blueprint
from dployr.models import ServiceType
from dployr.schedule import JobOptions
from tests.cli.conftest import Daemon, daemon  # noqa: F401 (fixture)
from tests.jobs.helpers import job_folder


@pytest.mark.slow
async def test_a_nightly_job_from_deploy_to_its_logs(daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    folder = job_folder(tmp_path / "report", 'echo "report for $DPLOYR_RUN"\necho "rows: 42"\n')
    out = await daemon.ok(
        "deploy",
        "--name",
        "report",
        "--remote",
        str(folder),
        "--run-cmd",
        "sh job.sh",
        "--schedule",
        "0 3 * * *",
        "--timezone",
        "Europe/Berlin",
        "--timeout",
        "10m",
    )
    assert "report is a job (deployment 1): schedule 0 3 * * * (Europe/Berlin); next run " in out

    out = await daemon.ok("jobs", "run", "report")
    assert "run 1 of report started" in out
    assert "report for 1" in out
    assert "rows: 42" in out
    assert "run 1 succeeded: exited with code 0" in out

    out = await daemon.ok("jobs", "runs", "report")
    assert "next run " in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["1"])
    assert row.split()[1:3] == ["succeeded", "manual"]

    runs = json.loads(await daemon.ok("jobs", "runs", "report", "--json"))
    assert [(r["id"], r["status"], r["exit_code"]) for r in runs] == [(1, "succeeded", 0)]

    out = await daemon.ok("logs", "report", "--run", "1")
    assert "report for 1" in out
    assert "rows: 42" in out

    settings = json.loads(await daemon.ok("settings", "report", "--json"))
    assert settings["settings"]["job"]["timeout"] == 600
    out = await daemon.ok("settings", "report", "--concurrency", "allow")
    assert (
        "  job          0 3 * * * (Europe/Berlin); concurrency allow; timeout 600 s; a missed"
        " run catches up any time late  (waits for the next deploy)"
    ) in out


@pytest.mark.slow
async def test_a_failing_run_exits_1_in_one_line(daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    folder = job_folder(tmp_path / "etl", "echo 'no database' >&2\nexit 4\n")
    await daemon.ok(
        "deploy",
        "--name",
        "etl",
        "--remote",
        str(folder),
        "--run-cmd",
        "sh job.sh",
        "--schedule",
        "@daily",
    )
    result = await daemon.cli("jobs", "run", "etl")
    assert result.code == 1
    assert result.one_line_error() == "error: run 1 of etl failed: exited with code 4"
    assert "no database" in result.out
    bad = await daemon.cli(
        "deploy",
        "--name",
        "etl",
        "--remote",
        str(folder),
        "--run-cmd",
        "sh job.sh",
        "--schedule",
        "0 3 * *",
    )
    assert bad.code == 1
    assert bad.one_line_error().endswith(
        "must have 5 fields (minute hour day-of-month month day-of-week), such as '0 3 * * *'"
    )
    missing = await daemon.cli("logs", "etl", "--run", "9")
    assert missing.code == 1
    assert missing.one_line_error() == "error: etl has no run 9"


def test_the_readme_s_nightly_job_blueprint_reads_as_a_job() -> None:
    plan = blueprint.load(Path(__file__).parents[2] / "examples" / "nightly" / "dployr.toml")
    assert plan.name == "nightly-report"
    assert plan.settings.type is ServiceType.JOB
    assert plan.settings.job == JobOptions(
        schedule="0 3 * * *", timezone="Europe/Berlin", timeout=600, starting_deadline=7200
    )
