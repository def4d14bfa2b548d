"""Deploy a run's slices, poll the sink, and redeploy what failed, in bounded rounds."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from tasks.execution.client import ServerClient
from tasks.execution.jobs import Backend, JobHandle, JobSpec, SliceEvent
from tasks.science.plan import Signature, iter_slice_inputs, slice_count
from tasks.science.work import WORKER_SHA256_KEY, source_sha256
from tasks.status import RunStatus, SliceConflict

if TYPE_CHECKING:  # the worker's types, without loading scikit-learn
    from tasks.science.worker import SliceDatum, WorkerConfig

log = logging.getLogger(__name__)
Logger = logging.Logger | logging.LoggerAdapter  # a Prefect task passes its run logger
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class JobContext:
    """What every job of a run shares: where it runs, what it reads, and its limits."""

    backend: Backend
    client: ServerClient
    token: str = field(repr=False)  # the run token in workers' URLs (never logged)
    dataset_name: str
    config: WorkerConfig
    work_source: str
    max_retries: int
    slice_timeout: float
    deadline: float  # time.monotonic() after which no round starts or continues
    retry_backoff: float = 5.0  # seconds before round 1, doubling, at most MAX_BACKOFF
    # The work function's source, registered on the server for `work_source`, a remote stub,
    # to fetch; '' when `work_source` carries it itself.
    work_text: str = field(default="", repr=False)


@dataclass(frozen=True)
class Round:
    """One round: the job that ran it, how it ended, why slices failed, and when it ran.

    A round the server's outage interrupted (`outage` says what it was) does not count
    against the retries.
    """

    attempt: int
    job_id: str
    ended: str
    slices: list[int]
    failed: dict[int, str]
    started_at: str = ""  # UTC, ISO 8601
    seconds: float = 0.0
    outage: str = ""
    job_failure: str = ""  # why the job failed as a whole (no funds, refused), if it did


@dataclass
class RunOutcome:
    """What happened to a run's slices over all rounds."""

    run_id: str
    rounds: list[Round] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # slice -> last reason
    conflicts: list[SliceConflict] = field(default_factory=list)  # re-executions that disagreed

    @property
    def job_ids(self) -> list[str]:
        """Every job deployed, in order."""
        return [a.job_id for a in self.rounds]

    @property
    def job_failure(self) -> str:
        """Why the last round's job failed as a whole ('' if it did not)."""
        return self.rounds[-1].job_failure if self.rounds else ""

    @property
    def slices_retried(self) -> int:
        """Slice deployments after the first round."""
        return sum(len(a.slices) for a in self.rounds[1:])

    def as_record(self) -> dict:
        """JSON-ready, for run.json and the report's summary."""
        return {**asdict(self), "job_ids": self.job_ids, "slices_retried": self.slices_retried}


class RunObserver:
    """Hears how a run goes: slices done, and each round as it ends (to keep its record)."""

    def progress(self, done: int, total: int) -> None:
        """Slices with a result so far."""

    def round_ended(self, attempt: Round) -> None:
        """A round ended (its job is over)."""


class SliceSource(Protocol):
    """A run's slices: their numbers, and their data as JSON text, made when asked for."""

    def numbers(self) -> Sequence[int]:
        """Every slice number."""

    def texts(self, numbers: Iterable[int] | None = None) -> Iterator[tuple[int, str]]:
        """(number, datum text) of every slice, or of `numbers`, one at a time."""


@dataclass(frozen=True)
class PlannedSlices:
    """A plan's signatures packed `per_slice` to a slice, never all held as slice data."""

    signatures: Sequence[Signature]  # a compact SignaturePlan for a big search
    per_slice: int

    def numbers(self) -> range:
        """1..n."""
        return range(1, slice_count(len(self.signatures), self.per_slice) + 1)

    def texts(self, numbers: Iterable[int] | None = None) -> Iterator[tuple[int, str]]:
        """Slice data as registered, made one slice at a time."""
        return iter_slice_inputs(self.signatures, self.per_slice, numbers)


@dataclass(frozen=True)
class ListedSlices:
    """Slices given as data (a null's or a validation's: small, with fields of their own)."""

    by_number: dict[int, SliceDatum]

    def numbers(self) -> list[int]:
        """Their numbers, sorted."""
        return sorted(self.by_number)

    def texts(self, numbers: Iterable[int] | None = None) -> Iterator[tuple[int, str]]:
        """Each datum as sorted-key JSON."""
        for n in self.numbers() if numbers is None else numbers:
            yield n, json.dumps(self.by_number[n], sort_keys=True)


def round_timeout(n_slices: int, parallelism: int, slice_timeout: float) -> float:
    """Time a round may take: every wave of slices at most `slice_timeout`, plus slack."""
    return slice_timeout * math.ceil(n_slices / max(1, parallelism)) + 30.0


def job_spec(
    ctx: JobContext,
    run_id: str,
    job_name: str,
    slices: SliceSource,
    attempt: int,
    numbers: list[int],
) -> JobSpec:
    """The job of one round: the given plan slices as elements 1..n (their data or URLs)."""
    remote = ctx.backend.remote_inputs
    if remote:
        inputs = tuple(ctx.client.slice_url(run_id, n, ctx.token) for n in numbers)
        config = ctx.client.config_url(run_id, ctx.token)
    else:
        inputs = tuple(text for _, text in slices.texts(numbers))
        config = config_text(ctx)
    return JobSpec(
        name=f"{job_name}#{attempt}",
        slices=inputs,
        work_source=ctx.work_source,
        dataset_url=ctx.client.dataset_url(ctx.dataset_name, ctx.token),
        config_json=config,
        result_url=ctx.client.sink_url(run_id, ctx.token),
        result_params={"elementType": "results", "attempt": str(attempt)},
        attempt=attempt,
        slice_numbers=tuple(numbers),
        remote_inputs=remote,
        work_url=ctx.client.work_url(run_id, ctx.token) if ctx.work_text else None,
    )


def config_text(ctx: JobContext) -> str:
    """The run's config as JSON; with a remote work function, naming its source's sha256."""
    config: dict = dict(ctx.config)
    if ctx.work_text:  # the stub runs only the source it names
        config[WORKER_SHA256_KEY] = source_sha256(ctx.work_text)
    return json.dumps(config, sort_keys=True)


def needs_registration(ctx: JobContext) -> bool:
    """Whether the run's jobs fetch anything registered on the server besides the dataset."""
    return ctx.backend.remote_inputs or bool(ctx.work_text)


def register_inputs(ctx: JobContext, run_id: str, slices: SliceSource) -> None:
    """Put on the server what a run's jobs fetch: config and slice data, and the work source.

    Slices are streamed; config and slices only with remote inputs, the source only for a
    remote work function. A retried flow run registers the same again, which is fine.
    """
    remote = ctx.backend.remote_inputs
    ctx.client.register_inputs(
        run_id,
        config_text(ctx) if remote else None,
        slices.texts() if remote else {},
        work=ctx.work_text or None,
    )


def run_slices(
    ctx: JobContext,
    run_id: str,
    job_name: str,
    slices: SliceSource | dict[int, SliceDatum],
    observer: RunObserver | None = None,
    poll_interval: float = 0.5,
    logger: Logger = log,
) -> RunOutcome:
    """Run every slice to a stored result or until retries or the deadline run out.

    A run that has results already (a resumed flow run) deploys only the slices without
    one, numbering its rounds after the ones the server has seen. A round interrupted by
    an outage of the server or of the dataset is followed, once they are back, by one that
    does not use up a retry.
    """
    outcome = RunOutcome(run_id)
    if isinstance(slices, dict):
        slices = ListedSlices(slices)
    if needs_registration(ctx):
        register_inputs(ctx, run_id, slices)
    status = ctx.client.status(run_id)
    remaining = sorted(set(slices.numbers()) - set(status["received"]))
    seen = status["received"] or status["errored"] or status["next_attempt"] > 1
    attempt = status["next_attempt"] if seen else 0
    if attempt:  # an expected resume (a retried flow run): news, not a warning
        logger.info(
            "%s: resumed; %d slices have results already",
            job_name,
            len(slices.numbers()) - len(remaining),
        )
    observer = observer or RunObserver()
    rounds = SliceRun(ctx, run_id, job_name, slices, observer, poll_interval, logger)
    counted, pause = 0, False
    while remaining and counted <= ctx.max_retries and time.monotonic() < ctx.deadline:
        if pause:
            # What failed a round (a full worker pool, a slow scheduler) often lasts a while.
            wait = min(ctx.retry_backoff * 2 ** (counted - 1), MAX_BACKOFF)
            time.sleep(max(0.0, min(wait, ctx.deadline - time.monotonic())))
            if time.monotonic() >= ctx.deadline:
                break
        record = rounds.play_round(attempt, remaining)
        outcome.rounds.append(record)
        observer.round_ended(record)
        remaining, attempt = sorted(record.failed), attempt + 1
        if record.outage:
            logger.warning(
                "%s: round %d was interrupted by an outage (%s); it does not count as a retry",
                job_name,
                record.attempt,
                record.outage,
            )
        else:
            counted += 1
        pause = not record.outage
    outcome.conflicts = ctx.client.status(run_id)["conflicts"]
    if outcome.rounds:
        outcome.failed = dict(outcome.rounds[-1].failed)
    else:
        outcome.failed = dict.fromkeys(remaining, "deadline passed before deployment")
    return outcome


@dataclass(frozen=True)
class SliceRun:
    """A run's slices, where they go, and who hears about them: what each round needs."""

    ctx: JobContext
    run_id: str
    job_name: str
    slices: SliceSource
    observer: RunObserver
    poll_interval: float
    logger: Logger

    def play_round(self, attempt: int, remaining: list[int]) -> Round:
        """Deploy one round's job, follow it to its end, and say what it left undone and why."""
        ctx, client = self.ctx, self.ctx.client
        if attempt:
            client.register_attempt(self.run_id, attempt, remaining)
            self.logger.warning(
                "%s: attempt %d redeploys slices %s", self.job_name, attempt, remaining
            )
        started, started_at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
        outages_before = len(client.outages)
        spec = job_spec(ctx, self.run_id, self.job_name, self.slices, attempt, remaining)
        handle = ctx.backend.deploy(spec)
        bound = started + round_timeout(len(remaining), ctx.backend.parallelism, ctx.slice_timeout)
        watch = RoundWatch(
            handle, client, self.run_id, attempt, remaining, self.logger, ctx.deadline
        )
        reasons, ended = watch.follow(
            min(ctx.deadline, bound), self.observer.progress, self.poll_interval
        )
        status = client.status(self.run_id)
        failed = _failures(status, attempt, remaining, reasons, watch.job_failure)
        outages = [o.problem for o in client.outages[outages_before:]]
        if failed:
            # What was lost while the server or its dataset was away waits until they are back.
            sha256 = ctx.config["dataset_sha256"]
            problem = client.wait_until_serving(ctx.dataset_name, ctx.token, sha256)
            outages += [problem] if problem else []
        return Round(
            attempt=attempt,
            job_id=handle.job_id,
            ended=ended,
            slices=remaining,
            failed=failed,
            started_at=started_at,
            seconds=round(time.monotonic() - started, 3),
            outage="; ".join(outages),
            job_failure=watch.job_failure,
        )


def _failures(
    status: RunStatus, attempt: int, remaining: list[int], reasons: dict, job_failure: str = ""
) -> dict[int, str]:
    """Slices of a round without a stored result, with the best reason known."""
    reasons = dict(reasons)
    silent = (
        f"job failed: {job_failure}" if job_failure else "no result before the round's time bound"
    )
    for err in status["errored"]:
        if err["attempt"] == attempt:
            reasons.setdefault(err["slice"], err["error"])
    received = set(status["received"])
    return {s: reasons.get(s, silent) for s in remaining if s not in received}


@dataclass
class RoundWatch:
    """Follows one round's job and the sink until its slices are accounted for."""

    handle: JobHandle
    client: ServerClient
    run_id: str
    attempt: int
    remaining: list[int]
    logger: Logger = log
    deadline: float = math.inf  # an outage may stretch the round's bound up to this

    def __post_init__(self) -> None:
        self.elements = {k + 1: s for k, s in enumerate(self.remaining)}
        self.reasons: dict[int, str] = {}
        self.ended = "running"
        self.job_failure = ""  # why the job failed as a whole, if it did

    def follow(self, bound: float, on_progress, poll_interval: float) -> tuple[dict, str]:
        """Watch until done or `bound`; always end the job (a DCP job outlives its client)."""
        pending = set(self.remaining)
        try:
            while time.monotonic() < bound:
                for event in self.handle.events(timeout=poll_interval):
                    self.note(event)
                outages = len(self.client.outages)
                status = self.client.status(self.run_id)
                # Time the server was away is not time the slices had.
                waited = sum(o.ended - o.started for o in self.client.outages[outages:])
                bound = min(self.deadline, bound + waited)
                on_progress(len(status["received"]), status["expected"])
                pending -= set(status["received"])
                pending -= {e["slice"] for e in status["errored"] if e["attempt"] == self.attempt}
                pending -= set(self.reasons)
                if not pending or self.handle.done():
                    break
        finally:
            if not self.handle.done():
                self.handle.cancel()
            for event in self.handle.events(timeout=0):
                self.note(event)
        return self.reasons, self.ended

    def note(self, event: SliceEvent) -> None:
        """Log a backend event; keep slice failure reasons and how the job ended."""
        job_id = self.handle.job_id
        slice_no = None if event.element is None else self.elements.get(event.element)
        if event.kind in ("error", "lost") and slice_no is not None:
            self.reasons[slice_no] = f"{event.kind}: {event.message}".strip()
            self.logger.warning("slice %s %s: %s", slice_no, event.kind, event.message)
        elif event.kind == "result":
            self.logger.debug("slice %s result in %.2fs", slice_no, event.seconds or 0.0)
        elif event.kind in ("failed", "nofunds", "cancel_failed"):
            self.ended = f"{event.kind}: {event.message}"
            if event.kind != "cancel_failed":
                self.job_failure = event.message or event.kind
            self.logger.error("job %s: %s %s", job_id, event.kind, event.message)
        else:
            if event.kind == "done":
                self.ended = "done"
            elif event.kind == "cancelled":
                self.ended = f"cancelled: {event.message}"
            self.logger.info("job %s: %s %s", job_id, event.kind, event.message)
