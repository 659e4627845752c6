"""The start gate: the scheduled runs of an instance's jobs due at one instant are recorded
together and let go together.

Each job's runner takes a :class:`Ticket` for a due time when its scheduler wakes ahead
of it (:data:`~dployr.engine.jobs.runner.LEAD` seconds before) and its run's process is
spawned held (:func:`dployr.engine.os.launcher.launch_held`), waiting on the instant's
:class:`~dployr.engine.os.launcher.Barrier`. At the due time each runner decides on its
run (start, skip, replace: :func:`dployr.schedule.on_due`) and either starts it through
the gate (:meth:`StartGate.start`) or gives its ticket up (:meth:`StartGate.leave`). Once
every ticket of the instant is used or given up, the gate:

1. records every run started through it in ONE store transaction (so each is recorded
   before it can run, as every run is, and numbered once: never run twice);
2. gives each held run its number (a write to its own pipe: it wakes nothing yet);
3. opens the barrier: one ``close`` wakes every held run at once.

So the event loop is never taken over by a run it has just let go while it still has the
next ones to record and let go (on 2 busy cores, that made the 100th run of one minute
start ~90 ms late, one after the other); see benchmarks/RESULTS.md.

A ticket not used nor given up by :data:`GATHER` seconds after the due time (its runner
is busy: a manual run replacing another holds it) does not hold the others up longer:
the runs started through the gate by then are let go, and a late one is recorded and let
go alone, as a run due alone is (its held process waits for its number once the barrier
is open).
"""

from __future__ import annotations

import enum
import time
import weakref
from collections.abc import Callable

import attrs
import trio

from dployr.engine.os import launcher
from dployr.schedule import JobRun
from dployr.store.jobs import JobTables

GATHER = 0.2
"""Seconds after a due time the gate waits for its last tickets at most (see above)."""


class _State(enum.Enum):
    EXPECTED = "expected"
    JOINED = "joined"
    LEFT = "left"


@attrs.define(eq=False)
class Instant:
    """The runs due at one instant, until they are let go."""

    due: float
    wall: Callable[[], float]
    """The clock the runs' records are written with (the jobs' calendar)."""
    barrier: launcher.Barrier = attrs.field(factory=launcher.Barrier)
    tickets: list[Ticket] = attrs.field(factory=list)
    expected: int = 0
    """How many of its tickets are neither used nor given up yet."""
    done: trio.Event = attrs.field(factory=trio.Event)
    released_at: float | None = None
    """When the barrier was opened (the runs' start, for their "started" line)."""


@attrs.define(eq=False)
class Ticket:
    """One job's place at an instant (see the module's docstring)."""

    instant: Instant
    state: _State = _State.EXPECTED
    service: str = ""
    deployment: int = 0
    held: launcher.Held | None = None
    record: JobRun | None = None
    error: Exception | None = None

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

    def expect(self, due: float, wall: Callable[[], float]) -> Ticket:
        """A ticket for the run due at ``due`` on the calendar ``wall`` (its process is
        about to be held)."""
        instant = self._instants.get(due)
        if instant is None:
            instant = self._instants[due] = Instant(due, wall)
        ticket = Ticket(instant)
        instant.tickets.append(ticket)
        instant.expected += 1
        return ticket

    def leave(self, ticket: Ticket) -> None:
        """The ticket's run does not start through the gate (skipped, replacing, not
        held, or no longer due): the others no longer wait for it. A no-op once used."""
        if ticket.state is not _State.EXPECTED:
            return
        ticket.state = _State.LEFT
        ticket.instant.expected -= 1
        self._release_if_complete(ticket.instant)

    async def start(
        self,
        ticket: Ticket,
        *,
        service: str,
        deployment: int,
        held: launcher.Held,
    ) -> tuple[JobRun, float] | None:
        """Start the ticket's run, held as ``held``, with the others due at its instant:
        its record and when it was let go, once it was. None when the instant was let go
        without it (it came too late): record it and let it go alone. Raises what the
        store raised if the records could not be written (``held`` is then not let go).
        """
        instant = ticket.instant
        if ticket.state is not _State.EXPECTED or instant.done.is_set():
            ticket.state = _State.LEFT
            return None
        ticket.state = _State.JOINED
        instant.expected -= 1
        ticket.service, ticket.deployment, ticket.held = service, deployment, held
        self._release_if_complete(instant)
        if not instant.done.is_set():
            # Shielded: once the others are let go, this run is too, and its caller must
            # take it over (a cancellation then reaches it in the caller's start).
            with trio.CancelScope(shield=True):
                with trio.move_on_after(max(0.0, instant.due + GATHER - instant.wall())):
                    await instant.done.wait()
            if not instant.done.is_set():
                self._release(instant)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.record is not None
        assert instant.released_at is not None
        return ticket.record, instant.released_at

    def _release_if_complete(self, instant: Instant) -> None:
        if instant.done.is_set():
            return
        if instant.expected == 0:
            self._release(instant)

    def _release(self, instant: Instant) -> None:
        """Record the runs that joined, give each its number, open the barrier."""
        if self._instants.get(instant.due) is instant:
            del self._instants[instant.due]
        joined = [ticket for ticket in instant.tickets if ticket.state is _State.JOINED]
        for ticket in instant.tickets:
            if ticket.state is _State.EXPECTED:  # late: it will find the instant gone
                ticket.state = _State.LEFT
        try:
            if joined:
                records = self.store.add_due_runs(
                    [(ticket.service, ticket.deployment) for ticket in joined],
                    scheduled_at=instant.due,
                    started_at=instant.wall(),
                )
                for ticket, record in zip(joined, records, strict=True):
                    ticket.record = record
        except Exception as error:  # handed to each run's caller, who raises it
            for ticket in joined:
                ticket.error = error
        try:
            for ticket in joined:
                if ticket.record is not None and ticket.held is not None:
                    ticket.held.go(str(ticket.record.id))
        finally:
            # Read before the close: the close wakes them all, and they may take the
            # daemon's core for a while.
            instant.released_at = time.time()
            instant.barrier.open()
            instant.done.set()


_gates: weakref.WeakKeyDictionary[JobTables, StartGate] = weakref.WeakKeyDictionary()


def gate_of(store: JobTables) -> StartGate:
    """The start gate of the instance whose store is ``store``."""
    gate = _gates.get(store)
    if gate is None:
        gate = _gates[store] = StartGate(store)
    return gate
