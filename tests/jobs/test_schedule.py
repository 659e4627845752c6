"""The pure rules of scheduled jobs: due times in a zone (DST included), catch-up, concurrency."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from dployr.schedule import (
    MAX_SCAN,
    CatchUp,
    Concurrency,
    Decision,
    InvalidSchedule,
    JobOptions,
    Schedule,
    catch_up,
    check_schedule,
    on_due,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int, zone: ZoneInfo | None = None) -> float:
    return datetime(*fields, tzinfo=zone or UTC).timestamp()  # type: ignore[misc]


def local(schedule: Schedule, t: float) -> str:
    return schedule.local(t).strftime("%Y-%m-%d %H:%M %Z")


def test_a_nightly_schedule_falls_due_every_night_at_its_time() -> None:
    nightly = Schedule("0 3 * * *")
    t = at(2026, 12, 6, 20, 0)
    due = []
    for _ in range(3):
        t = nightly.next_after(t)
        due.append(local(nightly, t))
    assert due == ["2026-12-07 03:00 UTC", "2026-12-08 03:00 UTC", "2026-12-09 03:00 UTC"]


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [
        ("@hourly", "2026-12-06 21:00 UTC"),
        ("@daily", "2026-12-07 00:00 UTC"),
        ("@midnight", "2026-12-07 00:00 UTC"),
        ("@weekly", "2026-12-13 00:00 UTC"),
        ("@monthly", "2027-01-01 00:00 UTC"),
        ("@yearly", "2027-01-01 00:00 UTC"),
    ],
)
def test_cron_nicknames(nickname: str, expected: str) -> None:
    schedule = Schedule(nickname)
    assert local(schedule, schedule.next_after(at(2026, 12, 6, 20, 0))) == expected


def test_the_time_zone_moves_the_due_time() -> None:
    schedule = Schedule("0 3 * * *", "Europe/Berlin")
    t = schedule.next_after(at(2026, 12, 6, 20, 0))
    assert datetime.fromtimestamp(t, UTC).hour == 2  # 03:00 CET is 02:00 UTC
    assert local(schedule, t) == "2026-12-07 03:00 CET"


def test_a_time_the_spring_change_skips_runs_once_just_after_it() -> None:
    # On 2026-03-29 Berlin's clocks jump from 02:00 to 03:00: 02:30 does not exist.
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    t = at(2026, 3, 27, 12, 0, zone=BERLIN)
    due = []
    for _ in range(4):
        t = schedule.next_after(t)
        due.append(local(schedule, t))
    assert due == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:30 CEST",
        "2026-03-31 02:30 CEST",
    ]


def test_a_time_the_autumn_change_repeats_runs_once() -> None:
    # On 2026-10-25 Berlin's clocks go back from 03:00 to 02:00: 02:30 happens twice.
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    t = at(2026, 10, 24, 12, 0, zone=BERLIN)
    due = []
    for _ in range(3):
        t = schedule.next_after(t)
        due.append(t)
    assert [local(schedule, t) for t in due] == [
        "2026-10-25 02:30 CEST",
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
    ]
    assert due[1] - due[0] == 25 * 3600  # that day has 25 hours, and one run


def test_an_hourly_job_keeps_its_hours_across_the_autumn_change() -> None:
    schedule = Schedule("0 * * * *", "Europe/Berlin")
    t = at(2026, 10, 25, 0, 30, zone=BERLIN)
    due = []
    for _ in range(4):
        t = schedule.next_after(t)
        due.append(t)
    # Real hours: 01:00, 02:00 CEST, 02:00 CET, 03:00 CET, one hour apart each.
    assert [b - a for a, b in itertools.pairwise(due)] == [3600, 3600, 3600]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 3 * *", "must have 5 fields"),
        ("0 3 * * * *", "must have 5 fields"),
        ("61 3 * * *", "is not valid"),
        ("@reboot", "unknown schedule"),
        ("", "cron expression"),
        ("0 0 31 2 *", "not valid"),
    ],
)
def test_bad_schedules_are_refused_in_one_sentence(text: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        check_schedule(text)


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Olympus'"):
        JobOptions(schedule="@daily", timezone="Mars/Olympus")
    with pytest.raises(InvalidSchedule, match="timeout must be more than 0"):
        JobOptions(timeout=0)
    with pytest.raises(InvalidSchedule, match="starting-deadline"):
        JobOptions(starting_deadline=-1)


def test_the_defaults_are_the_issue_s() -> None:
    options = JobOptions()
    assert options.schedule is None
    assert options.cron is None
    assert options.timezone == "UTC"
    assert options.concurrency is Concurrency.FORBID
    assert options.timeout == 3600
    assert options.starting_deadline is None


@pytest.mark.parametrize(
    ("active", "concurrency", "decision"),
    [
        (0, Concurrency.FORBID, Decision.START),
        (1, Concurrency.FORBID, Decision.SKIP),
        (0, Concurrency.REPLACE, Decision.START),
        (1, Concurrency.REPLACE, Decision.REPLACE),
        (3, Concurrency.ALLOW, Decision.START),
    ],
)
def test_concurrency(active: int, concurrency: Concurrency, decision: Decision) -> None:
    assert on_due(active, concurrency) is decision


HOURLY = Schedule("@hourly")


def test_nothing_missed_nothing_to_catch_up() -> None:
    assert catch_up(HOURLY, at(2026, 1, 1, 10, 0), at(2026, 1, 1, 10, 59), None).nothing


def test_the_latest_missed_due_time_runs_once_and_the_rest_are_missed() -> None:
    result = catch_up(HOURLY, at(2026, 1, 1, 10, 0), at(2026, 1, 1, 13, 5), 600)
    assert result == CatchUp(
        run_at=at(2026, 1, 1, 13, 0), missed=(at(2026, 1, 1, 11, 0), at(2026, 1, 1, 12, 0))
    )


def test_past_the_starting_deadline_every_missed_due_time_is_missed() -> None:
    result = catch_up(HOURLY, at(2026, 1, 1, 10, 0), at(2026, 1, 1, 13, 15), 600)
    assert result.run_at is None
    assert result.missed == (at(2026, 1, 1, 11, 0), at(2026, 1, 1, 12, 0), at(2026, 1, 1, 13, 0))


def test_a_long_outage_counts_its_latest_missed_times_and_says_there_were_more() -> None:
    every_minute = Schedule("* * * * *")
    result = catch_up(every_minute, at(2026, 1, 1, 0, 0), at(2026, 1, 8, 0, 0, 30), None)
    assert result.run_at == at(2026, 1, 8, 0, 0)
    assert len(result.missed) == MAX_SCAN - 1
    assert result.more_missed


@given(
    expression=hs.sampled_from(["* * * * *", "*/7 * * * *", "0 3 * * *", "15 */2 * * 1-5"]),
    zone=hs.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    handled=hs.integers(1_700_000_000, 1_800_000_000),
    down=hs.integers(0, 10 * 86400),
    deadline=hs.none() | hs.integers(0, 86400),
)
def test_catch_up_runs_at_most_once_and_drops_nothing(
    expression: str, zone: str, handled: int, down: int, deadline: int | None
) -> None:
    schedule = Schedule(expression, zone)
    now = handled + down + 0.5
    result = catch_up(schedule, handled, now, deadline)
    runs = [] if result.run_at is None else [result.run_at]
    seen = [*result.missed, *runs]
    # Every due time accounted for is in (handled, now], once, oldest first.
    assert all(handled < t <= now for t in seen)
    assert seen == sorted(set(seen))
    # Nothing dropped: unless there were too many to list, every due time is there.
    due = schedule.due_back(now, after=handled, limit=MAX_SCAN + 1)
    if not result.more_missed:
        assert sorted(due) == seen
    # The run, if any, is the latest due time, within the deadline.
    if result.run_at is not None:
        assert result.run_at == max(due)
        assert deadline is None or now - result.run_at <= deadline
    elif due:
        assert deadline is not None
        assert now - max(due) > deadline
    # Starting again right after (the run or the misses recorded) finds nothing.
    if seen:
        assert catch_up(schedule, max(seen), now, deadline).nothing


@given(
    expression=hs.sampled_from(["* * * * *", "30 2 * * *", "0 */3 * * *", "@weekly"]),
    zone=hs.sampled_from(["UTC", "Europe/Berlin", "America/Sao_Paulo"]),
    t=hs.floats(1_600_000_000, 1_900_000_000),
)
def test_the_next_due_time_is_after_and_nothing_lies_between(
    expression: str, zone: str, t: float
) -> None:
    schedule = Schedule(expression, zone)
    following = schedule.next_after(t)
    assert following > t
    assert schedule.due_back(following - 1, after=t, limit=1) == []
    assert schedule.last_at_or_before(following) == following
