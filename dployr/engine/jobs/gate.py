"""The start gate: the scheduled runs of an instance's jobs due at one instant are decided,
recorded and let go together, in one step of the event loop.

Each job's runner takes a :class:`Ticket` for a due time when its scheduler wakes ahead
of it (:data:`~dployr.engine.jobs.runner.LEAD` seconds before) and its run's process is
spawned held (:func:`dployr.engine.os.launcher.launch_held`), waiting on the instant's
:class:`~dployr.engine.os.launcher.Barrier`. The first of those schedulers to wake at
the due time arrives at the gate (:meth:`StartGate.arrive`), which then, without
waiting for the others:

1. asks every job holding a ticket for that instant whether its run starts now, held
   (its ``decide``: the rules of :func:`dployr.schedule.on_due`, as the job would apply
   them itself; a job busy deciding something else, or whose run skips, replaces
   another, or was not held in time, says no, and decides alone when its own scheduler
   comes);
2. records every run that starts in ONE store transaction (so each is recorded before it
   can run, as every run is, and numbered once: never run twice);
3. gives each held run its number (a write to its own pipe: it wakes nothing yet);
4. opens the barrier: one ``close`` wakes every held run at once.

Each job's scheduler then finds its run started (:attr:`Ticket.record`) and takes it
over. Deciding for all in one step, instead of each job deciding when its own scheduler
got its turn, keeps a hundred scheduler wake-ups (milliseconds on a busy machine) off the
path to the start; letting them go one write at a time woke a shell per write, which took
a core from the event loop while it still had the next ones to record and let go (on 2
cores, the 100th run of a minute started ~90 ms late). See benchmarks/RESULTS.md.
"""

from __future__ import annotations

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
Decide = Callable[[], Start | None]
"""A job's answer at the due time: its run starts now, held, or not through the gate."""


class State(enum.Enum):
    """Where a ticket is."""

    EXPECTED = "expected"
    """Its run is held for the instant, not let go yet."""
    STARTED = "started"
    """Its run was recorded and let go with the others (or the record failed: ``error``)."""
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

    def arrive(self, ticket: Ticket) -> None:
        """The ticket's run is due (its scheduler woke): the instant is let go now if it
        was not yet, every run held for it decided (see the module's docstring)."""
        if ticket.state is State.EXPECTED:
            self._release(ticket.instant)

    def _forget(self, instant: Instant) -> None:
        if self._instants.get(instant.due) is instant:
            del self._instants[instant.due]

    def _release(self, instant: Instant) -> None:
        """Decide every expected ticket, record those that start, give each its number,
        open the barrier (whatever fails on the way: no held run waits forever)."""
        self._forget(instant)
        started: list[Ticket] = []
        try:
            for ticket in instant.tickets:
                if ticket.state is State.EXPECTED:
                    ticket.state = State.DECLINED  # (if its decide fails)
                    ticket.start = ticket.decide()
                    if ticket.start is not None:
                        ticket.state = State.STARTED
                        started.append(ticket)
            if started:
                records = self.store.add_due_runs(
                    [(start[0], start[1].id) for start in _starts(started)],
                    scheduled_at=instant.due,
                    started_at=instant.wall(),
                )
                for ticket, record in zip(started, records, strict=True):
                    ticket.record = record
                    assert ticket.start is not None
                    ticket.start[2].go(str(record.id))
        except Exception as error:  # handed to each run's job, which raises it
            for ticket in started:
                if ticket.record is None:
                    ticket.error = error
            if not isinstance(error, StoreError):
                raise
        finally:
            # Read before the close: the close wakes them all, and they may take the
            # daemon's core for a while.
            released_at = time.time()
            instant.barrier.open()
            for ticket in started:
                ticket.released_at = released_at


def _starts(tickets: list[Ticket]) -> list[Start]:
    return [ticket.start for ticket in tickets if ticket.start is not None]


_gates: weakref.WeakKeyDictionary[JobTables, StartGate] = weakref.WeakKeyDictionary()


def gate_of(store: JobTables) -> StartGate:
    """The start gate of the instance whose store is ``store``."""
    gate = _gates.get(store)
    if gate is None:
        gate = _gates[store] = StartGate(store)
    return gate
