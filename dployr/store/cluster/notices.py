"""Change notices: what changed in the cluster state, gathered until a reader takes them.

A control plane keeps views of the cluster state (the instances, the placement) and must
learn when another control plane, or another part of itself, changed it. It does not need
every change, only which parts to read again: a :class:`Changes` gathers the names of the
parts changed (:data:`~dployr.store.cluster.base.INSTANCES`, ``PLACEMENT``, ``SNAPSHOTS``)
into one set until its reader takes it, so that a slow reader costs a few names of memory,
never a queue.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio


class Changes:
    """An async iterator of what changed: each item is the set of names of the parts
    changed since the previous item (never empty)."""

    def __init__(self) -> None:
        # Invariant: self._event is set exactly when self._pending is not empty.
        self._pending: set[str] = set()
        self._event = trio.Event()

    def publish(self, changed: Iterable[str]) -> None:
        """Note that the parts named in ``changed`` changed (from the trio thread)."""
        self._pending.update(changed)
        if self._pending:
            self._event.set()

    def __aiter__(self) -> Changes:
        return self

    async def __anext__(self) -> frozenset[str]:
        await self._event.wait()
        taken, self._pending = frozenset(self._pending), set()
        self._event = trio.Event()
        return taken
