"""A job's runs: what happens when one falls due, is asked for, ends; the job's status.

One :class:`JobRunner` per job service. A job has no long-running release: rolling it
out (a deploy, a rollback, a start, a restart, the recovery at daemon start) records the
deployment as the active one and (re)starts the job's ``scheduler`` child with it, so the
next runs use the new release, while a run in progress finishes on its own. Each run is a
temporary child ``run-<n>`` of the service's supervisor::

    service "nightly" supervisor
    ├─ scheduler      sleeps until the next due time (only with a schedule)
    ├─ run-7          a run in progress: the job's command in its deployment's release
    └─ deploy-3       a deploy in progress (it builds; the switch is immediate)

Rules (:mod:`dployr.schedule`): a due run while another is active is skipped, replaces
it, or starts beside it (``concurrency``); every run is recorded before its process
starts, so a daemon killed at any instant never runs a due time twice; due times missed
while the daemon was down are caught up once, within the starting deadline, else
recorded missed.

Starting on time: the scheduler wakes :data:`LEAD` seconds before a due time, and the run
is spawned then, held before its program (:func:`dployr.engine.os.launcher.launch_held`,
in a worker thread, its cgroup entered meanwhile), waiting on the barrier of the
instance's start gate for that instant (:mod:`.gate`), which decides and records (in one
transaction) the runs due then just before the due time, and lets them all go at it
with one wake-up. So a hundred jobs due in the same second start together, within
tens of milliseconds of it (their own execs on the cores; see benchmarks/RESULTS.md),
though a spawn and a cgroup move take milliseconds each. A held run that is not used
(skipped, its job redeployed or stopped meanwhile) ends without running its program;
one recorded whose job is stopped before it takes it over is stopped.

Status: ``running`` while a run is active, else ``stopped`` (with "next run at ..." as its
message); health: ``healthy`` after a successful run, ``degraded`` after a failed or
missed one, and the health webhook receives every failure and miss.

Why one module of ~670 lines: a run's start (held ahead or not, through the start gate
or alone), end, timeout and catch-up and the job's status change the same records under
one set of rules (dployr.schedule holds them, pure).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from dployr.engine import status as st
from dployr.engine.errors import Conflict, NotDeployed
from dployr.engine.jobs.gate import PREPARE, Start, State, Ticket, gate_of
from dployr.engine.jobs.run import Ended, JobProcess, Output, RunSpec, journal_ranges
from dployr.engine.jobs.scheduler import Scheduler
from dployr.engine.os import launcher
from dployr.engine.release import Running
from dployr.errors import ActorDead
from dployr.logs.values import LogLine
from dployr.models import (
    Deployment,
    DeploymentStatus,
    Health,
    ServiceSettings,
    ServiceStatus,
    ServiceType,
)
from dployr.protocol.messages import JobInfo, LogPage
from dployr.schedule import (
    Concurrency,
    Decision,
    JobOptions,
    JobRun,
    RunStatus,
    Trigger,
    catch_up,
    on_due,
)
from dployr.store.errors import UnknownService
from dployr.supervision import ChildSpec, Restart

if TYPE_CHECKING:
    from dployr.engine.deploy import DeployRun
    from dployr.engine.service.rolling import ServiceRollouts as Service


class UnknownRun(UnknownService):
    """A run the job does not have (answered as not found, like an unknown service)."""


JOBS = "jobs"
"""The name the status machine knows a job's runs by (its "current release")."""
SCHEDULER = "scheduler"
INTERRUPTED = "the daemon stopped during the run"
INTERRUPTED_STARTING = "the daemon stopped as the run was starting"
"""Of a run recorded by the start gate before its due time, without a start time yet."""
LEAD = 2.0
"""Seconds before a due time when the run's process is spawned, held (see above)."""


def is_job(settings: ServiceSettings) -> bool:
    """Whether a service with these settings is a scheduled job."""
    return settings.type is ServiceType.JOB


@attrs.define
class ActiveRun:
    """A run in progress."""

    spec: RunSpec
    output: Output
    pid: int | None = None
    started_at: float | None = None
    stop_reason: str = "stopped before it ended: dployr was stopping"
    """Why it was stopped, if it is: said by whoever stops it (a replace, a stop)."""


class JobRunner:
    """The runs of one job service (see the module's docstring)."""

    wall: Callable[[], float] = staticmethod(time.time)
    """The wall clock schedules are read on (tests run it on trio's clock)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store
        # Invariant: `active` holds every run child of the tree, by run number; `deployment`
        # is the deployment new runs use (the active one once the job was rolled out).
        self.active: dict[int, ActiveRun] = {}
        self.deployment: Deployment | None = None
        self.next_run: float | None = None
        self._lock = trio.Lock()
        """Serialises the decisions about due and asked-for runs (replace waits for a stop)."""
        self._held: dict[float, tuple[Deployment, launcher.Held]] = {}
        """Runs spawned ahead of their due time, held, by due time (see :meth:`_ahead`)."""
        self._tickets: dict[float, Ticket] = {}
        """Their places at the instance's start gate, by due time."""
        self._starting = 0
        """Runs started through the gate, not taken over yet (counted as active)."""
        self._gate = gate_of(self.store)
        self._interrupted()

    # -- rolling out -------------------------------------------------------------------

    async def roll_out(self, deployment: Deployment, run: DeployRun | None) -> bool:
        """Make ``deployment`` the one the next runs use, and (re)start the scheduler.

        False when ``deployment`` is not a job's (the service's type changed): the
        scheduler is stopped, and the service rolls out a release as usual.
        """
        service = self.service
        tree = await service._ensure_tree()
        if not is_job(deployment.settings):
            with contextlib.suppress(KeyError, ActorDead):
                await tree.delete_child(SCHEDULER)
            self.next_run = None
            self.deployment = None
            return False
        if service.current is not None:  # it was a service with a release: no longer
            await service.stop_release(service.current)
        # Written before it is acted on, as a release's switch does (rolling._switch).
        if run is not None:
            settings = None
            if not run.rollback:
                source = attrs.evolve(deployment.settings.source, commit=None)
                settings = attrs.evolve(deployment.settings, source=source)
            service._cached = self.store.activate_deployment(
                service.name, deployment.id, settings=settings
            )
            run.outcome = DeploymentStatus.SUCCEEDED
        else:
            service._cached = self.store.set_active_deployment(service.name, deployment.id)
        self.deployment = deployment
        service.run_as(deployment.settings)
        since = self.store.scheduled_since(service.name)
        if since is None:  # first scheduled now: nothing before counts as missed
            since = self.wall()
            self.store.set_scheduled_since(service.name, since)
        with contextlib.suppress(KeyError, ActorDead):
            await tree.delete_child(SCHEDULER)
        self.next_run = None
        options = _options(deployment.settings)
        cron = options.cron
        say = run.say if run is not None else service.book.system
        if cron is not None:
            handled = max(since, self.store.last_due_time(service.name) or since)
            await self._catch_up(handled)
            after = self.wall()
            self.next_run = cron.next_after(after)
            scheduler = Scheduler(
                cron,
                self.due,
                self._catch_up,
                after=after,
                wall=self.wall,
                on_next=self._next_is,
                ahead=self._ahead,
                lead=LEAD,
            )
            await tree.start_child(ChildSpec(SCHEDULER, scheduler.run, shutdown=0))
            say(f"runs use deployment {deployment.id}; {self._next_words()}")
        else:
            say(f"runs use deployment {deployment.id}; no schedule: runs start when asked")
        self._show()
        return True

    def stopped(self) -> None:
        """The job was stopped: nothing falls due until it is started again, and the runs
        in progress are stopped with it."""
        for active in self.active.values():
            active.stop_reason = "stopped before it ended: the job was stopped"
        self.next_run = None
        self.store.set_scheduled_since(self.service.name, None)

    def _next_is(self, t: float) -> None:
        self.next_run = t

    def _next_words(self) -> str:
        if self.next_run is None:
            return "no run scheduled"
        cron = _options(self._settings()).cron
        when = cron.local(self.next_run) if cron is not None else None
        return f"next run at {when:%Y-%m-%d %H:%M %Z}" if when is not None else "no run scheduled"

    async def _catch_up(self, handled: float) -> None:
        options = _options(self._settings())
        cron = options.cron
        if cron is None:
            return
        now = self.wall()
        result = catch_up(cron, handled, now, options.starting_deadline)
        if result.nothing:
            return
        if result.missed:
            self._missed(result.missed, result.more_missed, options)
        if result.run_at is not None:
            await self.due(result.run_at, Trigger.CATCH_UP)

    def _missed(self, missed: tuple[float, ...], more: bool, options: JobOptions) -> None:
        assert self.deployment is not None
        deadline = options.starting_deadline
        why = (
            "the daemon was down"
            if deadline is None
            else f"the daemon was down past the starting deadline ({deadline:g} s)"
        )
        if more:
            why += f" (and more before these {len(missed)})"
        last = None
        for t in missed:
            last = self.store.add_run(
                self.service.name,
                deployment=self.deployment.id,
                trigger=Trigger.SCHEDULE,
                status=RunStatus.MISSED,
                scheduled_at=t,
                message=f"missed: {why}",
            )
        count = len(missed)
        text = f"{count} run{'s' if count > 1 else ''} missed: {why}"
        self.service.book.system(text, deployment=self.deployment.id)
        if last is not None:
            self._outcome(last, text)

    # -- runs --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _ahead(self, due: float) -> AsyncIterator[None]:
        """From :data:`LEAD` seconds before ``due`` until it was handed over: the run's
        process spawned and held, for :meth:`_fire` to let go if it is ready by then (on a
        machine too busy for that, the run is launched at its time, as a manual run is);
        ended unrun if unused."""
        deployment = self.deployment
        ticket = None
        if deployment is not None:
            decide = functools.partial(self._decide_at_gate, due)
            ticket = self._tickets[due] = self._gate.expect(due, self.wall, decide)
        try:
            async with trio.open_nursery() as nursery:
                if deployment is not None and ticket is not None:
                    nursery.start_soon(self._hold, due, deployment, ticket)
                yield
                nursery.cancel_scope.cancel()  # a hold under way ends (its thread finishes)
        finally:
            if ticket is not None:
                if self._tickets.get(due) is ticket:
                    del self._tickets[due]
                self._gate.leave(ticket)  # (if its instant has not come: no longer due)
                if ticket.state is State.STARTED and not ticket.taken:
                    await self._abandon(ticket)
            left = self._held.pop(due, None)
            if left is not None:
                await left[1].discard()  # shielded

    async def _prepare(self, due: float, ticket: Ticket) -> None:
        """At :data:`~dployr.engine.jobs.gate.PREPARE` seconds before ``due``, have the
        start gate decide and record the runs due then (the first job there does it)."""
        while (left := due - PREPARE - self.wall()) > 0:  # noqa: ASYNC110 (a clock, not a poll)
            await trio.sleep(left)
        self._gate.prepare(ticket)

    async def _hold(self, due: float, deployment: Deployment, ticket: Ticket) -> None:
        service = self.service
        settings = deployment.settings
        service.run_as(settings)
        spec = launcher.LaunchSpec(
            settings.run_cmd,
            service.release_dir(deployment.folder) / settings.working_dir,
            service.process_env(deployment.id, None),
        )
        # If it cannot be held, it is launched at its time, and the error said then.
        with contextlib.suppress(Exception):
            held = await launcher.launch_held(spec, name="DPLOYR_RUN", barrier=ticket.barrier)
            self._held[due] = (deployment, held)
        await self._prepare(due, ticket)  # once held (or not): asked as late as that

    async def due(self, scheduled: float, trigger: Trigger) -> None:
        """A run falls due (the schedule, or a catch-up): start, skip or replace."""
        with contextlib.suppress(Conflict):
            await self._fire(scheduled, trigger)

    async def run_now(self) -> JobRun:
        """Start a run now, as asked (``jobs run``); refused while forbidden by concurrency."""
        if self.deployment is None:
            self.deployment = self._active_deployment()
        return await self._fire(None, Trigger.MANUAL)

    def _decide_at_gate(self, due: float, final: bool) -> Start | None:
        """Asked by the start gate just before ``due`` and, if it said no, at it
        (``final``): whether the run due then starts through the gate, held (the rules
        :meth:`_fire` applies; no when this job is busy deciding something else, or the
        run skips, replaces another, or was not held in time). A yes takes the held
        process out of :attr:`_held`, and the run counts as active until it is taken
        over (:meth:`_take_over`)."""
        deployment = self.deployment
        if self._lock.locked() or deployment is None:
            return None
        options = _options(deployment.settings)
        if not final and options.concurrency is Concurrency.REPLACE:
            return None  # at its time: a run asked for meanwhile is one it must replace
        if on_due(self._active_count(), options.concurrency) is not Decision.START:
            return None
        ready = self._held.get(due)
        if ready is None or ready[0].id != deployment.id:
            return None
        del self._held[due]
        self._starting += 1
        return self.service.name, deployment, ready[1]

    def _active_count(self) -> int:
        return len(self.active) + self._starting

    async def _take_over(self, ticket: Ticket) -> JobRun:
        """Take over a run the start gate recorded and let go (or could not record)."""
        assert ticket.start is not None
        _, deployment, held = ticket.start
        record, at = ticket.record, ticket.released_at
        if record is None or at is None:  # the store failed: it was not let go
            ticket.taken = True
            self._starting -= 1
            await held.discard()
            raise ticket.error or RuntimeError("the run was not recorded")
        async with self._lock:
            ticket.taken = True
            self._starting -= 1  # and in `active` from the first step of _start
            await self._start(record, deployment, _options(deployment.settings), (held, at))
        return self._reread(record)

    async def _abandon(self, ticket: Ticket) -> None:
        """A run the start gate recorded (and maybe let go) as its job was stopped or
        redeployed, before it could take the run over: stopped, its record finished."""
        assert ticket.start is not None
        _, deployment, held = ticket.start
        ticket.taken = True
        self._starting -= 1
        await held.discard()  # shielded
        if ticket.record is not None:
            message = "stopped as it was starting: its job was stopped or redeployed"
            self.store.finish_run(
                self.service.name,
                ticket.record.id,
                status=RunStatus.STOPPED,
                ended_at=time.time(),
                exit_code=None,
                signal=None,
                message=message,
                output=[],
            )
            self.service.book.system(f"run {ticket.record.id} {message}", deployment=deployment.id)

    async def _fire(self, scheduled: float | None, trigger: Trigger) -> JobRun:
        service = self.service
        if trigger is Trigger.SCHEDULE and scheduled is not None:
            ticket = self._tickets.get(scheduled)
            if ticket is not None:
                self._gate.arrive(ticket)  # lets every run held for it go, if not yet
                if ticket.state is State.STARTED:
                    return await self._take_over(ticket)
                # Not through the gate: decided here, alone (as a run due alone is).
        async with self._lock:
            deployment = self.deployment
            if deployment is None:
                raise NotDeployed(f"{service.name} has no successful deployment yet: deploy it")
            options = _options(deployment.settings)
            decision = on_due(self._active_count(), options.concurrency)
            running = ", ".join(f"run {n}" for n in sorted(self.active)) or "a run"
            if decision is Decision.SKIP:
                if trigger is Trigger.MANUAL:
                    raise Conflict(
                        f"{running} of {service.name} is still running and its concurrency is"
                        " forbid: wait for it to end"
                    )
                record = self.store.add_run(
                    service.name,
                    deployment=deployment.id,
                    trigger=trigger,
                    status=RunStatus.SKIPPED,
                    scheduled_at=scheduled,
                    message=f"skipped: {running} still running (concurrency forbid)",
                )
                service.book.system(f"run {record.id} {record.message}", deployment=deployment.id)
                return record
            record = self.store.add_run(
                service.name,
                deployment=deployment.id,
                trigger=trigger,
                status=RunStatus.RUNNING,
                scheduled_at=scheduled,
                started_at=self.wall(),
            )
            if decision is Decision.REPLACE:
                for number in sorted(self.active):
                    await self._stop_run(number, f"replaced by run {record.id}")
            held = None
            if trigger is Trigger.SCHEDULE and scheduled is not None:
                ready = self._held.get(scheduled)
                if ready is not None and ready[0].id == deployment.id:
                    del self._held[scheduled]
                    ready[1].go(str(record.id))  # (its barrier is open: the instant came)
                    held = (ready[1], time.time())
                    # The other runs due now are let go before this one's bookkeeping (not
                    # cancelled here: _start takes the process over, or ends it).
                    await trio.lowlevel.cancel_shielded_checkpoint()
            await self._start(record, deployment, options, held)
            return self._reread(record)

    def _reread(self, record: JobRun) -> JobRun:
        found = self.store.job_run(self.service.name, record.id)
        return record if found is None else found[0]  # with its first line's cursor

    async def _start(
        self,
        record: JobRun,
        deployment: Deployment,
        options: JobOptions,
        held: tuple[launcher.Held, float] | None = None,
    ) -> None:
        """Start run ``record`` as a child of the service's tree: its process launched
        now, or ``held`` (already let go, at the time given)."""
        service = self.service
        settings = deployment.settings
        cwd = service.release_dir(deployment.folder) / settings.working_dir
        env: dict[str, str] = {}
        if held is None:
            service.run_as(settings)
            env = {**service.process_env(deployment.id, None), "DPLOYR_RUN": str(record.id)}
        spec = RunSpec(
            service=service.name,
            number=record.id,
            deployment=deployment.id,
            command=settings.run_cmd,
            cwd=cwd,
            env=env,
            timeout=options.timeout,
            grace=settings.stop_grace,
        )
        journals = service.dir / "runs"
        with contextlib.suppress(OSError):  # (a full disk: no journal, see Output)
            journals.mkdir(exist_ok=True)
        active = ActiveRun(spec, Output(journals / f"{record.id}.ranges"))
        self.active[record.id] = active

        def spawned(running: Running) -> None:
            active.pid, active.started_at = running.pid, running.started_at
            service.process_started(running)
            first = active.output.ranges[0][0] if active.output.ranges else None
            self.store.run_started(service.name, record.id, pid=running.pid, cursor=first)
            self._show()

        process = JobProcess(
            spec,
            service.book,
            active.output,
            on_spawn=spawned,
            on_exit=service.process_ended,
            on_end=lambda ended: self._ended(active, ended),
            stop_reason=lambda: active.stop_reason,
            held=held,
        )
        child = ChildSpec(
            spec.child_id, process.run, restart=Restart.TEMPORARY, shutdown=spec.grace + 5.0
        )
        try:
            tree = await service._ensure_tree()
            await tree.start_child(child)
        except BaseException as error:  # a cancellation too: the record is finished
            if held is not None and not process.took:  # let go, but no one waits for it
                await held[0].discard()
            if record.id in self.active:
                why = "stopped" if isinstance(error, trio.Cancelled) else error
                self._ended(active, Ended(RunStatus.FAILED, f"could not start: {why}", time.time()))
            if not isinstance(error, Exception):
                raise
            raise Conflict(f"run {record.id} of {service.name} could not start: {error}") from None
        if record.id in self.active:
            self._show()

    async def _stop_run(self, number: int, reason: str) -> None:
        active = self.active.get(number)
        tree = self.service.tree
        if active is None or tree is None:
            return
        active.stop_reason = reason
        with contextlib.suppress(KeyError, ActorDead):
            await tree.delete_child(active.spec.child_id)

    def _ended(self, active: ActiveRun, ended: Ended) -> None:
        """A run ended (whatever way): its record is finished, status and health follow."""
        service = self.service
        spec = active.spec
        self.active.pop(spec.number, None)
        record = self.store.finish_run(
            service.name,
            spec.number,
            status=ended.status,
            ended_at=ended.ended_at,
            exit_code=ended.exit_code,
            signal=ended.signal,
            message=ended.message,
            output=active.output.ranges,
        )
        active.output.close()
        self._outcome(record, f"run {record.id} {record.status.value}: {record.message}")
        self._show()

    def _outcome(self, record: JobRun, message: str) -> None:
        """The health a run's outcome gives the job; failures and misses reach the webhook."""
        service = self.service
        if record.status is RunStatus.SUCCEEDED:
            service._set_health(Health.HEALTHY, message)
        elif record.status in (RunStatus.FAILED, RunStatus.MISSED):
            service._set_health(Health.DEGRADED, message)
            webhook = self._settings().health.webhook
            if webhook is not None:
                body = _webhook_body(service.name, service.instance.name, record, message)
                service.instance.send_webhook(service.name, webhook, body)

    def _show(self) -> None:
        """The job's status: running while a run is active, else stopped."""
        service = self.service
        state = service.state
        if self.active:
            newest = self.active[max(self.active)]
            if newest.pid is not None and state.pid != newest.pid:
                service._advance(st.Promoted(JOBS, newest.pid, newest.started_at))
        elif state.run_status is not ServiceStatus.STOPPED or state.release is not None:
            service._advance(st.Stopped())

    # -- reads -------------------------------------------------------------------------

    def info(self, limit: int) -> JobInfo:
        """The job's schedule, next run and last runs."""
        options = _options(self._settings())
        return JobInfo(
            name=self.service.name,
            schedule=options.schedule,
            timezone=options.timezone,
            concurrency=options.concurrency,
            timeout=options.timeout,
            starting_deadline=options.starting_deadline,
            next_run=self.next_run,
            active=tuple(sorted(self.active)),
            runs=tuple(self.store.job_runs(self.service.name, max(1, min(limit, 1000)))),
        )

    def pids(self) -> list[int]:
        """The process groups of the runs in progress (for metrics)."""
        return [run.pid for run in self.active.values() if run.pid is not None]

    def runs(self, limit: int) -> tuple[JobRun, ...]:
        """The job's last runs, newest first."""
        return tuple(self.store.job_runs(self.service.name, max(1, min(limit, 1000))))

    async def read_run_logs(self, run: int, after: int | None, limit: int) -> LogPage:
        """The lines of run ``run`` after cursor ``after`` (its output and dployr's lines)."""
        service = self.service
        found = self.store.job_run(service.name, run)
        if found is None:
            raise UnknownRun(f"{service.name} has no run {run}")
        _, ranges = found
        active = self.active.get(run)
        if active is not None:
            ranges = list(active.output.ranges)
        book = service.book
        limit = max(1, min(limit, 10_000))

        def read() -> list[LogLine]:
            lines: list[LogLine] = []
            for first, last in ranges:
                start = max(first - 1, after or 0)
                while start < last and len(lines) < limit:
                    page = book.read(after=start, limit=min(limit - len(lines), last - start))
                    page = [line for line in page if line.cursor <= last]
                    if not page:
                        break
                    lines.extend(page)
                    start = page[-1].cursor
            return lines

        lines = await trio.to_thread.run_sync(read)
        history = book.history
        return LogPage(service.name, tuple(lines), history.first_cursor, history.last_cursor)

    # -- internals ---------------------------------------------------------------------

    def _active_deployment(self) -> Deployment:
        service = self.service
        active = service._record().active_deployment
        found = None if active is None else self.store.get_deployment(service.name, active)
        if found is None:
            raise NotDeployed(f"{service.name} has no successful deployment yet: deploy it first")
        return found

    def _settings(self) -> ServiceSettings:
        if self.deployment is not None:
            return self.deployment.settings
        return self.service._record().settings

    def _interrupted(self) -> None:
        """Runs recorded as running belong to a daemon that died: they failed. Each keeps
        the lines its journal names (its own, whatever else the log got meanwhile) and
        the line that says why it ended."""
        service = self.service
        journals = service.dir / "runs"
        for record in self.store.running_runs(service.name):
            journal = journals / f"{record.id}.ranges"
            output = Output()
            for first, last in journal_ranges(journal):
                output.add_range(first, last)
            if not output.ranges and record.first_cursor is not None:
                output.add_range(record.first_cursor, record.first_cursor)  # without a journal
            why = INTERRUPTED if record.started_at is not None else INTERRUPTED_STARTING
            text = f"run {record.id} failed: {why}"
            output.add(service.book.system(text, deployment=record.deployment))
            service.store.finish_run(
                service.name,
                record.id,
                status=RunStatus.FAILED,
                ended_at=time.time(),
                exit_code=None,
                signal=None,
                message=why,
                output=output.ranges,
            )
        # What is left belongs to runs that were recorded finished: no run is active yet.
        for journal in journals.glob("*.ranges"):
            journal.unlink(missing_ok=True)


def _options(settings: ServiceSettings) -> JobOptions:
    return settings.job if settings.job is not None else JobOptions()


def _webhook_body(service: str, instance: str, record: JobRun, message: str) -> bytes:
    """The JSON the health webhook receives when a run fails or is missed."""
    return json.dumps(
        {
            "event": f"job_{record.status.value}",
            "service": service,
            "instance": instance,
            "run": record.id,
            "scheduled_at": record.scheduled_at,
            "health": Health.DEGRADED.value,
            "timestamp": time.time(),
            "message": message,
        }
    ).encode()
