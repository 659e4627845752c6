"""What a supervisor hands each child incarnation: its place in the tree and its shields."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from dployr.supervision.events import EventSink, Path


class ChildContext:
    """One incarnation's view of its supervisor.

    Stopping a child cancels it. A child that needs time to clean up (an OS process actor
    sending SIGTERM and waiting) does that work inside ``with ctx.shield():``; the
    supervisor lets the shield hold for the child's shutdown grace and then cancels it, so
    a child that ignores the request is still stopped.
    """

    def __init__(self, path: Path, incarnation: int, events: EventSink | None) -> None:
        self.path = path
        """The child's own path in the tree: its supervisor's path plus its id."""
        self.incarnation = incarnation
        """1 for the first start, then one more for every restart."""
        self.events = events
        """The supervision events topic of the tree, which nested supervisors share."""
        self._shields: set[trio.CancelScope] = set()
        self._killed = False

    @property
    def id(self) -> str:
        """The child's id."""
        return self.path[-1]

    @contextmanager
    def shield(self) -> Iterator[trio.CancelScope]:
        """A cancel shield for clean-up that the supervisor ends when the grace runs out."""
        scope = trio.CancelScope(shield=True)
        if self._killed:
            scope.cancel()
        self._shields.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._shields.discard(scope)

    def _kill(self) -> None:
        """End the grace: cancel every shield, now and in the future."""
        self._killed = True
        for scope in self._shields:
            scope.cancel()
