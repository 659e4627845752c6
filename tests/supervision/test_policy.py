"""The restart policy is pure; Hypothesis checks its rules over many inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dployr.errors import SpecError
from dployr.supervision import policy
from dployr.supervision.policy import (
    Backoff,
    BackoffState,
    Intensity,
    Restart,
    RestartWindow,
    check_verdict_reachable,
    should_restart,
)
from dployr.supervision.reasons import NORMAL, SHUTDOWN, Crashed, ExitReason

seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)
reasons: st.SearchStrategy[ExitReason] = st.one_of(
    st.just(NORMAL),
    st.just(SHUTDOWN),
    st.builds(Crashed, exit_code=st.integers(1, 255)),
    st.builds(Crashed, signal=st.integers(1, 64)),
)
backoffs = st.builds(
    lambda a, b, stable: Backoff(initial=min(a, b), cap=max(a, b), stable=stable),
    seconds,
    seconds,
    seconds,
)


@given(reasons)
def test_permanent_always_restarts(reason: ExitReason) -> None:
    assert should_restart(Restart.PERMANENT, reason)


@given(reasons)
def test_transient_restarts_only_after_a_crash(reason: ExitReason) -> None:
    assert should_restart(Restart.TRANSIENT, reason) == isinstance(reason, Crashed)


@given(reasons)
def test_temporary_never_restarts(reason: ExitReason) -> None:
    assert not should_restart(Restart.TEMPORARY, reason)


@given(backoffs, st.integers(0, 10_000))
def test_backoff_first_restart_is_immediate_then_grows_to_the_cap(backoff: Backoff, n: int) -> None:
    assert backoff.delay(0) == 0
    assert backoff.delay(n) <= backoff.cap
    assert backoff.delay(n + 1) >= backoff.delay(n)
    if 1 <= n <= 1000:
        assert backoff.delay(n) == min(backoff.cap, backoff.initial * 2 ** (n - 1))


@given(backoffs, st.lists(seconds, min_size=1, max_size=30))
def test_backoff_resets_after_a_stable_uptime(backoff: Backoff, uptimes: list[float]) -> None:
    state = BackoffState()
    for uptime in uptimes:
        delay, after = state.next(backoff, uptime)
        if uptime >= backoff.stable:
            assert delay == 0
            assert after.consecutive == 1
        else:
            assert delay == backoff.delay(state.consecutive)
            assert after.consecutive == state.consecutive + 1
        state = after


def test_default_backoff_sequence() -> None:
    state = BackoffState()
    delays = []
    for _ in range(8):
        delay, state = state.next(policy.DEFAULT_BACKOFF, uptime=0.0)
        delays.append(delay)
    assert delays == [0, 1, 2, 4, 8, 16, 30, 30]


@given(
    st.integers(0, 20),
    st.floats(min_value=0.001, max_value=1e4),
    st.lists(st.floats(min_value=0, max_value=100), max_size=60),
)
def test_window_counts_restarts_inside_the_period(
    restarts: int, period: float, gaps: list[float]
) -> None:
    window = RestartWindow(Intensity(restarts, period))
    now = 0.0
    history: list[float] = []
    for gap in gaps:
        now += gap
        history.append(now)
        exceeded = window.record(now)
        inside = [t for t in history if t > now - period]
        assert window.count(now) == len(inside)  # old restarts are forgotten: bounded memory
        assert exceeded == (len(inside) > restarts)


@given(backoffs, st.integers(0, 30), st.floats(min_value=0.001, max_value=1e5))
def test_a_crash_loop_always_reaches_a_verdict_when_the_check_passes(
    backoff: Backoff, restarts: int, period: float
) -> None:
    intensity = Intensity(restarts, period)
    try:
        check_verdict_reachable(intensity, backoff, "child")
    except SpecError:
        assert backoff.total_delay(restarts) >= period
        return
    # Simulate a child that crashes the moment it starts, under the supervisor's rules.
    window, state, now = RestartWindow(intensity), BackoffState(), 0.0
    for _ in range(restarts + 1):
        if window.record(now):
            break
        delay, state = state.next(backoff, uptime=0.0)
        now += delay
    else:
        pytest.fail("the crash loop never exceeded the intensity")
    assert now < period


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -1}, "initial must be a number of seconds >= 0"),
        ({"cap": math.nan}, "cap must be a number of seconds >= 0"),
        ({"initial": 5, "cap": 1}, "backoff cap (1 s) must be >= its initial delay (5 s)"),
    ],
)
def test_backoff_is_validated_when_built(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Backoff(**kwargs)


@pytest.mark.parametrize(("restarts", "period"), [(-1, 60), (2.5, 60), (5, 0), (5, -3)])
def test_intensity_is_validated_when_built(restarts: int, period: float) -> None:
    with pytest.raises(SpecError):
        Intensity(restarts, period)


def test_the_defaults_reach_a_verdict() -> None:
    check_verdict_reachable(policy.DEFAULT_INTENSITY, policy.DEFAULT_BACKOFF, "child")
    with pytest.raises(SpecError, match="would never be stopped"):
        check_verdict_reachable(Intensity(5, 10), policy.DEFAULT_BACKOFF, "child")
