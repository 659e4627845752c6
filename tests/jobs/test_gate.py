"""The start gate on its own: a real store and real held processes, with the jobs'
answers at the due time given by the test, so that every kind of answer can be had."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dployr.engine.jobs.gate import Decide, StartGate, State
from dployr.engine.os import launcher
from dployr.models import Deployment, DeploymentStatus, ServiceSettings, Source
from dployr.schedule import RunStatus, Trigger
from dployr.store.store import Store
from tests.jobs.test_held import line_of

JOBS = ("first", "second", "busy", "gone")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "dployr.db") as opened:
        for name in JOBS:
            opened.create_service(name, ServiceSettings(source=Source(str(tmp_path)), run_cmd=":"))
        yield opened


def deployment(name: str) -> Deployment:
    return Deployment(
        id=1,
        service=name,
        status=DeploymentStatus.SUCCEEDED,
        settings=ServiceSettings(source=Source("."), run_cmd=":"),
        created_at=0.0,
    )


async def held_run(tmp_path: Path, barrier: launcher.Barrier) -> launcher.Held:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPLOYR_")}
    spec = launcher.LaunchSpec('echo "$N"', tmp_path, env)
    return await launcher.launch_held(spec, name="N", barrier=barrier)


async def test_the_first_job_due_lets_every_run_held_for_that_instant_go(
    store: Store, tmp_path: Path
) -> None:
    # Two jobs start their runs through the gate, one says no (it decides alone later),
    # one gave its place up before the due time: the first arrival decides for all.
    due = time.time()
    gate = StartGate(store)
    helds: dict[str, launcher.Held] = {}
    asked: list[str] = []

    def starts(name: str) -> Decide:
        def decide(final: bool) -> tuple[str, Deployment, launcher.Held] | None:
            asked.append(name)
            return (name, deployment(name), helds[name]) if name in helds else None

        return decide

    tickets = {name: gate.expect(due, time.time, starts(name)) for name in JOBS}
    for name in ("first", "second"):
        helds[name] = await held_run(tmp_path, tickets[name].barrier)
    try:
        gate.leave(tickets["gone"])
        gate.arrive(tickets["second"])
        assert asked == ["first", "second", "busy"]  # all at once, "gone" left out
        states = {name: ticket.state for name, ticket in tickets.items()}
        assert states == {
            "first": State.STARTED,
            "second": State.STARTED,
            "busy": State.DECLINED,
            "gone": State.LEFT,
        }
        gate.arrive(tickets["first"])  # its scheduler comes: nothing more to do
        assert len(asked) == 3
        recorded = {}
        for name in ("first", "second"):
            (run,) = store.job_runs(name, 10)
            record = tickets[name].record
            assert record is not None
            assert run.id == record.id
            assert (run.id, run.trigger, run.status, run.scheduled_at) == (
                1,
                Trigger.SCHEDULE,
                RunStatus.RUNNING,
                due,
            )
            recorded[name] = run.started_at
            assert await line_of(helds[name].process) == b"1\n"  # let go, with its number
        assert recorded["first"] == recorded["second"]  # in one transaction, after
        assert recorded["first"] is not None
        assert recorded["first"] >= due
        assert store.job_runs("busy", 10) == []
        assert store.job_runs("gone", 10) == []
        released = tickets["first"].released_at
        assert released is not None
        assert released == tickets["second"].released_at
    finally:
        for held in helds.values():
            await launcher.stop(held.process, 0)


async def test_a_run_declined_at_the_gate_goes_alone_once_its_job_decided(
    store: Store, tmp_path: Path
) -> None:
    due = time.time()
    gate = StartGate(store)
    busy = gate.expect(due, time.time, lambda final: None)  # its job is busy at the due time
    held = await held_run(tmp_path, busy.barrier)
    try:
        gate.arrive(busy)
        assert busy.state is State.DECLINED
        assert busy.barrier.opened
        held.go("4")  # recorded by its job, alone: its own line lets it go at once
        assert await line_of(held.process) == b"4\n"
    finally:
        await launcher.stop(held.process, 0)


async def test_an_instant_every_job_gave_up_is_forgotten(store: Store) -> None:
    due = time.time() + 60
    gate = StartGate(store)
    tickets = [gate.expect(due, time.time, lambda final: None) for _ in range(2)]
    for ticket in tickets:
        gate.leave(ticket)
    assert tickets[0].barrier.opened
    again = gate.expect(due, time.time, lambda final: None)  # a job deployed again meanwhile
    assert again.instant is not tickets[0].instant
    assert not again.barrier.opened
    gate.leave(again)


async def test_runs_are_recorded_just_before_their_instant_and_let_go_at_it(
    store: Store, tmp_path: Path
) -> None:
    # "first" starts when asked ahead; "second" says no then (a job whose run replaces
    # others decides at its time) and yes at the due time: both start together then.
    due = time.time() + 60
    gate = StartGate(store)
    helds: dict[str, launcher.Held] = {}

    def starts(name: str) -> Decide:
        def decide(final: bool) -> tuple[str, Deployment, launcher.Held] | None:
            return (name, deployment(name), helds[name]) if name == "first" or final else None

        return decide

    tickets = {name: gate.expect(due, time.time, starts(name)) for name in ("first", "second")}
    for name, ticket in tickets.items():
        helds[name] = await held_run(tmp_path, ticket.barrier)
    try:
        gate.prepare(tickets["second"])
        assert tickets["first"].state is State.STARTED
        assert tickets["second"].state is State.EXPECTED
        (run,) = store.job_runs("first", 10)
        assert (run.id, run.status, run.scheduled_at, run.started_at) == (
            1,
            RunStatus.RUNNING,
            due,
            None,  # recorded, not started: its program cannot run before the barrier opens
        )
        assert not tickets["first"].barrier.opened
        for held in helds.values():
            assert psutil.Process(held.process.pid).cmdline()[:2] == ["/bin/sh", "-c"]
        gate.arrive(tickets["first"])
        assert tickets["second"].state is State.STARTED
        assert tickets["first"].barrier.opened
        starts_at = set()
        for name, held in helds.items():
            assert await line_of(held.process) == b"1\n"
            (run,) = store.job_runs(name, 10)
            starts_at.add(run.started_at)
        assert len(starts_at) == 1  # recorded after they were let go, together
        assert None not in starts_at
    finally:
        for held in helds.values():
            await launcher.stop(held.process, 0)
