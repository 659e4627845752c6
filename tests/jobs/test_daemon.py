"""Jobs on a real daemon: a ``kill -9`` across a due time, then the catch-up, once; a run
recorded ahead of its due time by a daemon that died is never run.

The daemon runs as ``dployr up`` in a subprocess. To put a due time between two daemons
without waiting for the calendar, the second and third daemons read a wall clock set
ahead (the job runner's clock seam, set before the command line runs): to them, the
machine was down past the due time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dployr.daemon.paths import DataDir
from dployr.store.store import Store
from tests.faults.test_escape import warden_of
from tests.helpers import Daemon, wait_gone
from tests.jobs.helpers import job_folder

AHEAD = """
import sys, time
from dployr.engine.jobs.runner import JobRunner
ahead = float(sys.argv.pop(1))
JobRunner.wall = staticmethod(lambda: time.time() + ahead)
from dployr.cli import main
main()
"""


def ahead_daemon(data_dir: Path, ahead: float) -> Daemon:
    """A daemon whose jobs read a wall clock ``ahead`` seconds in the future."""
    return Daemon(data_dir, entry=("-c", AHEAD, str(ahead)))


async def kill9(daemon: Daemon) -> None:
    """``kill -9`` the daemon, and wait until its warden has killed what it ran.

    (A daemon started while the killed one's warden still cleans up can have the cgroup
    of a run it just started removed under it: the warden empties the instance's cgroups.)
    """
    warden = warden_of(daemon)
    await daemon.kill9()
    await wait_gone([warden])


@pytest.mark.slow
async def test_a_kill_9_across_a_due_time_catches_up_once(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    script = (
        f'echo "run $DPLOYR_RUN" >> {ran}\necho "working on run $DPLOYR_RUN"\nexec sleep 100000\n'
    )
    folder = job_folder(tmp_path / "app", script)
    # Due 10 minutes from now: the first daemon never sees it come.
    due = datetime.fromtimestamp((int(time.time()) // 60 + 10) * 60, UTC)
    schedule = f"{due.minute} {due.hour} * * *"
    data_dir = tmp_path / "data"
    first = ahead_daemon(data_dir, 0)
    await first.start()
    try:
        async with first.client() as api:
            reply = await api.post(
                "/services/nightly/deploy",
                json={
                    "remote": str(folder),
                    "run_cmd": "sh job.sh",
                    "job": {"schedule": schedule, "starting_deadline": 3600},
                },
            )
            assert reply.status_code == 202, reply.text
            await first.wait_log("nightly", "deploy 1: succeeded")
            job = (await api.get("/services/nightly/job")).json()
            assert job["next_run"] == due.timestamp()
            assert (await api.get("/services/nightly/runs")).json() == []
    finally:
        await kill9(first)
    assert not ran.exists()

    # The machine is back 11 minutes later: the due time passed while it was down.
    second = ahead_daemon(data_dir, 11 * 60)
    await second.start()
    try:
        # Caught up while the daemon started, before its API answered.
        async with second.client() as api:
            runs = (await api.get("/services/nightly/runs")).json()
        assert [(r["id"], r["trigger"], r["status"]) for r in runs] == [(1, "catch-up", "running")]
        assert runs[0]["scheduled_at"] == due.timestamp()
        await second.wait_log("nightly", "working on run 1")
    finally:
        await kill9(second)  # during the caught-up run

    third = ahead_daemon(data_dir, 12 * 60)
    await third.start()
    try:
        async with third.client() as api:
            runs = (await api.get("/services/nightly/runs")).json()
            # Never twice: the run the daemon died during failed, and nothing ran again.
            assert [(r["id"], r["trigger"], r["status"]) for r in runs] == [
                (1, "catch-up", "failed")
            ]
            assert runs[0]["message"] == "the daemon stopped during the run"
            job = (await api.get("/services/nightly/job")).json()
            assert job["next_run"] == due.timestamp() + 86400
    finally:
        await third.stop()
    assert ran.read_text() == "run 1\n"


@pytest.mark.slow
async def test_a_run_cut_by_a_kill_9_keeps_only_its_own_lines(tmp_path: Path) -> None:
    # Two runs side by side, so the log holds the second's lines among the first's; the
    # daemon dies during both. Each run's lines are its own, and the line that says why.
    folder = job_folder(tmp_path / "app", 'echo "working on run $DPLOYR_RUN"\nexec sleep 100000\n')
    data_dir = tmp_path / "data"
    first = Daemon(data_dir)
    await first.start()
    try:
        async with first.client() as api:
            reply = await api.post(
                "/services/etl/deploy",
                json={
                    "remote": str(folder),
                    "run_cmd": "sh job.sh",
                    "job": {"concurrency": "allow"},
                },
            )
            assert reply.status_code == 202, reply.text
            await first.wait_log("etl", "deploy 1: succeeded")
            for number in (1, 2):
                assert (await api.post("/services/etl/runs")).status_code == 202
                await first.wait_log("etl", f"working on run {number}")
    finally:
        await kill9(first)

    second = Daemon(data_dir)
    await second.start()
    try:
        async with second.client() as api:
            runs = (await api.get("/services/etl/runs")).json()
            assert [(r["id"], r["status"]) for r in runs] == [(2, "failed"), (1, "failed")]
            for number in (1, 2):
                path = f"/services/etl/runs/{number}/logs"
                lines = [(x["stream"], x["line"]) for x in (await api.get(path)).json()["lines"]]
                assert lines[0][0] == "system"
                assert lines[0][1].startswith(f"run {number} started")
                assert lines[1:] == [
                    ("stdout", f"working on run {number}"),
                    ("system", f"run {number} failed: the daemon stopped during the run"),
                ]
    finally:
        await second.stop()


@pytest.mark.slow
async def test_a_run_recorded_ahead_whose_daemon_died_before_its_time_never_runs(
    tmp_path: Path,
) -> None:
    # The start gate records a run just before its due time, without a start time, and
    # lets it go at it; a daemon killed in between leaves the row as written here (its
    # held process exits unrun with the daemon). The next daemon records it failed, and
    # runs nothing: that due time is not caught up (never twice).
    ran = tmp_path / "ran"
    folder = job_folder(tmp_path / "app", f'echo "run $DPLOYR_RUN" >> {ran}\n')
    data_dir = tmp_path / "data"
    first = Daemon(data_dir)
    await first.start()
    try:
        async with first.client() as api:
            reply = await api.post(
                "/services/nightly/deploy",
                json={"remote": str(folder), "run_cmd": "sh job.sh", "job": {}},
            )
            assert reply.status_code == 202, reply.text
            await first.wait_log("nightly", "deploy 1: succeeded")
    finally:
        await first.stop()
    due = float(int(time.time()) // 60 * 60)
    with Store.open(DataDir(data_dir).db) as store:
        store.add_due_runs([("nightly", 1)], scheduled_at=due, started_at=None)

    second = Daemon(data_dir)
    await second.start()
    try:
        async with second.client() as api:
            runs = (await api.get("/services/nightly/runs")).json()
            assert [(r["id"], r["trigger"], r["status"], r["scheduled_at"]) for r in runs] == [
                (1, "schedule", "failed", due)
            ]
            assert runs[0]["message"] == "the daemon stopped as the run was starting"
            lines = (await api.get("/services/nightly/runs/1/logs")).json()["lines"]
            assert [x["line"] for x in lines] == [
                "run 1 failed: the daemon stopped as the run was starting"
            ]
    finally:
        await second.stop()
    assert not ran.exists()
