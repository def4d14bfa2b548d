"""Deploy a run's slices, poll the sink, and redeploy what failed, in bounded rounds."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks.execution.client import ServerClient
from tasks.execution.jobs import Backend, JobHandle, JobSpec

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """What happened to a run's slices over all rounds."""

    job_ids: list[str] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)  # one per round
    failed: dict[int, str] = field(default_factory=dict)  # slice -> last reason
    conflicts: list[dict] = field(default_factory=list)  # re-executions that disagreed


def round_timeout(n_slices: int, parallelism: int, slice_timeout: float) -> float:
    """Time a round may take: every wave of slices at most `slice_timeout`, plus slack."""
    return slice_timeout * math.ceil(n_slices / max(1, parallelism)) + 30.0


def run_slices(
    backend: Backend,
    client: ServerClient,
    run_id: str,
    slices: dict[int, str],
    make_spec: Callable[[int, list[int]], JobSpec],
    *,
    max_retries: int,
    slice_timeout: float,
    parallelism: int,
    deadline: float,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    poll_interval: float = 0.5,
) -> RunOutcome:
    """Run every slice to a stored result or until retries or the deadline run out."""
    outcome = RunOutcome()
    remaining = sorted(slices)
    for attempt in range(max_retries + 1):
        if not remaining or time.monotonic() >= deadline:
            break
        if attempt:
            client.register_attempt(run_id, attempt, remaining)
            log.warning("attempt %d: redeploying slices %s", attempt, remaining)
        handle = backend.deploy(make_spec(attempt, remaining), first_attempt=attempt == 0)
        outcome.job_ids.append(handle.job_id)
        bound = min(
            deadline, time.monotonic() + round_timeout(len(remaining), parallelism, slice_timeout)
        )
        reasons, ended = _watch(
            handle, client, run_id, attempt, remaining, bound, on_progress, poll_interval
        )
        status = client.status(run_id)
        received = set(status["received"])
        for err in status["errored"]:
            if err["attempt"] == attempt:
                reasons.setdefault(err["slice"], err["error"])
        failed = [s for s in remaining if s not in received]
        outcome.attempts.append(
            {
                "attempt": attempt,
                "job_id": handle.job_id,
                "ended": ended,
                "slices": remaining,
                "failed": {
                    s: reasons.get(s, "no result before the round's time bound") for s in failed
                },
            }
        )
        remaining = failed
    outcome.conflicts = client.status(run_id).get("conflicts", [])
    if outcome.attempts:
        outcome.failed = dict(outcome.attempts[-1]["failed"])
    else:
        outcome.failed = {s: "deadline passed before deployment" for s in remaining}
    return outcome


def _watch(
    handle: JobHandle,
    client: ServerClient,
    run_id: str,
    attempt: int,
    remaining: list[int],
    bound: float,
    on_progress: Callable[[int, int], None],
    poll_interval: float,
) -> tuple[dict[int, str], str]:
    """Follow one round until its slices are all accounted for or its time bound passes.

    Returns the failure reasons the backend reported, by slice, and how the job ended
    (every round's job is ended explicitly: a DCP job outlives its client otherwise).
    """
    elements = {k + 1: s for k, s in enumerate(remaining)}
    pending, reasons, ended = set(remaining), {}, ["running"]
    try:
        while time.monotonic() < bound:
            for event in handle.events(timeout=poll_interval):
                _note(handle, event, elements.get(event.element), reasons, ended)
            status = client.status(run_id)
            on_progress(len(status["received"]), status["expected"])
            pending -= set(status["received"])
            pending -= {e["slice"] for e in status["errored"] if e["attempt"] == attempt}
            pending -= set(reasons)
            if not pending or handle.done():
                break
    finally:
        if not handle.done():
            handle.cancel()
        for event in handle.events(timeout=0):
            _note(handle, event, elements.get(event.element), reasons, ended)
    return reasons, ended[0]


def _note(handle: JobHandle, event, slice_no: int | None, reasons: dict, ended: list) -> None:
    """Log a backend event; keep slice failure reasons and how the job ended."""
    if event.kind in ("error", "lost") and slice_no is not None:
        reasons[slice_no] = f"{event.kind}: {event.message}".strip()
        log.warning("slice %s %s: %s", slice_no, event.kind, event.message)
    elif event.kind == "result":
        log.info("slice %s result in %.2fs", slice_no, event.seconds or 0.0)
    elif event.kind in ("failed", "nofunds", "cancel_failed"):
        ended[0] = f"{event.kind}: {event.message}"
        log.error("job %s: %s %s", handle.job_id, event.kind, event.message)
    else:
        if event.kind in ("done", "cancelled"):
            ended[0] = event.kind if event.kind == "done" else f"cancelled: {event.message}"
        log.info("job %s: %s %s", handle.job_id, event.kind, event.message)
