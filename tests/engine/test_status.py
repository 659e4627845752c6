"""The status state machine (``engine/status.py``), property-tested: it is pure."""

from __future__ import annotations

import itertools

import attrs
from hypothesis import given
from hypothesis import strategies as s

from dployr.engine import status as st
from dployr.models import ServiceStatus

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


def run(events: list[st.StatusEvent]) -> list[st.ServiceState]:
    state = st.ServiceState(ServiceStatus.STOPPED, 0.0, process=ServiceStatus.STOPPED)
    states = [state]
    for number, event in enumerate(events):
        state = st.advance(state, event, 3_000.0 + number)
        states.append(state)
    return states


@given(s.lists(EVENTS, max_size=40))
def test_deploying_while_a_deploy_runs_else_what_the_release_does(
    events: list[st.StatusEvent],
) -> None:
    for state in run(events)[1:]:
        assert (state.status is ServiceStatus.DEPLOYING) == (state.deploying is not None)
        if state.deploying is None:
            assert state.status is state.run_status
        assert state.run_status is not ServiceStatus.DEPLOYING


@given(s.lists(EVENTS, max_size=40))
def test_running_has_a_process_and_since_is_its_start(events: list[st.StatusEvent]) -> None:
    for state in run(events):
        if state.status is ServiceStatus.RUNNING:
            assert state.pid is not None
            if state.started_at is not None:
                assert state.since == state.started_at


@given(s.lists(EVENTS, max_size=40))
def test_since_moves_only_with_the_status_or_a_new_process(
    events: list[st.StatusEvent],
) -> None:
    states = run(events)
    for before, after in itertools.pairwise(states):
        if after.since != before.since:
            assert after.status is not before.status or after.started_at != before.started_at


@given(s.lists(EVENTS, max_size=40), RELEASES, PIDS, TIMES)
def test_a_restarted_process_is_not_running_before_it_settles(
    events: list[st.StatusEvent], release: str, pid: int, at: float
) -> None:
    state = run([*events, st.Promoted(release, pid, at), st.ReleaseExited(release, False, "x")])[-1]
    assert state.status in (ServiceStatus.RESTARTING, ServiceStatus.DEPLOYING)
    for event in (
        st.ReleaseRestarting(release, "restarting in 4 s"),
        st.ReleaseStarted(release, pid + 1, at),
    ):
        state = st.advance(state, event, at)
        assert state.run_status is ServiceStatus.RESTARTING
    state = st.advance(state, st.ReleaseSettled(release, pid + 1), at + 5)
    assert state.run_status is ServiceStatus.RUNNING
    assert (state.pid, state.started_at) == (pid + 1, at)


@given(s.lists(EVENTS, max_size=40), EVENTS)
def test_events_of_another_release_change_nothing(
    events: list[st.StatusEvent], event: st.StatusEvent
) -> None:
    state = run(events)[-1]
    release = getattr(event, "release", None)
    if release is None or release == state.release or isinstance(event, st.Promoted):
        return
    assert st.advance(state, event, 9_999.0) == state


@given(s.lists(EVENTS, max_size=40))
def test_stop_stops_whatever_happened(events: list[st.StatusEvent]) -> None:
    state = run([*events, st.Stopped()])[-1]
    assert state.run_status is ServiceStatus.STOPPED
    assert (state.pid, state.release) == (None, None)
    assert attrs.evolve(state, deploying=None).run_status is ServiceStatus.STOPPED
