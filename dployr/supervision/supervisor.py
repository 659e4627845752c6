"""A supervisor with Erlang/OTP semantics, on trio.

A supervisor starts its children in order (each start returns only once the child called
``task_status.started()``), watches them, restarts them by its strategy and their restart
type, and stops them in reverse order, each given its grace and then cancelled. It counts
restarts across all its children in a sliding window; when more than ``intensity.restarts``
happen within ``intensity.period`` seconds it stops every child and raises
:class:`RestartIntensityExceeded`, so that its parent decides.

All decisions happen in one loop task that reads the supervisor's inbox, so state changes
are serialised: child exits, restart timers and control calls (add, terminate, restart,
delete a child at run time) are messages. The children themselves live in a nursery that
is shielded from the supervisor's own cancellation, so that a cancelled supervisor can
still stop them one by one, in reverse order, with their graces.

Why one module of ~700 lines: the loop, the messages it reads and the records of its
children are one state machine whose invariants span all three (OTP keeps
``supervisor.erl`` whole for the same reason); the pure parts (restart intensity, backoff,
child specs, exit reasons) live in ``policy``, ``spec`` and ``reasons``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs
import trio

from dployr.errors import (
    ActorDead,
    DuplicateChild,
    RestartIntensityExceeded,
    SpecError,
    StartError,
    UnknownChild,
)
from dployr.supervision import policy
from dployr.supervision.context import ChildContext
from dployr.supervision.events import (
    ChildRestarting,
    ChildStarted,
    ChildTerminated,
    EventSink,
    MaxIntensityReached,
    Offender,
    Path,
    ShutdownFailed,
    StartFailed,
    SupervisionEvent,
)
from dployr.supervision.policy import (
    DEFAULT_INTENSITY,
    BackoffState,
    Intensity,
    Restart,
    RestartWindow,
    Strategy,
)
from dployr.supervision.reasons import NORMAL, Crashed, ExitReason, Shutdown
from dployr.supervision.spec import ChildSpec

T = TypeVar("T")


@attrs.frozen
class ChildStatistics:
    """A snapshot of one child."""

    id: str
    restart: Restart
    running: bool
    incarnation: int
    """How many times the child has been started (0: never)."""
    restarts: int
    """How many restarts of this child the supervisor has decided."""
    last_exit: ExitReason | None
    value: object = attrs.field(eq=False)
    """What the running incarnation passed to ``task_status.started()``, else ``None``."""


@attrs.frozen
class SupervisorStatistics:
    """A frozen snapshot of a supervisor: its children, restarts and last exit reasons."""

    path: Path
    strategy: Strategy
    intensity: Intensity
    children: tuple[ChildStatistics, ...]
    restarts: int
    """Restarts decided since the supervisor started."""
    recent_restarts: int
    """Restarts inside the current intensity window."""


class _GiveUp(Exception):
    """Raised inside the loop when the restart intensity is exceeded."""


class _StartFailed(Exception):
    """Carries a child's failure to start out of ``nursery.start``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


class _Incarnation:
    """One run of a child: its cancel scope, context and exit."""

    def __init__(self, number: int, ctx: ChildContext) -> None:
        self.number = number
        self.ctx = ctx
        self.scope = trio.CancelScope()
        self.started = False
        self.started_at = 0.0
        self.value: object = None
        # Set when the supervisor asked it to stop; the exit is then a Shutdown, not a crash.
        self.stopping: str | None = None
        self.exited = trio.Event()


class _Child:
    """The supervisor's private record of one child."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        # Invariant: `current` is the incarnation starting or running, None between runs.
        self.current: _Incarnation | None = None
        self.incarnations = 0
        self.restarts = 0
        self.backoff = BackoffState()
        self.last_exit: ExitReason | None = None
        # True while a restart is scheduled for this child (it counts as "restarting").
        self.waiting = False

    def offender(self) -> Offender:
        spec = self.spec
        return Offender(
            id=spec.id,
            restart=spec.restart,
            shutdown=None if spec.brutal else spec.shutdown,
            incarnation=self.incarnations,
        )


class _Exited:
    __slots__ = ("child", "incarnation", "reason")

    def __init__(self, child: _Child, incarnation: _Incarnation, reason: ExitReason) -> None:
        self.child = child
        self.incarnation = incarnation
        self.reason = reason


class _RestartDue:
    __slots__ = ("token",)

    def __init__(self, token: int) -> None:
        self.token = token


class _Call(Generic[T]):
    """A control request run by the loop; the caller waits for ``done``."""

    def __init__(self, operation: Callable[[], Awaitable[T]]) -> None:
        self.operation = operation
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    async def run(self) -> None:
        try:
            self.result = await self.operation()
        except _GiveUp:
            raise
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


_Message = _Exited | _RestartDue | _Call[Any]


class _StartedProxy:
    """Stands in for the child's ``task_status`` so the supervisor sees the moment."""

    def __init__(self, on_started: Callable[[object], None]) -> None:
        self._on_started = on_started

    def started(self, value: object = None) -> None:
        self._on_started(value)


class Supervisor:
    """An OTP-style supervisor of an ordered list of children.

    Run it with ``await nursery.start(supervisor.run)``, or make it a child of another
    supervisor with ``ChildSpec.supervisor(id, supervisor.run)``. Its control
    methods (:meth:`start_child`, :meth:`terminate_child`, :meth:`restart_child`,
    :meth:`delete_child`) work while it runs.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        intensity: Intensity = DEFAULT_INTENSITY,
        events: EventSink | None = None,
    ) -> None:
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            names = ", ".join(s.value for s in Strategy)
            raise SpecError(f"strategy must be one of {names}, not {strategy!r}") from None
        self.name = name
        self.intensity = intensity
        self.path: Path = (name,)
        self._events = events
        self._children: list[_Child] = []
        for spec in children:
            self._check_new(spec)
            self._children.append(_Child(spec))
        self._window = RestartWindow(self.intensity)
        self._restarts = 0
        # Scheduled group restarts: token -> ids of the children to start, in order.
        self._pending: dict[int, list[str]] = {}
        self._next_token = 0
        self._inbox_send, self._inbox = trio.open_memory_channel[_Message](math.inf)
        self._nursery: trio.Nursery | None = None  # children live here (shielded)
        self._closed = trio.Event()  # set once run() has stopped the children
        self._timers: trio.Nursery | None = None  # restart timers live here
        self._running = False
        self._accepting = False

    # -- public API ----------------------------------------------------------------------

    def statistics(self) -> SupervisorStatistics:
        """A frozen snapshot: each child's state, restarts and last exit reason."""
        now = trio.current_time()
        return SupervisorStatistics(
            path=self.path,
            strategy=self.strategy,
            intensity=self.intensity,
            children=tuple(
                ChildStatistics(
                    id=c.spec.id,
                    restart=c.spec.restart,
                    running=c.current is not None and c.current.started,
                    incarnation=c.incarnations,
                    restarts=c.restarts,
                    last_exit=c.last_exit,
                    value=c.current.value if c.current is not None else None,
                )
                for c in self._children
            ),
            restarts=self._restarts,
            recent_restarts=self._window.count(now),
        )

    async def start_child(self, spec: ChildSpec) -> object:
        """Add a child at the end and start it; return what it passed to ``started()``."""

        async def operation() -> object:
            self._check_new(spec)
            child = _Child(spec)
            self._children.append(child)
            try:
                return await self._start(child)
            except StartError:
                self._children.remove(child)
                raise

        return await self._call(operation)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (with its grace) and keep its spec; it is not restarted.

        A temporary child is forgotten once stopped.
        """

        async def operation() -> trio.Event | None:
            child = self._get(child_id)
            self._cancel_restart(child)
            inc = child.current
            if inc is None:
                return None
            # Stop it in its own task, so the loop keeps serving other children meanwhile.
            assert self._nursery is not None
            self._nursery.start_soon(self._stop, child, "shutdown")
            return inc.exited

        exited = await self._call(operation)
        if exited is not None:
            await exited.wait()

    async def restart_child(self, child_id: str) -> object:
        """Start a terminated child again, with a fresh backoff; return its started value."""

        async def operation() -> object:
            child = self._get(child_id)
            if child.current is not None:
                raise StartError(f"child {child_id!r} is already running")
            self._cancel_restart(child)
            child.backoff = BackoffState()
            return await self._start(child)

        return await self._call(operation)

    async def delete_child(self, child_id: str) -> None:
        """Stop a child if it runs, then forget it."""
        await self.terminate_child(child_id)

        async def operation() -> None:
            for child in self._children:
                if child.spec.id == child_id:
                    if child.current is not None:  # restarted by a racing call in between
                        raise StartError(f"child {child_id!r} was started again; delete it again")
                    self._children.remove(child)
                    return  # (a temporary child is already gone once it stopped)

        await self._call(operation)

    def which_children(self) -> list[str]:
        """The ids of the children, in start order."""
        return [c.spec.id for c in self._children]

    async def run(
        self,
        ctx: ChildContext | None = None,
        *,
        task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the children in order, then supervise them until cancelled.

        Returns only when stopped; raises :class:`StartError` if a child fails to start
        (the ones already started are stopped first) and
        :class:`RestartIntensityExceeded` when it gives up.
        """
        if self._running:
            raise StartError(f"supervisor {self.name!r} is already running")
        if ctx is not None:
            self.path = ctx.path
            if self._events is None:
                self._events = ctx.events
        self._running = self._accepting = True
        # Each run starts with a fresh inbox and a fresh restart budget.
        self._inbox_send, self._inbox = trio.open_memory_channel[_Message](math.inf)
        self._window = RestartWindow(self.intensity)
        self._pending.clear()
        # The supervisor's own failures are raised after its nursery closes, unwrapped, so a
        # parent (or a user) sees a StartError or RestartIntensityExceeded, not a group.
        failure: StartError | RestartIntensityExceeded | None = None
        self._closed = trio.Event()
        try:
            async with trio.open_nursery() as timers:
                self._timers = timers
                try:
                    # Not nursery.start: trio leaves a task started from a cancelled caller
                    # in the caller's nursery, and this shielded host would wait forever
                    # for a shutdown that could not begin.
                    hosting = trio.Event()
                    timers.start_soon(self._host_children, hosting)
                    await hosting.wait()
                    for child in self._children:
                        await self._start(child)
                    task_status.started(self)
                    await self._loop()
                except (StartError, RestartIntensityExceeded) as error:
                    failure = error
                finally:
                    # Control calls fail from now on: one made by a child being stopped
                    # must not wait for the very shutdown that waits for that child.
                    self._accepting = False
                    self._fail_calls()
                    timers.cancel_scope.cancel()
                    with trio.CancelScope(shield=True) if ctx is None else ctx.shield():
                        try:
                            await self._stop_all("shutdown")
                        finally:
                            self._fail_calls()
                            # Anything still alive (the grace was cut short) is cancelled,
                            # and the host of the children may end (even one that has not
                            # started yet, if the supervisor was cancelled that early).
                            if self._nursery is not None:
                                self._nursery.cancel_scope.cancel()
                            self._closed.set()
        finally:
            self._running = False
            self._nursery = None
            self._timers = None
        if failure is not None:
            raise failure

    # -- the loop ------------------------------------------------------------------------

    async def _host_children(self, hosting: trio.Event) -> None:
        # Shielded: cancelling the supervisor must not cancel its children all at once.
        # It ends when run() has stopped them (or cancelled what would not stop).
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                hosting.set()
                await self._closed.wait()

    async def _loop(self) -> None:
        try:
            async for message in self._inbox:
                if isinstance(message, _Exited):
                    await self._on_exit(message)
                elif isinstance(message, _RestartDue):
                    await self._on_restart_due(message.token)
                else:
                    await message.run()
        except _GiveUp as give_up:
            raise RestartIntensityExceeded(str(give_up)) from None

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        if not self._accepting:
            raise ActorDead(f"supervisor {self.name!r} is not running")
        call = _Call(operation)
        self._inbox_send.send_nowait(call)
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _fail_calls(self) -> None:
        error = ActorDead(f"supervisor {self.name!r} stopped")
        while True:
            try:
                message = self._inbox.receive_nowait()
            except trio.WouldBlock:
                return
            if isinstance(message, _Call):
                message.fail(error)

    # -- starting ------------------------------------------------------------------------

    def _check_new(self, spec: ChildSpec) -> None:
        if not isinstance(spec, ChildSpec):
            raise SpecError(f"a child must be a ChildSpec, not {spec!r}")
        if any(c.spec.id == spec.id for c in self._children):
            raise DuplicateChild(f"supervisor {self.name!r} already has a child {spec.id!r}")
        if spec.restart is not Restart.TEMPORARY:
            policy.check_verdict_reachable(self.intensity, spec.backoff, spec.id)

    def _get(self, child_id: str) -> _Child:
        for child in self._children:
            if child.spec.id == child_id:
                return child
        raise UnknownChild(f"supervisor {self.name!r} has no child {child_id!r}")

    def _publish(self, event: SupervisionEvent) -> None:
        if self._events is not None:
            self._events.publish(event)

    async def _start(self, child: _Child) -> object:
        """Start one incarnation; raise StartError if it fails before ``started()``."""
        assert self._nursery is not None
        child.waiting = False
        child.incarnations += 1
        ctx = ChildContext((*self.path, child.spec.id), child.incarnations, self._events)
        inc = _Incarnation(child.incarnations, ctx)
        child.current = inc
        try:
            return await self._nursery.start(self._incarnation, child, inc)
        except _StartFailed as failed:
            child.current = None
            reason = Crashed.from_exception(failed.cause)
            child.last_exit = reason
            self._publish(StartFailed(self.path, child.offender(), reason, trio.current_time()))
            raise StartError(
                f"{'/'.join(ctx.path)} failed to start: {reason.describe()}"
            ) from failed.cause

    async def _incarnation(
        self, child: _Child, inc: _Incarnation, *, task_status: trio.TaskStatus[object]
    ) -> None:
        def on_started(value: object) -> None:
            inc.started = True
            inc.started_at = trio.current_time()
            inc.value = value
            self._publish(ChildStarted(self.path, child.offender(), inc.started_at, value))
            task_status.started(value)

        reason: ExitReason | None = None
        try:
            with inc.scope:
                try:
                    result = await child.spec.start(inc.ctx, task_status=_StartedProxy(on_started))
                except Exception as exc:
                    if not inc.started:
                        raise _StartFailed(exc) from exc
                    reason = Crashed.from_exception(exc)
                else:
                    if not inc.started:
                        raise _StartFailed(
                            StartError("it returned without calling task_status.started()")
                        )
                    reason = NORMAL if result is None else result
        finally:
            inc.exited.set()
        if inc.stopping is not None and (reason is None or not reason.abnormal):
            reason = Shutdown(inc.stopping)
        elif reason is None:  # cancelled by a scope of ours without a stop: still a stop
            reason = Shutdown()
        self._on_exited(child, inc, reason)

    def _on_exited(self, child: _Child, inc: _Incarnation, reason: ExitReason) -> None:
        """Record an exit at once (events keep their order); decide restarts in the loop.

        A temporary child is forgotten when it exits, as in OTP: it is never restarted, so
        its id is free for a new child.
        """
        if child.current is inc:
            child.current = None
        child.last_exit = reason
        if child.spec.restart is Restart.TEMPORARY and child in self._children:
            self._children.remove(child)
        now = trio.current_time()
        self._publish(ChildTerminated(self.path, child.offender(), reason, now))
        if inc.stopping is not None:
            if reason.abnormal:
                self._publish(ShutdownFailed(self.path, child.offender(), reason, now))
            return
        self._inbox_send.send_nowait(_Exited(child, inc, reason))

    # -- restarting ----------------------------------------------------------------------

    async def _on_exit(self, message: _Exited) -> None:
        child = message.child
        if child not in self._children or child.current is not None:
            return  # deleted, or already started again by a control call
        if not policy.should_restart(child.spec.restart, message.reason):
            return
        uptime = trio.current_time() - message.incarnation.started_at
        await self._restart(child, uptime)

    def _count_restart(self, child: _Child) -> None:
        now = trio.current_time()
        if self._window.record(now):
            restarts = self._window.count(now) - 1
            self._publish(
                MaxIntensityReached(
                    self.path, child.offender(), restarts, self.intensity.period, now
                )
            )
            raise _GiveUp(
                f"{'/'.join(self.path)} gave up after {restarts} restarts in "
                f"{self.intensity.period:g} s ({child.spec.id} {describe(child.last_exit)})"
            )
        self._restarts += 1
        child.restarts += 1

    async def _restart(self, child: _Child, uptime: float) -> None:
        """``child`` must come back: count it, stop its group, schedule the group's start."""
        self._count_restart(child)
        delay, child.backoff = child.backoff.next(child.spec.backoff, uptime)
        group = self._group(child)
        # The group comes back as it was: siblings that ran or waited to, except temporary
        # ones, which are reported and never restarted; a terminated sibling stays down.
        ids = [
            c.spec.id
            for c in group
            if c is child
            or ((c.current is not None or c.waiting) and c.spec.restart is not Restart.TEMPORARY)
        ]
        for other in reversed(group):
            if other is not child and other.current is not None:
                await self._stop(other, f"restart of {child.spec.id}")
        self._publish(
            ChildRestarting(
                self.path,
                child.offender(),
                delay,
                self._window.count(trio.current_time()),
                trio.current_time(),
            )
        )
        await self._schedule(ids, delay)

    def _group(self, child: _Child) -> list[_Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._children)
        return self._children[self._children.index(child) :]

    async def _schedule(self, ids: list[str], delay: float) -> None:
        # A group already waiting that overlaps this one is folded into it.
        for token, waiting in list(self._pending.items()):
            if set(waiting) & set(ids):
                del self._pending[token]
                ids = [c.spec.id for c in self._children if c.spec.id in set(ids) | set(waiting)]
        for child in self._children:
            if child.spec.id in ids:
                child.waiting = True
        if delay <= 0:
            await self._start_group(ids)
            return
        token = self._next_token
        self._next_token += 1
        self._pending[token] = ids
        assert self._timers is not None
        self._timers.start_soon(self._timer, token, delay)

    async def _timer(self, token: int, delay: float) -> None:
        await trio.sleep(delay)
        self._inbox_send.send_nowait(_RestartDue(token))

    async def _on_restart_due(self, token: int) -> None:
        ids = self._pending.pop(token, None)
        if ids is not None:
            await self._start_group(ids)

    async def _start_group(self, ids: list[str]) -> None:
        group = [c for c in self._children if c.spec.id in ids and c.current is None]
        for index, child in enumerate(group):
            try:
                await self._start(child)
            except StartError:
                # A failed start is a crash of that incarnation: counted, backed off, retried
                # together with the rest of its group.
                self._count_restart(child)
                delay, child.backoff = child.backoff.next(child.spec.backoff, 0.0)
                now = trio.current_time()
                count = self._window.count(now)
                self._publish(ChildRestarting(self.path, child.offender(), delay, count, now))
                await self._schedule([c.spec.id for c in group[index:]], delay)
                return

    def _cancel_restart(self, child: _Child) -> None:
        child.waiting = False
        for token, ids in list(self._pending.items()):
            if child.spec.id in ids:
                ids.remove(child.spec.id)
                if not ids:
                    del self._pending[token]

    # -- stopping ------------------------------------------------------------------------

    async def _stop(self, child: _Child, cause: str) -> None:
        """The shutdown ladder: cancel, wait the grace, end the grace, await the exit."""
        inc = child.current
        if inc is None:
            return
        if inc.stopping is None:
            inc.stopping = cause
            inc.scope.cancel()
            if child.spec.brutal:
                inc.ctx._kill()
            else:
                with trio.move_on_after(child.spec.shutdown):
                    await inc.exited.wait()
                if not inc.exited.is_set():
                    inc.ctx._kill()
                    self._publish(
                        ShutdownFailed(
                            self.path,
                            child.offender(),
                            Shutdown(f"cancelled after {child.spec.shutdown:g} s of grace"),
                            trio.current_time(),
                        )
                    )
        await inc.exited.wait()

    async def _stop_all(self, cause: str) -> None:
        self._pending.clear()
        for child in reversed(self._children):
            child.waiting = False
            await self._stop(child, cause)


def describe(reason: ExitReason | None) -> str:
    """Describe an exit reason, or the lack of one."""
    return "never ran" if reason is None else reason.describe()
