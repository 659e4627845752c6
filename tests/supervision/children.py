"""Children whose fate a test decides, and a recorder of what the supervisor did."""

from __future__ import annotations

from typing import Any, TypeVar

import trio
import trio.testing

from dployr.supervision import ChildContext, ChildSpec, SupervisionEvent, Topic
from dployr.supervision.topic import Subscription

E = TypeVar("E")


class Child:
    """A supervised child: it starts, then waits for the test to crash or finish it.

    ``log`` is shared between the children of a test, so it records the order of starts
    and stops across the tree. ``cleanup`` makes a stopped child spend that many seconds
    cleaning up inside its shield (a child that ignores the stop request, if longer than
    its grace).
    """

    def __init__(self, name: str, log: list[str], *, cleanup: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.cleanup = cleanup
        self.incarnations = 0
        self.fail_starts = 0
        self.ready_after = 0.0
        self._outcome: str | None = None
        self._wake = trio.Event()

    def spec(self, **kwargs: Any) -> ChildSpec:
        return ChildSpec(self.name, self.start, **kwargs)

    async def start(
        self, ctx: ChildContext, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.incarnations += 1
        if self.ready_after:
            await trio.sleep(self.ready_after)
        if self.fail_starts:
            self.fail_starts -= 1
            self.log.append(f"failed {self.name}")
            raise RuntimeError(f"{self.name} cannot start")
        self._outcome, self._wake = None, trio.Event()
        self.log.append(f"start {self.name}")
        task_status.started(self.incarnations)
        try:
            await self._wake.wait()
        except trio.Cancelled:
            self.log.append(f"stop {self.name}")
            if self.cleanup:
                with ctx.shield():
                    await trio.sleep(self.cleanup)
                    self.log.append(f"cleaned {self.name}")
            raise
        self.log.append(f"{self._outcome} {self.name}")
        if self._outcome == "crash":
            raise RuntimeError(f"{self.name} crashed")

    def crash(self) -> None:
        self._outcome = "crash"
        self._wake.set()

    def finish(self) -> None:
        self._outcome = "finish"
        self._wake.set()


class Recorder:
    """Collects the supervision events published on a topic."""

    def __init__(self, topic: Topic[SupervisionEvent]) -> None:
        self._sub: Subscription[SupervisionEvent] = topic.subscribe(capacity=100_000)
        self.events: list[SupervisionEvent] = []
        self._unread = 0

    async def settle(self) -> list[SupervisionEvent]:
        """Let every task run until blocked, then return the events seen so far."""
        await trio.testing.wait_all_tasks_blocked()
        while True:
            try:
                entry = self._sub.receive_nowait()
            except trio.WouldBlock:
                return self.events
            assert isinstance(entry, list), "the recorder's queue is large enough for a test"
            self.events.extend(entry)

    async def next(self, kind: type[E]) -> E:
        """Wait for the next event of ``kind`` not yet seen by ``next``."""
        while True:
            while self._unread < len(self.events):
                event = self.events[self._unread]
                self._unread += 1
                if isinstance(event, kind):
                    return event
            entry = await self._sub.receive()
            assert isinstance(entry, list), "the recorder's queue is large enough for a test"
            self.events.extend(entry)

    async def kinds(self) -> list[str]:
        """Event kinds and their child ids since the last call, e.g. 'child_started b'."""
        seen = len(self.events)
        await self.settle()
        return [f"{e.kind} {e.child.id}" for e in self.events[seen:]]
