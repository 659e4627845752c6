"""Runs of a job on a real instance: real processes in real release folders.

Due times are handed to the job's runner directly (the scheduler that would hand them is
tested under trio's autojump clock in test_scheduler.py); what happens then is real.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import psutil
import pytest
import trio

from dployr.models import DeploymentStatus, Health, ServiceStatus, ServiceType
from dployr.protocol.errors import Error
from dployr.protocol.messages import (
    Deploy,
    GetJob,
    GetService,
    ListRuns,
    ReadRunLogs,
    Rollback,
    RunJob,
    Stop,
)
from dployr.schedule import Concurrency, JobOptions, RunStatus, Trigger
from tests.engine.conftest import WAIT, Engine
from tests.jobs.helpers import job_folder, job_settings, runner, runs, wait_run

NIGHTLY = JobOptions(schedule="0 3 * * *", timezone="Europe/Berlin")
LONG = 'echo "started $DPLOYR_RUN"\nexec sleep 100000\n'


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_a_manual_run_is_a_record_with_its_output(engine: Engine, tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "app", 'echo "hello from run $DPLOYR_RUN"\necho oops >&2\n')
    await engine.deploy("report", job_settings(folder, NIGHTLY))
    info = await engine.status("report")
    assert info.status is ServiceStatus.STOPPED  # between runs
    job = await engine.handle.request(GetJob("report"))
    assert job.schedule == "0 3 * * *"
    assert job.next_run is not None
    assert job.next_run > time.time()
    assert engine.instance.services["report"].job is not None

    run = await engine.handle.request(RunJob("report"))
    assert run.id == 1
    assert run.trigger is Trigger.MANUAL
    assert run.scheduled_at is None
    ended = await wait_run(engine, "report", 1)
    assert ended.status is RunStatus.SUCCEEDED
    assert ended.exit_code == 0
    assert ended.signal is None
    assert ended.duration is not None
    assert ended.deployment == 1
    assert (await engine.status("report")).health is Health.HEALTHY

    page = await engine.handle.request(ReadRunLogs("report", 1))
    texts = [(line.stream, line.line) for line in page.lines]
    assert ("stdout", "hello from run 1") in texts
    assert ("stderr", "oops") in texts
    assert texts[0][0] == "system"
    assert texts[0][1].startswith("run 1 started")
    assert texts[-1] == ("system", "run 1 succeeded: exited with code 0")
    listed = await engine.handle.request(ListRuns("report"))
    assert [r.id for r in listed] == [1]


async def test_a_failed_run_degrades_the_job(engine: Engine, tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "app", "echo broken\nexit 3\n")
    await engine.deploy("report", job_settings(folder))
    await engine.handle.request(RunJob("report"))
    ended = await wait_run(engine, "report", 1)
    assert ended.status is RunStatus.FAILED
    assert ended.exit_code == 3
    assert ended.message == "exited with code 3"
    info = await engine.status("report")
    assert info.health is Health.DEGRADED
    assert info.status is ServiceStatus.STOPPED


async def test_forbid_skips_a_due_run_while_one_is_active(engine: Engine, tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "app", LONG)
    await engine.deploy("sync", job_settings(folder, NIGHTLY))
    job = runner(engine, "sync")
    await job.due(1000.0, Trigger.SCHEDULE)
    await wait_run(engine, "sync", 1, RunStatus.RUNNING)
    await engine.wait_status("sync", ServiceStatus.RUNNING)
    await job.due(1060.0, Trigger.SCHEDULE)
    skipped = runs(engine, "sync")[2]
    assert skipped.status is RunStatus.SKIPPED
    assert skipped.scheduled_at == 1060.0
    assert "run 1 still running" in skipped.message
    assert runs(engine, "sync")[1].status is RunStatus.RUNNING
    assert list(job.active) == [1]
    pid = job.active[1].pid
    assert pid is not None
    assert engine.instance.services["sync"].live_pgids() == [pid]  # its CPU and memory
    await engine.handle.request(Stop("sync"))
    stopped = await wait_run(engine, "sync", 1)
    assert stopped.status is RunStatus.STOPPED
    assert stopped.message == "stopped before it ended: the job was stopped (killed by SIGTERM)"
    assert not alive(pid)


async def test_replace_stops_the_active_run_first(engine: Engine, tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "app", LONG)
    options = JobOptions(schedule="* * * * *", concurrency=Concurrency.REPLACE)
    await engine.deploy("sync", job_settings(folder, options))
    job = runner(engine, "sync")
    await job.due(1000.0, Trigger.SCHEDULE)
    first = (await wait_run(engine, "sync", 1, RunStatus.RUNNING)).id
    await job.due(1060.0, Trigger.SCHEDULE)
    replaced = await wait_run(engine, "sync", first)
    assert replaced.status is RunStatus.STOPPED
    assert replaced.message.startswith("replaced by run 2")
    assert runs(engine, "sync")[2].status is RunStatus.RUNNING
    assert list(job.active) == [2]
    await engine.handle.request(Stop("sync"))


async def test_allow_runs_side_by_side(engine: Engine, tmp_path: Path) -> None:
    folder = job_folder(tmp_path / "app", LONG)
    options = JobOptions(schedule="* * * * *", concurrency=Concurrency.ALLOW)
    await engine.deploy("sync", job_settings(folder, options))
    job = runner(engine, "sync")
    await job.due(1000.0, Trigger.SCHEDULE)
    await job.due(1060.0, Trigger.SCHEDULE)
    await wait_run(engine, "sync", 2, RunStatus.RUNNING)
    assert runs(engine, "sync")[1].status is RunStatus.RUNNING
    assert (await engine.handle.request(GetJob("sync"))).active == (1, 2)
    await engine.handle.request(Stop("sync"))
    for number in (1, 2):
        assert (await wait_run(engine, "sync", number)).status is RunStatus.STOPPED


async def test_a_manual_run_is_refused_while_forbid_has_one_running(
    engine: Engine, tmp_path: Path
) -> None:
    folder = job_folder(tmp_path / "app", LONG)
    await engine.deploy("sync", job_settings(folder))
    await engine.handle.request(RunJob("sync"))
    await wait_run(engine, "sync", 1, RunStatus.RUNNING)
    with pytest.raises(Error, match="run 1 of sync is still running") as refused:
        await engine.handle.request(RunJob("sync"))
    assert refused.value.code == "conflict"
    await engine.handle.request(Stop("sync"))


async def test_a_timeout_kills_the_whole_group(engine: Engine, tmp_path: Path) -> None:
    # The run and a child of it ignore SIGTERM: only the SIGKILL after the grace ends them.
    script = "trap '' TERM\n(trap '' TERM; exec sleep 100000) &\necho waiting\nwait\nsleep 100000\n"
    folder = job_folder(tmp_path / "app", script)
    options = JobOptions(timeout=1.0)
    await engine.deploy("stuck", job_settings(folder, options, stop_grace=0.5))
    await engine.handle.request(RunJob("stuck"))
    await engine.wait_log("stuck", "waiting")
    pids = [p.pid for p in psutil.Process(runner(engine, "stuck").active[1].pid).children()]
    assert pids  # the child that ignores SIGTERM too
    ended = await wait_run(engine, "stuck", 1)
    assert ended.status is RunStatus.FAILED
    assert ended.message == "timed out after 1 s (killed by SIGKILL)"
    assert ended.signal == 9
    assert not any(alive(pid) for pid in pids)
    page = await engine.handle.request(ReadRunLogs("stuck", 1))
    assert any("timed out after 1 s: stopping it" in line.line for line in page.lines)


async def test_a_deploy_leaves_the_run_in_progress_on_its_release(
    engine: Engine, tmp_path: Path
) -> None:
    # Each run waits on a fifo of its own until the test lets it end.
    gates = tmp_path / "gates"
    gates.mkdir()
    for number in (1, 2):
        os.mkfifo(gates / f"run-{number}")
    folder = job_folder(
        tmp_path / "app",
        'echo "deployment $DPLOYR_DEPLOYMENT $(cat version)"\n'
        f"read line < {gates}/run-$DPLOYR_RUN\n"
        'echo "still on $(cat version)"\n',
    )
    (folder / "version").write_text("v1")
    allow = JobOptions(concurrency=Concurrency.ALLOW)
    await engine.deploy("etl", job_settings(folder, allow))
    await engine.handle.request(RunJob("etl"))
    await wait_run(engine, "etl", 1, RunStatus.RUNNING)
    (folder / "version").write_text("v2")
    second = await engine.handle.request(Deploy("etl", job_settings(folder, allow)))
    await engine.wait_deployment("etl", second.id)
    assert runs(engine, "etl")[1].status is RunStatus.RUNNING  # untouched by the deploy
    await engine.handle.request(RunJob("etl"))
    with trio.fail_after(WAIT):
        for number in (1, 2):
            gate = gates / f"run-{number}"
            await trio.to_thread.run_sync(gate.write_text, "go\n")
    first = await wait_run(engine, "etl", 1)
    later = await wait_run(engine, "etl", 2)
    assert (first.deployment, later.deployment) == (1, 2)
    assert (first.status, later.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    lines = [line.line for line in (await engine.handle.request(ReadRunLogs("etl", 1))).lines]
    assert "deployment 1 v1" in lines
    assert "still on v1" in lines
    lines = [line.line for line in (await engine.handle.request(ReadRunLogs("etl", 2))).lines]
    assert "deployment 2 v2" in lines
    assert "still on v2" in lines
    info = await engine.handle.request(GetService("etl"))
    assert info.deployment == 2


async def test_a_rollback_makes_the_earlier_release_the_one_runs_use(
    engine: Engine, tmp_path: Path
) -> None:
    folder = job_folder(tmp_path / "app", "cat version\n")
    (folder / "version").write_text("v1\n")
    await engine.deploy("etl", job_settings(folder))
    (folder / "version").write_text("v2\n")
    await engine.deploy("etl", job_settings(folder))
    rollback = await engine.handle.request(Rollback("etl", None))
    assert await engine.wait_deployment("etl", rollback.id) is DeploymentStatus.SUCCEEDED
    await engine.handle.request(RunJob("etl"))
    run = await wait_run(engine, "etl", 1)
    assert run.deployment == 3
    lines = [line.line for line in (await engine.handle.request(ReadRunLogs("etl", 1))).lines]
    assert "v1" in lines


async def test_a_job_without_a_schedule_runs_only_when_asked(
    engine: Engine, tmp_path: Path
) -> None:
    folder = job_folder(tmp_path / "app", "echo asked\n")
    settings = attrs.evolve(job_settings(folder), job=None, type=ServiceType.JOB)
    await engine.deploy("adhoc", settings)
    job = await engine.handle.request(GetJob("adhoc"))
    assert (job.schedule, job.next_run, job.runs) == (None, None, ())
    assert engine.instance.services["adhoc"].tree is not None
    assert runner(engine, "adhoc").next_run is None  # no scheduler child at all
    await engine.handle.request(RunJob("adhoc"))
    assert (await wait_run(engine, "adhoc", 1)).status is RunStatus.SUCCEEDED
