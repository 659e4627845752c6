"""Child specs: what a supervisor starts, validated when built.

A child is started by calling ``start(ctx, task_status=...)``: an async function that
calls ``task_status.started(value)`` once it is really ready, then runs until it is done.
It returns ``None`` (a normal exit) or an :data:`ExitReason` (an OS process actor returns
``Crashed`` with its exit code); raising an exception is a crash.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import trio

from dployr.errors import SpecError
from dployr.supervision.policy import (
    DEFAULT_BACKOFF,
    Backoff,
    ChildKind,
    Restart,
    default_shutdown,
)
from dployr.supervision.reasons import ExitReason

if TYPE_CHECKING:
    from dployr.supervision.context import ChildContext


class StartFunction(Protocol):
    """``async def start(ctx, *, task_status) -> ExitReason | None``."""

    def __call__(
        self, ctx: ChildContext, /, *, task_status: trio.TaskStatus[Any] = ...
    ) -> Awaitable[ExitReason | None]: ...


BRUTAL_KILL: Final = 0.0
"""A shutdown of 0 s: the child is cancelled at once, with no grace."""
INFINITY: Final = math.inf
"""A shutdown with no limit: the default of a child that is itself a supervisor."""

_ID_MAX = 200


def _check_id(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise SpecError(f"a child id must be a non-empty string, not {value!r}")
    if len(value) > _ID_MAX:
        raise SpecError(f"child id {value[:40]!r}… is longer than {_ID_MAX} characters")
    if not value.isprintable() or "/" in value:
        raise SpecError(f"child id {value!r} may not contain '/' or unprintable characters")


def _check_start(_: object, __: object, value: Any) -> None:
    if not callable(value):
        raise SpecError(f"a child's start function must be callable, not {value!r}")


def _to_restart(value: Restart | str) -> Restart:
    if isinstance(value, Restart):
        return value
    try:
        return Restart(value)
    except ValueError:
        names = ", ".join(r.value for r in Restart)
        raise SpecError(f"restart must be one of {names}, not {value!r}") from None


def _check_shutdown(_: object, __: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise SpecError(
            f"shutdown must be seconds of grace >= 0 (0 for a brutal kill), not {value!r}"
        )


def _to_kind(value: ChildKind | str) -> ChildKind:
    if isinstance(value, ChildKind):
        return value
    try:
        return ChildKind(value)
    except ValueError:
        names = ", ".join(k.value for k in ChildKind)
        raise SpecError(f"kind must be one of {names}, not {value!r}") from None


def _default_shutdown(spec: ChildSpec) -> float:
    return default_shutdown(spec.kind)


def _check_backoff(_: object, __: object, value: Backoff) -> None:
    if not isinstance(value, Backoff):
        raise SpecError(f"backoff must be a Backoff, not {value!r}")


@attrs.frozen
class ChildSpec:
    """How to start, restart and stop one child. Validated when built.

    A child that is itself a supervisor is built with :meth:`supervisor`: its shutdown
    default is then no limit, as its children's own shutdowns bound its stop.
    """

    id: str = attrs.field(validator=_check_id)
    start: StartFunction = attrs.field(validator=_check_start, eq=False)
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=_to_restart)
    kind: ChildKind = attrs.field(default=ChildKind.WORKER, converter=_to_kind, kw_only=True)
    shutdown: float = attrs.field(
        default=attrs.Factory(_default_shutdown, takes_self=True), validator=_check_shutdown
    )
    """Seconds the child is given to stop before it is cancelled; 0 is a brutal kill.
    By default, as its kind says (:func:`~dployr.supervision.policy.default_shutdown`)."""
    backoff: Backoff = attrs.field(default=DEFAULT_BACKOFF, validator=_check_backoff)

    @classmethod
    def supervisor(
        cls,
        id: str,
        start: StartFunction,
        restart: Restart | str = Restart.PERMANENT,
        *,
        shutdown: float = INFINITY,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> ChildSpec:
        """The spec of a child that is a supervisor (``start`` is usually its ``run``)."""
        return cls(
            id,
            start,
            restart,
            kind=ChildKind.SUPERVISOR,
            shutdown=shutdown,
            backoff=backoff,
        )

    @property
    def brutal(self) -> bool:
        """Whether the child is cancelled at once when stopped."""
        return self.shutdown == 0
