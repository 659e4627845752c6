"""The Watchdog's rule (``health.observe``), property-tested: it is pure.

A probe result is a success, a failure that counts, or a failure inside the start period
(reported, never counted). The rule's promises, for any run of results and any options:
``failures`` counted failures in a row make a release degraded, ``successes`` successes in a
row make it healthy again (its very first success at once), ``restart_after`` counted
failures in a row ask for a restart, and nothing ever makes it unknown again.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as s

from dployr.engine.health import HealthState, Verdict, observe
from dployr.models import Health, HealthOptions

UNTIMED = settings(deadline=None)
"""Time is no property of a pure rule: a stall of a busy machine must not fail the test."""
OK, FAIL, STARTING = "ok", "fail", "starting"
RESULTS = s.lists(s.sampled_from([OK, FAIL, STARTING]), max_size=60)
OPTIONS = s.builds(
    HealthOptions,
    failures=s.integers(1, 5),
    successes=s.integers(1, 5),
    restart_after=s.one_of(s.none(), s.integers(1, 6)),
)


def run(results: Iterable[str], options: HealthOptions) -> list[tuple[HealthState, Verdict]]:
    """Each result with the verdict the rule gives on it, from a new release's state."""
    state, seen = HealthState(), []
    for result in results:
        verdict = observe(state, result == OK, result, options, starting=result == STARTING)
        seen.append((state, verdict))
        state = verdict.state
    return seen


def streak(results: list[str], kind: str, skip: str | None = None) -> int:
    """How many results of ``kind`` end ``results``, not counting ``skip`` ones between."""
    count = 0
    for result in reversed(results):
        if result == skip:
            continue
        if result != kind:
            break
        count += 1
    return count


@UNTIMED
@given(RESULTS, OPTIONS)
def test_a_change_is_reported_exactly_when_the_health_changes(
    results: list[str], options: HealthOptions
) -> None:
    for before, verdict in run(results, options):
        assert verdict.changed == (verdict.state.health is not before.health)
        assert verdict.state.message in (OK, FAIL, STARTING)


@UNTIMED
@given(RESULTS, OPTIONS)
def test_an_unknown_release_is_healthy_at_its_first_success_and_never_unknown_again(
    results: list[str], options: HealthOptions
) -> None:
    seen = run(results, options)
    healths = [verdict.state.health for _, verdict in seen]
    first_known = next((i for i, h in enumerate(healths) if h is not Health.UNKNOWN), None)
    if first_known is not None:
        assert Health.UNKNOWN not in healths[first_known:]
    if OK in results:
        first = results.index(OK)
        if seen[first][0].health is Health.UNKNOWN:  # the first success decides at once
            assert healths[first] is Health.HEALTHY


@UNTIMED
@given(RESULTS, OPTIONS)
def test_degraded_exactly_after_enough_counted_failures_in_a_row(
    results: list[str], options: HealthOptions
) -> None:
    for number, (before, verdict) in enumerate(run(results, options)):
        seen = results[: number + 1]
        if seen[-1] != FAIL:
            continue
        counted = streak(seen, FAIL, skip=STARTING)
        assert verdict.state.failures == counted
        if counted >= options.failures:
            assert verdict.state.health is Health.DEGRADED
        else:  # not yet: a failure that is not the last straw changes nothing
            assert verdict.state.health is before.health


@UNTIMED
@given(RESULTS, OPTIONS)
def test_failures_in_the_start_period_are_reported_but_never_count(
    results: list[str], options: HealthOptions
) -> None:
    for before, verdict in run(results, options):
        if verdict.state.message != STARTING:
            continue
        assert (verdict.changed, verdict.restart) == (False, False)
        assert verdict.state.health is before.health
        assert verdict.state.failures == before.failures
        assert verdict.state.successes == 0  # a run of successes is broken all the same


@UNTIMED
@given(RESULTS, OPTIONS)
def test_healthy_again_after_enough_successes_in_a_row(
    results: list[str], options: HealthOptions
) -> None:
    for number, (before, verdict) in enumerate(run(results, options)):
        seen = results[: number + 1]
        if seen[-1] != OK:
            continue
        in_a_row = streak(seen, OK)
        assert verdict.state.successes == in_a_row
        assert verdict.state.failures == 0
        if before.health is Health.DEGRADED and in_a_row < options.successes:
            assert verdict.state.health is Health.DEGRADED
        else:
            assert verdict.state.health is Health.HEALTHY


@UNTIMED
@given(RESULTS, OPTIONS)
def test_a_restart_is_asked_for_exactly_at_restart_after_counted_failures(
    results: list[str], options: HealthOptions
) -> None:
    for number, (_, verdict) in enumerate(run(results, options)):
        seen = results[: number + 1]
        counted = streak(seen, FAIL, skip=STARTING) if seen[-1] == FAIL else 0
        expected = options.restart_after is not None and counted >= options.restart_after
        assert verdict.restart == expected
