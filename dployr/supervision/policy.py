"""Restart policy: pure decisions, fed monotonic time, with no trio import.

Everything a supervisor decides about restarting lives here so that it can be tested with
Hypothesis, away from any event loop:

* the restart rule per restart type (``permanent``, ``transient``, ``temporary``);
* the restart intensity, counted per supervisor across all its children in a sliding window;
* the backoff between restarts of one child: the first restart immediate, then an exponential
  delay capped at ``cap``, reset once the child has stayed up for ``stable`` seconds.

How intensity and backoff interact: a restart is counted when the crash is seen, before any
delay, and a supervisor refuses a child whose backoff would let a crash loop escape the
verdict: the delays of ``intensity.restarts`` consecutive restarts must add up to less than
``intensity.period`` (see :func:`check_verdict_reachable`). A child that crashes at once after
every start therefore always exceeds the intensity within one period, however its delays are
capped. A child that stays up for a while between crashes may take longer than one period per
crash, and is then, correctly, restarted forever with its delay at the cap.

The defaults of the whole runtime are written once, at the bottom of this module.
"""

from __future__ import annotations

import collections
import enum
import math
from typing import Final

import attrs

from dployr.errors import SpecError
from dployr.supervision.reasons import ExitReason


class Restart(enum.Enum):
    """When a child is restarted after it exits."""

    PERMANENT = "permanent"
    """Always, whatever the exit reason."""
    TRANSIENT = "transient"
    """Only after an abnormal exit (a crash)."""
    TEMPORARY = "temporary"
    """Never; its exit is reported and never escalated."""


class ChildKind(enum.Enum):
    """What a child is: its shutdown default follows (as the ``type`` of an OTP child spec)."""

    WORKER = "worker"
    """Does the work: given :data:`DEFAULT_SHUTDOWN` seconds to stop."""
    SUPERVISOR = "supervisor"
    """Stops its own children, each within its own shutdown: given all the time it needs."""


def default_shutdown(kind: ChildKind) -> float:
    """The seconds of grace a child of ``kind`` gets unless its spec says otherwise.

    A supervisor gets no limit: cutting it short would cancel its children without the
    grace each one's own spec promises (OTP's ``supervisor.erl`` defaults to infinity too).
    """
    return math.inf if kind is ChildKind.SUPERVISOR else DEFAULT_SHUTDOWN


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them must be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    REST_FOR_ONE = "rest_for_one"
    """The child that exited and every child started after it."""
    ONE_FOR_ALL = "one_for_all"
    """Every child."""


def should_restart(restart: Restart, reason: ExitReason) -> bool:
    """Whether a child of this restart type is restarted after exiting for ``reason``."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return reason.abnormal
    return False


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise SpecError(f"{attribute.name} must be a number of seconds >= 0, not {value!r}")


@attrs.frozen
class Backoff:
    """Delays between restarts of one child: 0, ``initial``, doubling, up to ``cap``.

    The count of consecutive restarts goes back to zero once the child has stayed up for
    ``stable`` seconds, so the next crash is restarted at once again.
    """

    initial: float = attrs.field(default=1.0, validator=_non_negative)
    cap: float = attrs.field(default=30.0, validator=_non_negative)
    stable: float = attrs.field(default=10.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.cap < self.initial:
            raise SpecError(
                f"backoff cap ({self.cap} s) must be >= its initial delay ({self.initial} s)"
            )

    def delay(self, consecutive: int) -> float:
        """The delay before restart number ``consecutive`` (0-based) of a crash run."""
        if consecutive <= 0:
            return 0.0
        try:
            grown = math.ldexp(self.initial, consecutive - 1)
        except OverflowError:  # a very long crash run: far past any cap
            return self.cap
        return min(self.cap, grown)

    def total_delay(self, restarts: int) -> float:
        """The sum of the delays of the first ``restarts`` restarts of a crash run."""
        return sum(self.delay(n) for n in range(restarts))


DISABLED_BACKOFF: Final = Backoff(initial=0.0, cap=0.0, stable=0.0)
"""No delay at all between restarts (benchmarks; children that must come back at once)."""


@attrs.frozen
class BackoffState:
    """Where one child is in its crash run: how many restarts in a row so far."""

    consecutive: int = 0

    def next(self, backoff: Backoff, uptime: float) -> tuple[float, BackoffState]:
        """After an exit that ``uptime`` seconds followed the start: the delay and new state."""
        consecutive = 0 if uptime >= backoff.stable else self.consecutive
        return backoff.delay(consecutive), BackoffState(consecutive + 1)


@attrs.frozen
class Intensity:
    """At most ``restarts`` restarts within any ``period`` seconds, across all children."""

    restarts: int = attrs.field(default=5)
    period: float = attrs.field(default=60.0)

    @restarts.validator
    def _check_restarts(self, _: object, value: int) -> None:
        if not isinstance(value, int) or value < 0:
            raise SpecError(f"restart intensity must be a whole number >= 0, not {value!r}")

    @period.validator
    def _check_period(self, _: object, value: float) -> None:
        if not value > 0:
            raise SpecError(f"restart period must be a number of seconds > 0, not {value!r}")


class RestartWindow:
    """The times of the restarts still inside the intensity period, oldest first.

    Recording is amortised O(1): times leave from the left as they fall out of the period,
    so the window never holds more than ``intensity.restarts + 1`` of them.
    """

    def __init__(self, intensity: Intensity) -> None:
        self.intensity = intensity
        self._times: collections.deque[float] = collections.deque()

    def _forget_before(self, now: float) -> None:
        horizon = now - self.intensity.period
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()

    def record(self, now: float) -> bool:
        """Count a restart at ``now`` (never earlier than the last); True if now exceeded."""
        self._forget_before(now)
        self._times.append(now)
        return len(self._times) > self.intensity.restarts

    def count(self, now: float) -> int:
        """How many restarts fall inside the period ending at ``now``."""
        self._forget_before(now)
        return len(self._times)


def check_verdict_reachable(intensity: Intensity, backoff: Backoff, child_id: str) -> None:
    """Refuse a backoff that would let a child crashing at once escape the intensity check."""
    total = backoff.total_delay(intensity.restarts)
    if total >= intensity.period:
        raise SpecError(
            f"child {child_id!r}: its backoff delays for {intensity.restarts} restarts add up to "
            f"{total:g} s, which is not less than the restart period ({intensity.period:g} s), "
            "so a crash loop would never be stopped; lower the backoff or raise the period"
        )


# Defaults of the whole supervision runtime, in one place.
DEFAULT_BACKOFF: Final = Backoff()
"""First restart at once, then 1 s, 2 s, 4 s … capped at 30 s; reset after 10 s of uptime."""
DEFAULT_INTENSITY: Final = Intensity()
"""Give up after more than 5 restarts within 60 s."""
DEFAULT_SHUTDOWN: Final = 5.0
"""Seconds a child is given to clean up when stopped, before it is cancelled outright."""
DEFAULT_MAILBOX_SIZE: Final = 64
"""Messages an actor's mailbox holds before ``tell`` waits and ``tell_nowait`` raises."""
DEFAULT_ASK_TIMEOUT: Final = 5.0
"""Seconds ``ask`` waits for a reply."""
DEFAULT_TOPIC_CAPACITY: Final = 10_000
"""Items one subscriber may have waiting before it is sent a gap notice instead."""
