"""A scheduled run starts on time: spawned ahead of its due time, held, let go at it, with
every run due at the same instant (the instance's start gate).

A real instance and real processes on a real (if shifted) calendar: the job runner's wall
clock is set so that the next minute comes a few seconds from now.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import psutil
import pytest

from dployr.engine.jobs.runner import LEAD, JobRunner
from dployr.protocol.messages import ListRuns, ReadRunLogs, RunJob, Stop
from dployr.schedule import Concurrency, JobOptions, JobRun, RunStatus, Trigger
from tests.engine.conftest import Engine
from tests.jobs.helpers import job_folder, job_settings, wait_run

pytestmark = pytest.mark.slow

EVERY_MINUTE = JobOptions(schedule="* * * * *", concurrency=Concurrency.FORBID)


def next_minute_soon(monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """Shift the jobs' wall clock so that its next minute is LEAD + 1.5 s away: the
    shift, and that due time."""
    now = time.time()
    due = math.ceil((now + LEAD + 1.5) / 60) * 60
    shift = due - (now + LEAD + 1.5)
    monkeypatch.setattr(JobRunner, "wall", staticmethod(lambda: time.time() + shift))
    return shift, due


async def list_runs(engine: Engine, name: str) -> tuple[JobRun, ...]:
    return tuple(await engine.handle.request(ListRuns(name, 100)))


def started_at(ticks: str) -> float:
    """When a process started, from field 22 of its /proc/<pid>/stat (clock ticks)."""
    return psutil.boot_time() + int(ticks) / os.sysconf("SC_CLK_TCK")


async def test_a_scheduled_run_is_spawned_ahead_and_runs_its_program_at_its_due_time(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shift, due = next_minute_soon(monkeypatch)
    # The program's pid is the held shell's (it execs): its start is when it was spawned.
    script = 'echo "run $DPLOYR_RUN $(date +%s.%N) $(cut -d" " -f22 /proc/$$/stat)"\n'
    folder = job_folder(tmp_path / "app", script)
    await engine.deploy("tick", job_settings(folder, EVERY_MINUTE))
    run = await wait_run(engine, "tick", 1)
    assert (run.trigger, run.status, run.scheduled_at) == (
        Trigger.SCHEDULE,
        RunStatus.SUCCEEDED,
        due,
    )
    assert run.started_at is not None
    assert run.started_at >= due
    lines = (await engine.handle.request(ReadRunLogs("tick", 1))).lines
    printed = next(line.line for line in lines if line.stream == "stdout").split()
    assert printed[:2] == ["run", "1"]  # the run's number, given when it was let go
    assert float(printed[2]) + shift >= due  # its program never ran early
    assert started_at(printed[3]) + shift < due - LEAD / 4  # spawned well ahead
    started = next(line for line in lines if line.line.startswith("run 1 started"))
    assert started.ts + shift >= due


async def test_a_held_run_that_is_skipped_never_runs(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, due = next_minute_soon(monkeypatch)
    marks = tmp_path / "marks"
    marks.mkdir()
    script = f'touch {marks}/"$DPLOYR_RUN"\necho "run $DPLOYR_RUN"\nexec sleep 100000\n'
    folder = job_folder(tmp_path / "app", script)
    await engine.deploy("sync", job_settings(folder, EVERY_MINUTE))
    await engine.handle.request(RunJob("sync"))  # still running when the minute comes
    await wait_run(engine, "sync", 1, RunStatus.RUNNING)
    await engine.wait_log("sync", "run 2 skipped")
    skipped = await wait_run(engine, "sync", 2)
    assert (skipped.status, skipped.scheduled_at) == (RunStatus.SKIPPED, due)
    await engine.handle.request(Stop("sync"))
    assert (await wait_run(engine, "sync", 1)).status is RunStatus.STOPPED
    assert engine.pids("sync") == []  # the held process too: ended, not left waiting
    assert sorted(os.listdir(marks)) == ["1"]  # and its program never ran


async def test_runs_due_at_one_instant_are_recorded_together_then_all_start_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four jobs due at the same minute start through the instance's start gate; a fifth,
    # whose last run is still running (forbid), skips its run: the others do not wait for
    # it, and its held process never runs its program.
    shift, due = next_minute_soon(monkeypatch)
    marks = tmp_path / "marks"
    marks.mkdir()
    script = f'touch {marks}/"$DPLOYR_SERVICE-$DPLOYR_RUN"\necho "$(date +%s.%N)"\n'
    names = [f"tick{index}" for index in range(4)]
    for name in names:
        await engine.deploy(name, job_settings(job_folder(tmp_path / name, script), EVERY_MINUTE))
    busy = f'touch {marks}/"$DPLOYR_SERVICE-$DPLOYR_RUN"\nexec sleep 100000\n'
    await engine.deploy("busy", job_settings(job_folder(tmp_path / "busy", busy), EVERY_MINUTE))
    await engine.handle.request(RunJob("busy"))
    await wait_run(engine, "busy", 1, RunStatus.RUNNING)
    runs = [await wait_run(engine, name, 1) for name in names]
    for name, run in zip(names, runs, strict=True):
        assert (run.trigger, run.status, run.scheduled_at) == (
            Trigger.SCHEDULE,
            RunStatus.SUCCEEDED,
            due,
        ), name
        assert [r.scheduled_at for r in await list_runs(engine, name)] == [due]  # once
    # Recorded in one transaction, before any of them could start its program.
    recorded = {run.started_at for run in runs}
    assert len(recorded) == 1
    (at,) = recorded
    assert at is not None
    assert at >= due
    for name in names:
        lines = (await engine.handle.request(ReadRunLogs(name, 1))).lines
        printed = next(line.line for line in lines if line.stream == "stdout")
        assert float(printed) + shift >= at, name
    skipped = await wait_run(engine, "busy", 2)
    assert (skipped.status, skipped.scheduled_at) == (RunStatus.SKIPPED, due)
    await engine.handle.request(Stop("busy"))
    assert sorted(os.listdir(marks)) == ["busy-1", *(f"{name}-1" for name in names)]
