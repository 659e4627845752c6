"""The start gate on its own: a real store and real held processes, the jobs' runners
left out, so that a job that does not come at its due time can be made to."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from dployr.engine.jobs.gate import GATHER, StartGate
from dployr.engine.os import launcher
from dployr.models import ServiceSettings, Source
from dployr.schedule import JobRun, RunStatus, Trigger
from dployr.store.store import Store
from tests.jobs.test_held import line_of


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "dployr.db") as opened:
        for name in ("early", "late"):
            opened.create_service(name, ServiceSettings(source=Source(str(tmp_path)), run_cmd=":"))
        yield opened


async def held_run(tmp_path: Path, barrier: launcher.Barrier) -> launcher.Held:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    spec = launcher.LaunchSpec('echo "$N"', tmp_path, env)
    return await launcher.launch_held(spec, name="N", barrier=barrier)


async def test_runs_are_let_go_once_every_job_due_then_has_come(
    store: Store, tmp_path: Path
) -> None:
    due = time.time()
    gate = StartGate(store)
    early, late = gate.expect(due, time.time), gate.expect(due, time.time)
    assert early.barrier is late.barrier
    held = await held_run(tmp_path, early.barrier)
    started: list[tuple[JobRun, float] | None] = []
    try:
        async with trio.open_nursery() as nursery:

            async def start() -> None:
                started.append(await gate.start(early, service="early", deployment=1, held=held))

            nursery.start_soon(start)
            await trio.testing.wait_all_tasks_blocked()
            assert started == []  # it waits for the other job due then
            assert store.job_runs("early", 10) == []  # not recorded yet
            gate.leave(late)  # which does not run (a skip, say): no more waiting
        (result,) = started
        assert result is not None
        record, at = result
        assert at < due + GATHER
        assert await line_of(held.process) == b"1\n"
        (stored,) = store.job_runs("early", 10)
        assert stored == record
        assert (stored.id, stored.trigger, stored.status, stored.scheduled_at) == (
            1,
            Trigger.SCHEDULE,
            RunStatus.RUNNING,
            due,
        )
    finally:
        await launcher.stop(held.process, 0)


async def test_a_job_that_does_not_come_does_not_hold_the_others_up(
    store: Store, tmp_path: Path
) -> None:
    due = time.time()
    gate = StartGate(store)
    early, late = gate.expect(due, time.time), gate.expect(due, time.time)
    held_early = await held_run(tmp_path, early.barrier)
    held_late = await held_run(tmp_path, late.barrier)
    try:
        started = await gate.start(early, service="early", deployment=1, held=held_early)
        assert started is not None
        record, at = started
        assert at >= due + GATHER  # it waited that long for the other, no longer
        assert (record.id, record.scheduled_at) == (1, due)
        assert await line_of(held_early.process) == b"1\n"
        # The other comes late: the instant was let go without it; it goes alone.
        assert await gate.start(late, service="late", deployment=1, held=held_late) is None
        assert store.job_runs("late", 10) == []
        held_late.go("7")  # its barrier is open: its own line lets it go at once
        assert await line_of(held_late.process) == b"7\n"
    finally:
        await launcher.stop(held_early.process, 0)
        await launcher.stop(held_late.process, 0)
