"""The roll-out of a release, as a pure state machine: no trio, no I/O.

Every change of a service's running release takes one path: a deploy, a rollback, a
restart, a start and the recovery at daemon start. The machine says which step comes next;
:mod:`dployr.engine.service.rolling` carries the steps out and tells the machine how each
ended (hypercorn splits ``protocol/h11.py`` from ``trio/tcp_server.py`` the same way).

The path, for an old release that serves while the new one starts (a service with a port)::

    START_NEW ─► WAIT_READY ─► SWITCH ─► STOP_OLD ─► SUCCEEDED
        │            │            │
        └────────────┴─► UNDO_NEW ─► FAILED        (SWITCH failing: FAILED)

and stop-first (a worker never runs twice), where the old release is started again when
the new one fails, unless it had failed itself or the service is being stopped::

    STOP_OLD_FIRST ─► START_NEW ─► WAIT_READY ─► SWITCH ─► SUCCEEDED
                          │            │            │
                          └────────────┴─► UNDO_NEW ┴─► START_OLD_AGAIN ─► FAILED

``WAIT_READY`` is left out of a roll-out that is not gated (a start, a hard restart, the
recovery), which switches as soon as its release has started.
"""

from __future__ import annotations

import enum

import attrs

from dployr.models import RolloutMode, ServiceSettings


class Step(enum.Enum):
    """What the roll-out does next; the last two end it."""

    STOP_OLD_FIRST = "stop the old release before the new one starts"
    START_NEW = "bind the public port and start the new release beside the old one"
    WAIT_READY = "wait until the new release is ready"
    SWITCH = "record it, send new connections to the new release"
    STOP_OLD = "let the old release drain, then stop it"
    UNDO_NEW = "stop the new release (and a port bound for it)"
    START_OLD_AGAIN = "start the release stopped first again"
    SUCCEEDED = "the new release is the service's"
    FAILED = "the roll-out failed; what ran before runs"

    @property
    def final(self) -> bool:
        """Whether the roll-out is over."""
        return self in (Step.SUCCEEDED, Step.FAILED)


@attrs.frozen
class Plan:
    """What a roll-out starts from."""

    old: str | None
    """The current release (its child id), if there is one."""
    old_serving: bool = True
    """The current release runs (or restarts): it has not given up."""
    stop_first: bool = False
    """The old release stops before the new one starts (see :func:`stops_first`)."""
    gate: bool = True
    """The switch waits until the new release is ready."""


def stops_first(settings: ServiceSettings) -> bool:
    """Whether a roll-out of these settings stops the old release before it starts the new."""
    mode = settings.rollout
    if mode is RolloutMode.AUTO:
        return settings.port is None
    return mode is RolloutMode.STOP_FIRST


class InvalidStep(Exception):
    """The machine was told a step ended that it is not at (a bug of its driver)."""


@attrs.define
class Rollout:
    """One roll-out: feed it how each step ended, it answers the next step."""

    plan: Plan
    step: Step = attrs.field(init=False)
    """The step under way (or the final one)."""
    failed_at: Step | None = attrs.field(default=None, init=False)
    """The step that failed, once one has: the roll-out fails then, whatever comes next."""
    _stopping: bool = attrs.field(default=False, init=False)
    """Told with the failure: the service is being stopped, so nothing starts again."""

    def __attrs_post_init__(self) -> None:
        first_stops = self.plan.stop_first and self.plan.old is not None
        self.step = Step.STOP_OLD_FIRST if first_stops else Step.START_NEW

    @property
    def stopped_old_first(self) -> bool:
        """The old release is stopped before the new one starts."""
        return self.plan.stop_first and self.plan.old is not None

    def done(self, step: Step) -> Step:
        """``step`` ended well: the next step."""
        self._expect(step)
        if self.failed_at is not None:  # undoing: each undo step leads to the next
            self.step = self._after_undo(step)
            return self.step
        match step:
            case Step.STOP_OLD_FIRST:
                self.step = Step.START_NEW
            case Step.START_NEW:
                self.step = Step.WAIT_READY if self.plan.gate else Step.SWITCH
            case Step.WAIT_READY:
                self.step = Step.SWITCH
            case Step.SWITCH:
                has_old = self.plan.old is not None and not self.stopped_old_first
                self.step = Step.STOP_OLD if has_old else Step.SUCCEEDED
            case _:
                self.step = Step.SUCCEEDED
        return self.step

    def failed(self, step: Step, *, stopping: bool = False) -> Step:
        """``step`` failed: the next step (undoing what was done, as far as it can be).

        ``stopping``: the service is being stopped or deleted, so nothing starts again.
        """
        self._expect(step)
        if self.failed_at is not None:  # an undo step failed: nothing more to try
            self.step = Step.FAILED
            return self.step
        self.failed_at = step
        self._stopping = stopping
        if step in (Step.START_NEW, Step.WAIT_READY):
            self.step = Step.UNDO_NEW
        else:
            self.step = self._after_undo(Step.UNDO_NEW)
        return self.step

    def _after_undo(self, step: Step) -> Step:
        if step is Step.UNDO_NEW and self._starts_old_again():
            return Step.START_OLD_AGAIN
        return Step.FAILED

    def _starts_old_again(self) -> bool:
        # The release stopped for this roll-out runs again, unless it had failed itself
        # (its restart budget spent: it stays failed), the service is being stopped, or it
        # was never stopped (the failure came before, or it is not the roll-out's to undo).
        return (
            self.stopped_old_first
            and self.plan.old_serving
            and not self._stopping
            and self.failed_at is not Step.STOP_OLD_FIRST
        )

    def _expect(self, step: Step) -> None:
        if step is not self.step:
            raise InvalidStep(f"the roll-out is at {self.step.name}, not {step.name}")
