"""A run's history across flow attempts: its rounds and its times (plain functions)."""

from datetime import UTC, datetime

from tasks.execution.history import (
    attempt_ended,
    attempt_started,
    earlier_rounds,
    round_ended,
    run_times,
    with_earlier_rounds,
)
from tasks.execution.rounds import Round, RunOutcome


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def round_of(number: int, started: float, seconds: float, failed: dict) -> Round:
    return Round(number, f"job-{number}", "done", [1, 2, 3], failed, at(started), seconds)


def history() -> list[dict]:
    """A flow attempt that ran one round and was killed, then one that resumed the run."""
    first = {**attempt_started("a1", "flow-1"), "at": at(1000.0)}
    second = {**attempt_started("a2", "flow-1"), "at": at(2000.0)}
    return [
        first,
        round_ended("a1", "run-x", "main", round_of(0, 1001.0, 30.0, {2: "lost: worker died"})),
        round_ended("a1", "run-x-perm", "permutation", round_of(0, 1040.0, 5.0, {})),
        second,
        round_ended("a2", "run-x", "main", round_of(1, 2002.0, 8.0, {})),
        {**attempt_ended("a2", "completed"), "at": at(2020.0)},
    ]


def test_earlier_rounds_are_the_other_attempts_rounds_of_that_server_run():
    rounds = earlier_rounds(history(), "run-x", "a2")
    assert rounds == [round_of(0, 1001.0, 30.0, {2: "lost: worker died"})]  # keys back to int
    assert earlier_rounds(history(), "run-x", "a1") == [round_of(1, 2002.0, 8.0, {})]
    assert earlier_rounds(history(), "run-y", "a2") == []


def test_an_outcome_keeps_its_own_failures_after_the_earlier_rounds():
    now = RunOutcome("run-x", [round_of(1, 2002.0, 8.0, {})], failed={}, conflicts=[])
    merged = with_earlier_rounds(now, earlier_rounds(history(), "run-x", "a2"))
    assert [a.attempt for a in merged.rounds] == [0, 1]
    assert merged.failed == {} and merged.slices_retried == 3
    assert now.rounds == [round_of(1, 2002.0, 8.0, {})]  # not mutated


def test_run_times_sum_the_attempts_and_span_them_all():
    times = run_times(history(), now=2020.0)
    # The killed attempt lasted until its last round ended (1045 s); the second until 2020 s.
    assert times["flow_attempts"] == [
        {"flow_attempt": "a1", "seconds": 45.0},
        {"flow_attempt": "a2", "seconds": 20.0},
    ]
    assert times["seconds"] == 65.0 and times["span_seconds"] == 1020.0
    assert run_times([], now=5.0) == {"seconds": 0, "span_seconds": 0.0, "flow_attempts": []}
