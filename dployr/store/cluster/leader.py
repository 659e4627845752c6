"""Running the background work of the cluster on one control plane at a time.

Every control plane serves the API; only the leader runs the background work (see
``ClusterState.lead``: with SQLite the one control plane always leads, with PostgreSQL one
among those sharing the database does). :func:`while_leader` runs a piece of work whenever
this control plane leads: started when it becomes the leader, cancelled at once when it is
not any more, started again when it leads again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from dployr.store.errors import StoreError

if TYPE_CHECKING:
    from dployr.store.cluster.state import ClusterState

log = logging.getLogger("dployr.store.cluster")

RETRY_DELAY = 1.0
"""Seconds between a lost leadership (or an unreachable database) and the next attempt."""


async def while_leader(
    state: ClusterState,
    work: Callable[[], Awaitable[object]],
    *,
    retry: float = RETRY_DELAY,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``work()`` whenever this control plane leads, until ``work`` returns.

    ``task_status.started()`` is called once this control plane first leads. A leadership
    lost (or a database that cannot be reached) cancels ``work`` and is logged, and
    leadership is asked for again ``retry`` seconds later. An error of ``work`` ends it.
    """
    started = False
    while True:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(state.lead)
                if not started:
                    started = True
                    task_status.started()
                await work()
                nursery.cancel_scope.cancel()  # the work is done: lead no longer
                return
        except* StoreError as group:
            for error in group.exceptions:
                log.warning("not leading the cluster: %s; trying again in %g s", error, retry)
        await trio.sleep(retry)
