"""The roll-out state machine (``engine/service/rollout.py``): pure, so tested without trio."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as s

from dployr.engine.service.rollout import InvalidStep, Plan, Rollout, Step, stops_first
from dployr.models import RolloutMode, ServiceSettings, Source

OLD = "release-1.1"


def walk(
    rollout: Rollout, failing: frozenset[Step] = frozenset(), stopping: bool = False
) -> list[Step]:
    """The steps a roll-out takes when the steps in ``failing`` fail and the others succeed."""
    steps = [rollout.step]
    while not rollout.step.final:
        step = rollout.step
        if step in failing:
            rollout.failed(step, stopping=stopping)
        else:
            rollout.done(step)
        steps.append(rollout.step)
    return steps


def test_a_gated_rollout_starts_the_new_release_beside_the_old_and_stops_the_old_last() -> None:
    assert walk(Rollout(Plan(old=OLD))) == [
        Step.START_NEW,
        Step.WAIT_READY,
        Step.SWITCH,
        Step.STOP_OLD,
        Step.SUCCEEDED,
    ]


def test_a_start_with_nothing_running_switches_without_waiting() -> None:
    assert walk(Rollout(Plan(old=None, gate=False))) == [
        Step.START_NEW,
        Step.SWITCH,
        Step.SUCCEEDED,
    ]


def test_a_stop_first_rollout_stops_the_old_release_before_the_new_one_starts() -> None:
    assert walk(Rollout(Plan(old=OLD, stop_first=True))) == [
        Step.STOP_OLD_FIRST,
        Step.START_NEW,
        Step.WAIT_READY,
        Step.SWITCH,
        Step.SUCCEEDED,
    ]


def test_a_new_release_that_is_never_ready_is_stopped_and_the_old_one_keeps_serving() -> None:
    rollout = Rollout(Plan(old=OLD))
    assert walk(rollout, frozenset({Step.WAIT_READY})) == [
        Step.START_NEW,
        Step.WAIT_READY,
        Step.UNDO_NEW,
        Step.FAILED,
    ]
    assert rollout.failed_at is Step.WAIT_READY


def test_a_failed_stop_first_rollout_starts_the_old_release_again() -> None:
    assert walk(Rollout(Plan(old=OLD, stop_first=True)), frozenset({Step.START_NEW})) == [
        Step.STOP_OLD_FIRST,
        Step.START_NEW,
        Step.UNDO_NEW,
        Step.START_OLD_AGAIN,
        Step.FAILED,
    ]


def test_an_old_release_that_had_given_up_is_not_started_again() -> None:
    plan = Plan(old=OLD, old_serving=False, stop_first=True)
    assert Step.START_OLD_AGAIN not in walk(Rollout(plan), frozenset({Step.WAIT_READY}))


def test_nothing_starts_again_while_the_service_is_being_stopped() -> None:
    rollout = Rollout(Plan(old=OLD, stop_first=True))
    steps = walk(rollout, frozenset({Step.WAIT_READY}), stopping=True)
    assert steps[-2:] == [Step.UNDO_NEW, Step.FAILED]


def test_a_failed_switch_of_a_stop_first_rollout_starts_the_old_release_again() -> None:
    steps = walk(Rollout(Plan(old=OLD, stop_first=True)), frozenset({Step.SWITCH}))
    assert steps[-3:] == [Step.SWITCH, Step.START_OLD_AGAIN, Step.FAILED]


def test_a_step_the_machine_is_not_at_is_refused() -> None:
    rollout = Rollout(Plan(old=OLD))
    with pytest.raises(InvalidStep, match="at START_NEW, not SWITCH"):
        rollout.done(Step.SWITCH)


PLANS = s.builds(
    Plan,
    old=s.one_of(s.none(), s.just(OLD)),
    old_serving=s.booleans(),
    stop_first=s.booleans(),
    gate=s.booleans(),
)
STEPS = s.frozensets(s.sampled_from([step for step in Step if not step.final]))


@given(PLANS, STEPS, s.booleans())
def test_every_rollout_ends_and_keeps_its_promises(
    plan: Plan, failing: frozenset[Step], stopping: bool
) -> None:
    rollout = Rollout(plan)
    steps = walk(rollout, failing, stopping)
    assert len(steps) <= len(Step)  # it ends, and never takes a step twice
    assert len(set(steps)) == len(steps)
    assert steps[-1] is (Step.FAILED if rollout.failed_at is not None else Step.SUCCEEDED)
    if Step.SWITCH in steps:
        before = steps[: steps.index(Step.SWITCH)]
        # Traffic moves only to a release that started, and, gated, was found ready.
        assert Step.START_NEW in before
        assert (Step.WAIT_READY in before) is plan.gate
    if Step.STOP_OLD in steps:  # the old release stops only after the switch, never on failure
        assert steps.index(Step.STOP_OLD) > steps.index(Step.SWITCH)
    if Step.START_OLD_AGAIN in steps:  # only what this roll-out stopped, only when it failed
        assert Step.STOP_OLD_FIRST in steps
        assert plan.old_serving
        assert not stopping
        assert rollout.failed_at is not None
    if rollout.failed_at in (Step.START_NEW, Step.WAIT_READY):  # a new release never lingers
        assert Step.UNDO_NEW in steps
    if plan.old is None:
        assert Step.STOP_OLD_FIRST not in steps
        assert Step.STOP_OLD not in steps


@pytest.mark.parametrize(
    ("mode", "port", "first"),
    [
        (RolloutMode.AUTO, None, True),
        (RolloutMode.AUTO, 8080, False),
        (RolloutMode.STOP_FIRST, 8080, True),
        (RolloutMode.OVERLAP, None, False),
    ],
)
def test_a_worker_stops_first_and_a_service_with_a_port_starts_first(
    mode: RolloutMode, port: int | None, first: bool
) -> None:
    settings = ServiceSettings(source=Source("/repo"), run_cmd="run", port=port, rollout=mode)
    assert stops_first(settings) is first
