"""The start gate: the scheduled runs of an instance's jobs due at one instant are decided
and recorded together just before it, and let go together at it by one wake-up.

Each job's runner takes a :class:`Ticket` for a due time when its scheduler wakes ahead
of it (:data:`~dployr.engine.jobs.runner.LEAD` seconds before) and its run's process is
spawned held (:func:`dployr.engine.os.launcher.launch_held`), waiting on the instant's
:class:`~dployr.engine.os.launcher.Barrier`.

1. :data:`PREPARE` seconds before the due time, the first job to get there
   (:meth:`StartGate.prepare`) asks every job holding a ticket for that instant whether
   its run starts (its ``decide``: the rules of :func:`dployr.schedule.on_due`, as the
   job applies them itself) and records those that do in ONE store transaction
   (running, no start time yet: recorded before they can run, numbered once, so never
   run twice). A job that says no (busy deciding something else; its run would skip or
   replace another, or is not held yet; a job whose runs replace others always, so that
   a run asked for meanwhile is one its run replaces) is asked again at the due time.
2. At the due time the first job whose scheduler wakes (:meth:`StartGate.arrive`) asks
   the jobs not decided yet again and records those that start now (the others decide
   alone, when their schedulers come), writes each held run its number (a pipe of its
   own, which it reads only once the barrier is open: it wakes nothing), then opens the
   barrier: one ``close`` wakes every held run at once. Their start time is recorded
   after, in one transaction; each job's scheduler takes its run over (its
   bookkeeping). A held run whose barrier ends because the daemon died finds no number
   and exits unrun.

So a hundred writes that wake nothing and one ``close`` are all that is left for the due
time itself: a hundred scheduler wake-ups, a hundred inserts and a hundred writes each
waking a shell (which took a core from the event loop while it still had the next ones
to do) are no longer between the due time and the runs' start. A run recorded at step 1
whose daemon dies before step 2 is found running without a start time by the next
daemon, and recorded failed ("the daemon stopped as the run was starting"), not run
again. See benchmarks/RESULTS.md.
"""

from __future__ import annotations

import contextlib
import enum
import time
import weakref
from collections.abc import Callable

import attrs

from dployr.engine.os import launcher
from dployr.models import Deployment
from dployr.schedule import JobRun
from dployr.store.errors import StoreError
from dployr.store.jobs import JobTables

Start = tuple[str, Deployment, launcher.Held]
"""A run that starts through the gate: its job (service), deployment, held process."""
Decide = Callable[[bool], Start | None]
"""A job's answer, ahead of the due time (False) or at it (True): its run starts, held,
or not through the gate (yet)."""


PREPARE = 0.1
"""Seconds before a due time when the runs due then are decided and recorded (step 1)."""


class State(enum.Enum):
    """Where a ticket is."""

    EXPECTED = "expected"
    """Its run is held for the instant, not decided yet."""
    STARTED = "started"
    """Its run was recorded and given its number, to be let go with the others at the
    instant (or the record failed: ``error``)."""
    DECLINED = "declined"
    """Its job said no at the due time: it decides alone."""
    LEFT = "left"
    """Its job gave it up before the due time (stopped, redeployed)."""


@attrs.define(eq=False)
class Instant:
    """The runs due at one instant, until they are let go."""

    due: float
    wall: Callable[[], float]
    """The clock the runs' records are written with (the jobs' calendar)."""
    barrier: launcher.Barrier = attrs.field(factory=launcher.Barrier)
    tickets: list[Ticket] = attrs.field(factory=list)
    released_at: float | None = None
    """When its barrier was opened."""


@attrs.define(eq=False)
class Ticket:
    """One job's place at an instant (see the module's docstring)."""

    instant: Instant
    decide: Decide
    state: State = State.EXPECTED
    start: Start | None = None
    record: JobRun | None = None
    released_at: float | None = None
    """When the barrier was opened: the run's start."""
    error: Exception | None = None
    """Why its record could not be written (it was then not let go)."""
    taken: bool = False
    """Whether its job took its started run over (else it must end it)."""

    @property
    def barrier(self) -> launcher.Barrier:
        """What its held run waits on."""
        return self.instant.barrier


class StartGate:
    """The start gate of one instance (one store): see the module's docstring."""

    def __init__(self, store: JobTables) -> None:
        self.store = store
        self._instants: dict[float, Instant] = {}
        """The instants not let go yet, by due time."""

    def expect(self, due: float, wall: Callable[[], float], decide: Decide) -> Ticket:
        """A ticket for a run due at ``due`` on the calendar ``wall``, whose process is
        about to be held; ``decide`` is asked at the due time whether it starts."""
        # An instant whose every job was stopped after its run was recorded is never let
        # go (its runs were stopped by their jobs): forgotten an hour on.
        for stale in [d for d in self._instants if d < due - 3600]:
            self._instants.pop(stale).barrier.open()
        instant = self._instants.get(due)
        if instant is None:
            instant = self._instants[due] = Instant(due, wall)
        ticket = Ticket(instant, decide)
        instant.tickets.append(ticket)
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """The ticket's job gives it up before its instant was let go (a no-op after)."""
        if ticket.state is not State.EXPECTED:
            return
        ticket.state = State.LEFT
        instant = ticket.instant
        if all(other.state is State.LEFT for other in instant.tickets):
            self._forget(instant)
            instant.barrier.open()  # no one waits on it any more

    def prepare(self, ticket: Ticket) -> None:
        """:data:`PREPARE` seconds before the ticket's due time: every job held for it is
        asked whether its run starts; those that do are recorded, not started yet, so
        that only their numbers and the barrier's close are left for the due time. A job
        that says no is asked again then (a run active now may have ended)."""
        if ticket.instant.released_at is None:
            self._record(ticket.instant, final=False)

    def arrive(self, ticket: Ticket) -> None:
        """The ticket's run is due (its scheduler woke): the instant is let go now if it
        was not yet (see the module's docstring)."""
        instant = ticket.instant
        if instant.released_at is not None:
            return
        self._forget(instant)
        started: list[Ticket] = []
        try:
            self._record(instant, final=True)  # those not asked yet, or that said no
            started = [t for t in instant.tickets if t.state is State.STARTED]
            # Their numbers only now: a held run whose barrier ends because the daemon
            # died finds no number, and exits unrun.
            for one in started:
                if one.record is not None and one.start is not None:
                    one.start[2].go(str(one.record.id))
        finally:
            # Read before the close: the close wakes them all, and they may take the
            # daemon's core for a while.
            started_at, released_at = instant.wall(), time.time()
            instant.barrier.open()
            instant.released_at = released_at
            for one in started:
                one.released_at = released_at
        runs = [
            (t.start[0], t.record.id)
            for t in started
            if t.start is not None and t.record is not None
        ]
        if runs:
            with contextlib.suppress(StoreError):  # (they run on; their start is unknown)
                self.store.due_runs_started(runs, started_at=started_at)

    def _forget(self, instant: Instant) -> None:
        if self._instants.get(instant.due) is instant:
            del self._instants[instant.due]

    def _record(self, instant: Instant, *, final: bool) -> None:
        """Ask every expected ticket whether its run starts; record those that do in
        one transaction. Not ``final``: a no leaves the ticket expected."""
        started: list[Ticket] = []
        try:
            for ticket in instant.tickets:
                if ticket.state is State.EXPECTED:
                    ticket.start = ticket.decide(final)
                    if ticket.start is not None:
                        ticket.state = State.STARTED
                        started.append(ticket)
                    elif final:
                        ticket.state = State.DECLINED
            if started:
                records = self.store.add_due_runs(
                    [(start[0], start[1].id) for start in _starts(started)],
                    scheduled_at=instant.due,
                    started_at=None,
                )
                for ticket, record in zip(started, records, strict=True):
                    ticket.record = record
        except Exception as error:  # handed to each run's job, which raises it
            for ticket in started:
                if ticket.record is None:
                    ticket.error = error
            if not isinstance(error, StoreError):
                raise
        finally:
            if final:
                for ticket in instant.tickets:
                    if ticket.state is State.EXPECTED:  # (its decide failed)
                        ticket.state = State.DECLINED


def _starts(tickets: list[Ticket]) -> list[Start]:
    return [ticket.start for ticket in tickets if ticket.start is not None]


_gates: weakref.WeakKeyDictionary[JobTables, StartGate] = weakref.WeakKeyDictionary()


def gate_of(store: JobTables) -> StartGate:
    """The start gate of the instance whose store is ``store``."""
    gate = _gates.get(store)
    if gate is None:
        gate = _gates[store] = StartGate(store)
    return gate
