"""A run's record across flow attempts: every round of every attempt, and the time they took.

The flow appends one JSON line per event to the run folder's `history.jsonl` as it happens,
so a killed or failed flow run leaves its rounds behind for the attempt that resumes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.execution.rounds import Round, RunOutcome


@dataclass(frozen=True)
class Journal:
    """Where a run's history is kept, and which flow attempt is writing it now."""

    path: Path
    flow_attempt: str


def _stamped(event: str, flow_attempt: str, **fields) -> dict:
    """A history line with the time it was written."""
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return {"event": event, "flow_attempt": flow_attempt, **fields, "at": at}


def attempt_started(flow_attempt: str, flow_run_id: str) -> dict:
    """The line that opens a flow attempt."""
    return _stamped("flow_attempt", flow_attempt, flow_run_id=flow_run_id)


def round_ended(flow_attempt: str, run_id: str, kind: str, attempt: Round) -> dict:
    """The line of one round of one job."""
    return {
        "event": "round",
        "flow_attempt": flow_attempt,
        "run_id": run_id,
        "kind": kind,
        "round": asdict(attempt),
    }


def attempt_ended(flow_attempt: str, state: str) -> dict:
    """The line that closes a flow attempt ('completed', 'failed: ...')."""
    return _stamped("flow_ended", flow_attempt, state=state)


def earlier_rounds(history: list[dict], run_id: str, flow_attempt: str) -> list[Round]:
    """The rounds of a server run that earlier flow attempts played, in order."""
    rounds = []
    for line in history:
        if line.get("event") != "round" or line["run_id"] != run_id:
            continue
        if line["flow_attempt"] == flow_attempt:
            continue
        fields = dict(line["round"])
        fields["failed"] = {int(k): v for k, v in fields["failed"].items()}
        rounds.append(Round(**fields))
    return rounds


def with_earlier_rounds(outcome: RunOutcome, earlier: list[Round]) -> RunOutcome:
    """This attempt's outcome, its rounds preceded by the earlier attempts' ones."""
    return RunOutcome(
        outcome.run_id,
        rounds=[*earlier, *outcome.rounds],
        failed=dict(outcome.failed),
        conflicts=list(outcome.conflicts),
    )


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def run_times(history: list[dict], now: float) -> dict:
    """The run's time over its flow attempts: their sum, the span, and each attempt's."""
    spans: dict[str | None, list[float]] = {}  # [start, end] by flow attempt id
    for line in history:
        key = line.get("flow_attempt")
        if line.get("event") == "flow_attempt":
            spans.setdefault(key, [_seconds(line["at"])] * 2)
        elif key in spans:
            if line["event"] == "round":
                end = _seconds(line["round"]["started_at"]) + line["round"]["seconds"]
            else:
                end = _seconds(line["at"])
            spans[key][1] = max(spans[key][1], end)
    if spans:
        last = list(spans)[-1]
        spans[last][1] = max(spans[last][1], now)  # the attempt running now
    seconds = {k: round(b - a, 3) for k, (a, b) in spans.items()}
    attempts = [{"flow_attempt": k, "seconds": s} for k, s in seconds.items()]
    starts = [a for a, _ in spans.values()] or [now]
    ends = [b for _, b in spans.values()] or [now]
    return {
        "seconds": round(sum(seconds.values()), 3),
        "span_seconds": round(max(ends) - min(starts), 3),
        "flow_attempts": attempts,
    }
