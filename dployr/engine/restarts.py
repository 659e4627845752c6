"""A service's restart policy, as the supervisor of each of its releases applies it.

A :class:`~dployr.models.RestartPolicy` (a setting: ``--restart``, ``--restart-delay``,
``--max-restarts``, ``--restart-window``, ``--min-uptime``) becomes, for each release:

* the release supervisor's intensity: more than ``max_restarts`` restarts (crashes and
  health-check restarts together) within ``window`` seconds, and it gives up: ``failed``;
* the backoff of its children: the first restart at once, then ``delay``, doubling up to
  ``max_delay``, starting over once a process has stayed up ``min_uptime`` seconds;
* the restart type of its ``process`` child: ``always`` is permanent, ``on-failure``
  transient (a clean exit is not restarted: ``stopped``), ``never`` temporary (a clean
  exit is ``stopped``, a crash ``failed``; a health check never restarts it either).

A process also reports when it has stayed up ``min_uptime`` seconds (:func:`settling`): a
restarted process counts as ``running`` again only then, so a crash loop reads
``restarting`` for its whole backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from dployr.engine.release import Running
from dployr.models import RestartMode, RestartPolicy
from dployr.supervision import ChildContext, ExitReason, Restart, StartFunction
from dployr.supervision.policy import should_restart

RESTART_TYPES = {
    RestartMode.ALWAYS: Restart.PERMANENT,
    RestartMode.ON_FAILURE: Restart.TRANSIENT,
    RestartMode.NEVER: Restart.TEMPORARY,
}


def restart_type(policy: RestartPolicy) -> Restart:
    """The restart type of a release's ``process`` child under ``policy``."""
    return RESTART_TYPES[policy.mode]


def not_restarted(restart: Restart, reason: ExitReason) -> str | None:
    """If a process child of type ``restart`` is not started again after ``reason``, why."""
    if should_restart(restart, reason):
        return None
    mode = next(mode for mode, kind in RESTART_TYPES.items() if kind is restart)
    return f"{reason.describe()}; not restarted (restart policy: {mode.value})"


class _Started:
    """Stands in for a release's ``task_status``: passes the start on, then calls back."""

    def __init__(self, task_status: trio.TaskStatus[Running], then: Callable[[Running], None]):
        self._task_status = task_status
        self._then = then

    def started(self, value: Running) -> None:
        self._task_status.started(value)
        self._then(value)


def settling(
    run: Callable[..., Any], min_uptime: float, on_settled: Callable[[Running], None]
) -> StartFunction:
    """A process child's start function that calls ``on_settled`` after ``min_uptime`` up.

    ``run`` is a release's start function; each incarnation gets its own timer, which ends
    with the process.
    """

    async def start(
        ctx: ChildContext, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED
    ) -> ExitReason:
        async with trio.open_nursery() as nursery:

            async def settle(running: Running) -> None:
                await trio.sleep(min_uptime)
                on_settled(running)

            def started(running: Running) -> None:
                nursery.start_soon(settle, running)

            reason: ExitReason = await run(ctx, task_status=_Started(task_status, started))
            nursery.cancel_scope.cancel()
        return reason

    return start
