"""More promises of the status machine (``status.advance``), property-tested over any run
of events: the deploy bracket, the active deployment, the restart count, a crash loop.
(tests/engine/test_status.py holds the first ones: the five words, ``since``, other
releases' events.)"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as s

from dployr.engine import status as st
from dployr.models import ServiceStatus

UNTIMED = settings(deadline=None)
"""Time is no property of a pure rule: a stall of a busy machine must not fail the test."""
RELEASES = s.sampled_from(["release-1.1", "release-2.2"])
PIDS = s.integers(min_value=100, max_value=103)
TIMES = s.floats(min_value=1_000.0, max_value=2_000.0)
WORDS = s.sampled_from(["exited with code 1", "restarting in 4 s", ""])
EVENTS = s.one_of(
    s.builds(st.DeployBegan, s.integers(1, 3)),
    s.builds(st.DeployEnded, s.integers(1, 3), s.booleans(), WORDS),
    s.builds(st.ReleaseStarted, RELEASES, PIDS, TIMES, WORDS),
    s.builds(st.ReleaseSettled, RELEASES, PIDS, WORDS),
    s.builds(st.ReleaseExited, RELEASES, s.booleans(), WORDS),
    s.builds(st.ReleaseRestarting, RELEASES, WORDS),
    s.builds(st.ReleaseDone, RELEASES, s.booleans(), WORDS),
    s.builds(st.ReleaseGaveUp, RELEASES, WORDS),
    s.builds(st.Promoted, RELEASES, s.one_of(s.none(), PIDS), s.one_of(s.none(), TIMES)),
    s.just(st.Started()),
    s.just(st.RestartBegan()),
    s.builds(st.RestartFailed, WORDS),
    s.builds(st.Failed, WORDS),
    s.just(st.Stopped()),
)
HISTORY = s.lists(EVENTS, max_size=40)
NEW = st.ServiceState(ServiceStatus.STOPPED, 0.0, active_deployment=None)
"""A service as the engine makes it: stopped, nothing deployed yet."""


def fold(events: list[st.StatusEvent]) -> list[st.ServiceState]:
    """The state before any event, then after each one."""
    states = [NEW]
    for number, event in enumerate(events):
        states.append(st.advance(states[-1], event, 3_000.0 + number))
    return states


@UNTIMED
@given(HISTORY)
def test_deploying_exactly_between_a_deploys_begin_and_end(events: list[st.StatusEvent]) -> None:
    deploying: int | None = None
    for event, state in zip(events, fold(events)[1:], strict=True):
        if isinstance(event, st.DeployBegan):
            deploying = event.deployment
        elif isinstance(event, st.DeployEnded):
            deploying = None
        assert state.deploying == deploying
        assert (state.status is ServiceStatus.DEPLOYING) == (deploying is not None)


@UNTIMED
@given(HISTORY)
def test_the_active_deployment_is_the_last_one_that_succeeded(
    events: list[st.StatusEvent],
) -> None:
    active: int | None = None
    for event, state in zip(events, fold(events)[1:], strict=True):
        if isinstance(event, st.DeployEnded) and event.succeeded:
            active = event.deployment
        assert state.active_deployment == active


@UNTIMED
@given(HISTORY)
def test_restarts_count_the_current_releases_restarts_since_it_was_promoted(
    events: list[st.StatusEvent],
) -> None:
    states = fold(events)
    for event, (before, after) in zip(events, itertools.pairwise(states), strict=True):
        if isinstance(event, st.Promoted | st.Started):
            assert after.restarts == 0
        elif isinstance(event, st.ReleaseRestarting) and event.release == before.release:
            assert after.restarts == before.restarts + 1
        else:
            assert after.restarts == before.restarts


@UNTIMED
@given(HISTORY)
def test_no_start_time_without_a_process(events: list[st.StatusEvent]) -> None:
    for state in fold(events):
        if state.pid is None:
            assert state.started_at is None
        assert state.process is not ServiceStatus.DEPLOYING


@UNTIMED
@given(HISTORY, RELEASES, PIDS, s.integers(1, 8))
def test_a_crash_loop_never_shows_running(
    events: list[st.StatusEvent], release: str, pid: int, crashes: int
) -> None:
    state = fold([*events, st.Promoted(release, pid, 1_500.0)])[-1]
    for crash in range(crashes):
        for event in (
            st.ReleaseExited(release, False, "exited with code 1"),
            st.ReleaseRestarting(release, f"restarting in {2**crash} s"),
            st.ReleaseStarted(release, pid + 1 + crash, 1_600.0 + crash),
        ):
            state = st.advance(state, event, 1_600.0 + crash)
            assert state.run_status is ServiceStatus.RESTARTING
            assert state.status is not ServiceStatus.RUNNING
    assert state.restarts == crashes


@UNTIMED
@given(HISTORY, s.integers(1, 3))
def test_a_failed_deploy_fails_a_service_with_nothing_running_and_spares_a_running_one(
    events: list[st.StatusEvent], deployment: int
) -> None:
    before = fold([*events, st.DeployBegan(deployment)])[-1]
    after = st.advance(before, st.DeployEnded(deployment, False, "build failed"), 9_000.0)
    assert after.message == "build failed"
    if before.run_status is ServiceStatus.STOPPED and before.pid is None:
        assert after.status is ServiceStatus.FAILED
    else:
        assert after.status is before.run_status
        assert (after.pid, after.release) == (before.pid, before.release)
