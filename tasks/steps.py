"""Prefect tasks: thin wrappers over the plain functions of this package."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from pathlib import Path
from uuid import UUID

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from tasks.execution import history, rounds
from tasks.execution.client import ServerClient
from tasks.execution.history import Journal
from tasks.execution.progress import terminal_progress
from tasks.execution.rounds import JobContext, PlannedSlices, RunOutcome, SliceSource
from tasks.io import (
    append_jsonl,
    file_sha256,
    publish_run_folder,
    read_batch,
    read_batches,
    read_input,
    read_jsonl,
    read_prepared,
    read_probesets,
    read_screen_input,
    reopen_run_folder,
    save_batch,
    save_incomplete_marker,
    save_json,
    save_prepared,
    save_tsv,
)
from tasks.policy import RunPlan, sample_split
from tasks.report.build import ReportFiles, ReportInputs, SearchRecords, build_report
from tasks.science.dataset import (
    DatasetError,
    PreparedSummary,
    PrepareOptions,
    prepare_dataset,
)
from tasks.science.plan import SearchProtocol, SignaturePlan, batch_seed
from tasks.science.screen import NullPlan, plan_null
from tasks.science.tables import predictions_from_results, records_from_results, sort_records


# Cached on the input's content hash and the preparation options (INPUTS covers both) and
# on the task's code (an older summary type is never served);
# `prepare_dataset_step` refreshes it when the prepared file it points at has gone.
@task(
    name="prepare-dataset",
    cache_policy=INPUTS + TASK_SOURCE,
    persist_result=True,
    refresh_cache=None,
)
def prepare_dataset_task(
    input_sha256: str, input_path: str, options: dict, data_dir: str, name: str
) -> PreparedSummary:
    """Read, validate and write the prepared dataset; return its summary."""
    opts = PrepareOptions(**options)
    prepared = prepare_dataset(read_input(Path(input_path), opts), opts)
    summary = save_prepared(prepared, Path(data_dir), name)
    logger = get_run_logger()
    for line in summary.decisions:
        logger.info("prepare: %s", line)
    for line in summary.warnings:
        logger.warning("prepare: %s", line)
    return dataclasses.replace(summary, input_sha256=input_sha256)


def prepare_dataset_step(input_path: Path, options: dict, data_dir: Path) -> PreparedSummary:
    """The cached preparation, named by the input's content and options, redone if its file went."""
    if not input_path.is_file():
        raise DatasetError(f"{input_path}: file not found (parameter input_path)")
    input_sha = file_sha256(input_path)
    key = hashlib.sha256((input_sha + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    # Opaque: workers' URLs carry the name through the DCP scheduler, which must not learn
    # what the study is from a file name.
    name = f"dataset-{key[:16]}"
    gone = not (data_dir / f"{name}.tsv").exists()
    task = prepare_dataset_task.with_options(refresh_cache=gone)
    return task(input_sha, str(input_path), options, str(data_dir), name)


# Tasks that take a client or a token are never cached: their inputs are secrets.
@task(name="register-run", retries=4, retry_delay_seconds=[1, 2, 4, 8], cache_policy=NO_CACHE)
def register_run_task(
    client: ServerClient,
    run_id: str,
    dataset: PreparedSummary,
    token: str,
    expected: list[int],
    ready_timeout: float = 30.0,
) -> None:
    """Wait for /ready, register the run, and check the served dataset's sha256."""
    client.wait_ready(ready_timeout)
    client.register_run(run_id, dataset.name, token, expected)
    served = client.served_sha256(dataset.name, token)
    if served != dataset.sha256:
        raise RuntimeError(
            f"server serves dataset {dataset.name!r} with sha256 {served}, "
            f"but {dataset.sha256} was prepared"
        )
    get_run_logger().info("server ready; dataset %s sha256 %s", dataset.name, served[:12])


class RenamedRuns(logging.Filter):
    """Give a renamed run's later lines its new name.

    Prefect's engine keeps a logger bound to the name the run started with, so its last
    line ("Finished in state ...") would name a run that no longer exists by that name.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        name = self.names.get(str(getattr(record, "flow_run_id", "")))
        if name is not None:
            record.flow_run_name = name
        return True


RENAMED_RUNS = RenamedRuns()
logging.getLogger("prefect.flow_runs").addFilter(RENAMED_RUNS)


@task(name="name-run", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def rename_flow_run_task(name: str) -> None:
    """Rename the running flow run: the UI, alerts and later log lines show the new name."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("rename_flow_run_task runs inside a flow run")
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(context.flow_run.id, name)
    context.flow_run.name = name
    RENAMED_RUNS.names[str(context.flow_run.id)] = name


@task(name="plan-signatures")
def plan_task(
    dataset_path: str, protocol: SearchProtocol, batch: int, signatures_per_slice: int
) -> tuple[SignaturePlan, PlannedSlices]:
    """The deterministic signature plan of a search's batch (held compactly), and its slices."""
    signatures = protocol.plan_compact(read_probesets(Path(dataset_path)), batch)
    return signatures, PlannedSlices(signatures, signatures_per_slice)


@task(name="plan-null", persist_result=False, cache_policy=NO_CACHE)
def plan_null_task(
    dataset_path: str,
    protocol: SearchProtocol,
    signatures: SignaturePlan,
    batch: int,
    rows: list[int] | None,
    search_dir: Path | None,
) -> NullPlan | None:
    """The batch's null job and design; with `search_dir`, over the stored batches too."""
    if not protocol.n_permutations:
        return None
    path = Path(dataset_path)
    earlier = [b for b in read_batches(search_dir) if b < batch] if search_dir else []
    batches = [*earlier, batch]
    probesets = read_probesets(path)
    return plan_null(
        read_screen_input(path, protocol.case, rows),
        [*(protocol.plan_compact(probesets, b) for b in earlier), signatures],
        (protocol.null_signatures, protocol.null_candidates),
        (
            [batch_seed(protocol.seed, b) for b in batches],
            protocol.permutations(batch),
            protocol.n_permutations,
        ),
        stored_evaluations(search_dir, earlier) if search_dir else {},
    )


def stored_evaluations(search_dir: Path, batches: list[int]) -> dict[int, frozenset[int]]:
    """The signature ids the stored batches evaluated, per permutation seed."""
    found: dict[int, set[int]] = {}
    for batch in batches:
        _, permuted = read_batch(search_dir, batch)
        if permuted is None:
            continue
        for seed, signature in zip(
            permuted["permutation"].tolist(), permuted["signature"].tolist()
        ):
            found.setdefault(int(seed), set()).add(int(signature))
    return {seed: frozenset(ids) for seed, ids in found.items()}


@task(name="split-samples")
def split_samples_task(
    dataset_path: str, fraction: float, seed: int, cv_folds: int, case: str
) -> tuple[list[int], list[int]]:
    """Discovery and held-out sample rows of the prepared dataset, stratified and seeded."""
    labels, _ = read_prepared(Path(dataset_path))
    return sample_split(labels, fraction, seed, cv_folds, dataset_path)


@task(name="next-batch", cache_policy=NO_CACHE)
def next_batch_task(search_dir: Path) -> int:
    """The number of the batch a run extending the search computes."""
    return max(read_batches(search_dir), default=0) + 1


@task(name="pool-search", persist_result=False, cache_policy=NO_CACHE)
def pool_search_task(
    search_dir: Path,
    protocol: SearchProtocol,
    dataset_path: str,
    this_batch: SearchRecords,
    complete: bool,
) -> SearchRecords:
    """Store this batch when complete, and pool it with every stored batch of the search."""
    (batch,) = this_batch.batches
    stored = read_batches(search_dir)
    if complete and batch not in stored:
        save_batch(search_dir, batch, this_batch.records, this_batch.permutation_records)
        save_json(dataclasses.asdict(protocol), Path(search_dir) / "protocol.json")
    else:
        get_run_logger().warning(
            "batch %d not stored: %s", batch, "already stored" if complete else "slices failed"
        )
    earlier = [b for b in read_batches(search_dir) if b != batch]
    probesets = read_probesets(Path(dataset_path))
    pooled = [read_batch(search_dir, b) for b in earlier]
    pooled.append((this_batch.records, this_batch.permutation_records))
    permuted = [p for _, p in pooled if p is not None]
    return SearchRecords(
        batches=(*earlier, batch),
        signatures=[
            *(s for b in earlier for s in protocol.plan_compact(probesets, b)),
            *this_batch.signatures,
        ],
        records=sort_records(pd.concat([r for r, _ in pooled], ignore_index=True)),
        permutation_records=sort_records(pd.concat(permuted, ignore_index=True))
        if permuted
        else None,
    )


class SliceProgress(rounds.RunObserver):
    """Slices done: a progress artifact keyed by the job's kind, the run log, a terminal bar;
    each round as it ends: a line of the run's history (which survives a killed flow)."""

    def __init__(self, job_name: str, kind: str, total: int, plan: RunPlan, run_id: str):
        self.job_name, self.kind, self.done = job_name, kind, -1
        self.journal, self.run_id = plan.journal, run_id
        key = _artifact_key(f"{plan.artifact_prefix}-{kind}-slices")
        artifact = create_progress_artifact(0.0, key=key, description=self.describe(0, total))
        # Prefect's async_dispatch types it `UUID | Coroutine`; called from sync code, a UUID.
        assert isinstance(artifact, UUID), "progress artifact created from async code"
        self.artifact = artifact

    def describe(self, done: int, total: int) -> str:
        """What the progress artifact says: `main job: 12/30 slices`."""
        return f"{self.kind} job: {done}/{total} slices"

    def progress(self, done: int, total: int) -> None:
        """Report a new count (repeats are ignored)."""
        if done == self.done:
            return
        self.done = done
        percent = 100.0 * done / max(1, total)
        update_progress_artifact(self.artifact, percent, description=self.describe(done, total))
        get_run_logger().info("%s: %d/%d slices done", self.job_name, done, total)
        terminal_progress(self.job_name, done, total)

    def round_ended(self, attempt: rounds.Round) -> None:
        """Append the round to the run's history."""
        line = history.round_ended(self.journal.flow_attempt, self.run_id, self.kind, attempt)
        append_jsonl(line, self.journal.path)


@task(name="run-slices", persist_result=False, cache_policy=NO_CACHE)
def run_slices_task(
    ctx: JobContext, run_id: str, job_name: str, slices: SliceSource, kind: str, plan: RunPlan
) -> RunOutcome:
    """Deploy slices, poll the sink, redeploy failures; the outcome holds earlier attempts' rounds."""
    progress = SliceProgress(job_name, kind, len(slices.numbers()), plan, run_id)
    logger = get_run_logger()
    outcome = rounds.run_slices(ctx, run_id, job_name, slices, observer=progress, logger=logger)
    for number, reason in sorted(outcome.failed.items()):
        logger.error("%s: slice %d failed after all retries: %s", job_name, number, reason)
    earlier = history.earlier_rounds(
        read_jsonl(plan.journal.path), run_id, plan.journal.flow_attempt
    )
    return history.with_earlier_rounds(outcome, earlier)


@task(
    name="fetch-records",
    persist_result=False,
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    cache_policy=NO_CACHE,
)
def fetch_records_task(
    client: ServerClient, run_id: str, dataset_sha256: str, path: Path
) -> pd.DataFrame:
    """Every stored result of a run as records (also written to `path`); refuse other datasets'."""
    frame = records_from_results(stored_contents(client, run_id, dataset_sha256))
    save_tsv(frame, path)
    return frame


def stored_contents(client: ServerClient, run_id: str, dataset_sha256: str) -> list[dict]:
    """Every stored result of a run, refusing one computed on another dataset."""
    contents = []
    for item in client.iter_results(run_id):
        content = item["content"]
        if content.get("dataset_sha256") != dataset_sha256:
            raise RuntimeError(f"slice {item['slice']} was computed on another dataset")
        contents.append(content)
    return contents


@task(
    name="fetch-predictions",
    persist_result=False,
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    cache_policy=NO_CACHE,
)
def fetch_predictions_task(
    client: ServerClient, run_id: str, dataset: PreparedSummary, path: Path
) -> pd.DataFrame:
    """A predictions run's out-of-fold scores by sample (also written to `path`, every digit)."""
    contents = stored_contents(client, run_id, dataset.sha256)
    labels, _ = read_prepared(dataset.path)
    frame = predictions_from_results(contents, dataset.sample_ids, labels)
    save_tsv(frame, path, float_format=None)  # the ROC is computed from these digits
    return frame


@task(name="find-server-run", cache_policy=NO_CACHE)
def find_server_run_task(client: ServerClient, base: str, fresh: bool) -> str:
    """The unfinished server run of this plan to resume (unless `fresh`), else a new run id.

    `fresh` finishes an unfinished run of the plan (its results stay on the server) and
    starts the next one.
    """
    logger = get_run_logger()
    for generation in itertools.count(1):
        run_id = base if generation == 1 else f"{base}-{generation}"
        status = client.find_run(run_id)
        if status is None:
            return run_id
        if status["finished"]:
            continue
        if not fresh:
            logger.info(
                "resuming server run %s: %d of %d slices have results (fresh_run starts anew)",
                run_id,
                len(status["received"]),
                status["expected"],
            )
            return run_id
        for old in (run_id, f"{run_id}-perm"):
            if client.find_run(old) is not None:
                client.finish_run(old)
        logger.warning("fresh run: server run %s of the same plan finished unresumed", run_id)
    raise AssertionError("unreachable")


@task(name="open-run-record", cache_policy=NO_CACHE)
def journal_task(run_dir: Path, journal: Journal, flow_run_id: str) -> None:
    """Open the run's folder as unfinished (a resumed one again) and note this flow attempt."""
    reopen_run_folder(journal.path.parent, run_dir)
    append_jsonl(history.attempt_started(journal.flow_attempt, flow_run_id), journal.path)


@task(name="close-intake", cache_policy=NO_CACHE)
def close_intake_task(client: ServerClient, run_id: str) -> None:
    """Refuse further results of a run, so that the fetch that follows sees all it will get."""
    client.close_intake(run_id)


def abandon_run(client: ServerClient, work_dir: Path, journal: Journal, exc: BaseException):
    """After a failure: mark the folder incomplete with why, and revoke the runs' tokens.

    A plain function, not a task: it runs while the flow is failing or being cancelled,
    and never waits out an outage (a server that is away has its tokens revoked by the
    retry that registers its runs again).
    """
    logger = get_run_logger()
    reason = failure_line(exc)
    for write in (
        lambda: save_incomplete_marker(work_dir, reason),
        lambda: append_jsonl(
            history.attempt_ended(journal.flow_attempt, f"failed: {reason}"), journal.path
        ),
    ):
        try:
            write()
        except OSError as err:
            logger.error("could not record the failure in %s: %s", work_dir, err)
    impatient = dataclasses.replace(client, ride_out_until=None, outages=[], registered=[])
    suspended = []
    for run_id in client.registered:
        try:
            impatient.suspend_run(run_id)
            suspended.append(run_id)
        except Exception as err:  # said; the next attempt revokes it
            logger.error("could not suspend server run %s: %s", run_id, err)
    if suspended:
        logger.warning("server runs %s suspended (tokens revoked, results kept)", sorted(suspended))


def failure_line(exc: BaseException) -> str:
    """One line saying what failed."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return (
        text if isinstance(exc, RuntimeError | ConnectionError) else f"{type(exc).__name__}: {text}"
    )


@task(name="publish-run", cache_policy=NO_CACHE, persist_result=False)
def publish_run_task(plan: RunPlan, report: ReportFiles) -> ReportFiles:
    """Give the complete run's folder its final name, then show the report in the UI."""
    journal = plan.journal
    append_jsonl(history.attempt_ended(journal.flow_attempt, "completed"), journal.path)
    publish_run_folder(plan.work_dir, plan.run_dir)
    report = dataclasses.replace(report, html=plan.run_dir / report.html.name)
    prefix, search = plan.artifact_prefix, f"search {plan.protocol.key()[:8]}"
    create_markdown_artifact(
        report.markdown,
        key=_artifact_key(f"{prefix}-report-summary"),
        description=f"The report's summary ({search}, batch {plan.batch})",
    )
    create_table_artifact(
        [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
            for row in report.top_signatures
        ],
        key=_artifact_key(f"{prefix}-top-signatures"),
        description=f"The best signatures, 4 decimals ({search}; report.json has all digits)",
    )
    create_markdown_artifact(
        report_location(report.html),
        key=_artifact_key(f"{prefix}-report-files"),
        description=f"Where the report and its tables are ({search})",
    )
    return report


@task(name="close-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 2])
def close_runs_task(client: ServerClient, run_ids: list[str], complete: bool) -> None:
    """Finish complete runs; suspend the others (token revoked, resumable by a retry)."""
    for run_id in run_ids:
        if complete:
            client.finish_run(run_id)
        else:
            client.suspend_run(run_id)


@task(name="build-report", persist_result=False)
def build_report_task(run_dir: Path, inputs: ReportInputs) -> ReportFiles:
    """Aggregate records into the report files."""
    return build_report(run_dir, inputs)


@task(name="save-run-record", persist_result=False)
def save_run_record_task(path: str, record: dict) -> None:
    """Write a JSON record of the run (parameters, dataset, versions, jobs, attempts)."""
    save_json(record, Path(path))


def report_location(html: Path) -> str:
    """Where a run's files are, said plainly: browsers refuse file:// links from the UI."""
    folder = html.resolve().parent
    return (
        "The full report (self-contained HTML: plots, sortable tables, methods) and every "
        "table are on the machine that ran this flow, in\n\n"
        f"    {folder}\n\n"
        "Open `report.html` there with a browser, or copy the folder; `report.md` is the "
        "report summary shown in this UI."
    )


def _artifact_key(text: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:100]
