"""Prefect tasks: thin wrappers over the plain functions of this package."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from tasks.execution import rounds
from tasks.execution.client import ServerClient
from tasks.execution.progress import terminal_progress
from tasks.execution.rounds import JobContext, RunOutcome
from tasks.io import (
    file_sha256,
    read_batch,
    read_batches,
    read_input,
    read_prepared,
    read_probesets,
    save_batch,
    save_json,
    save_prepared,
    save_tsv,
)
from tasks.report.build import ReportFiles, ReportInputs, build_report
from tasks.science.dataset import DatasetError, PreparedSummary, PrepareOptions, prepare_dataset
from tasks.science.plan import SearchProtocol, pack_slices, stratified_split
from tasks.science.tables import records_from_results, sort_records


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
@task(name="check-server", retries=4, retry_delay_seconds=[1, 2, 4, 8], cache_policy=NO_CACHE)
def check_server_task(
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


@task(name="plan-signatures")
def plan_task(
    dataset_path: str, protocol: SearchProtocol, batch: int, signatures_per_slice: int
) -> tuple[list, list[dict]]:
    """The deterministic signature plan of a search's batch, and its slices."""
    signatures = protocol.plan(read_probesets(Path(dataset_path)), batch)
    return signatures, pack_slices(signatures, signatures_per_slice)


@task(name="split-samples")
def split_samples_task(
    dataset_path: str, fraction: float, seed: int, cv_folds: int
) -> tuple[list[int], list[int]]:
    """Discovery and held-out sample rows of the prepared dataset, stratified and seeded."""
    labels, _ = read_prepared(Path(dataset_path))
    try:
        discovery, held_out = stratified_split(labels, fraction, seed)
    except ValueError as exc:
        raise DatasetError(f"{dataset_path}: {exc} (parameter validation_fraction)") from None
    counts = Counter(labels[i] for i in discovery)
    for label in sorted(set(labels)):
        if counts[label] < cv_folds:
            raise DatasetError(
                f"{dataset_path}: validation_fraction={fraction} leaves {counts[label]} "
                f"{label} samples for discovery, fewer than cv_folds={cv_folds}; "
                "lower one of them"
            )
    return discovery, held_out


@task(name="next-batch", cache_policy=NO_CACHE)
def next_batch_task(search_dir: Path) -> int:
    """The number of the batch a run extending the search computes."""
    return max(read_batches(search_dir), default=0) + 1


@dataclasses.dataclass(frozen=True)
class SearchRecords:
    """Signatures and records of every batch a report covers."""

    batches: tuple[int, ...]
    signatures: list
    records: pd.DataFrame
    permutation_records: pd.DataFrame | None


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
        signatures=[s for b in earlier for s in protocol.plan(probesets, b)]
        + this_batch.signatures,
        records=sort_records(pd.concat([r for r, _ in pooled], ignore_index=True)),
        permutation_records=sort_records(pd.concat(permuted, ignore_index=True))
        if permuted
        else None,
    )


class SliceProgress:
    """Slices done: a progress artifact keyed by the job's kind, the run log, a terminal bar."""

    def __init__(self, job_name: str, kind: str, total: int) -> None:
        self.job_name, self.kind, self.done = job_name, kind, -1
        self.artifact = create_progress_artifact(
            0.0, key=_artifact_key(f"{kind}-slices"), description=self.describe(0, total)
        )

    def describe(self, done: int, total: int) -> str:
        """What the progress artifact says: `main job: 12/30 slices`."""
        return f"{self.kind} job: {done}/{total} slices"

    def update(self, done: int, total: int) -> None:
        """Report a new count (repeats are ignored)."""
        if done == self.done:
            return
        self.done = done
        percent = 100.0 * done / max(1, total)
        update_progress_artifact(self.artifact, percent, description=self.describe(done, total))
        get_run_logger().info("%s: %d/%d slices done", self.job_name, done, total)
        terminal_progress(self.job_name, done, total)


@task(name="run-slices", persist_result=False, cache_policy=NO_CACHE)
def run_slices_task(
    ctx: JobContext, run_id: str, job_name: str, slices: list[dict], kind: str
) -> RunOutcome:
    """Deploy slices, poll the sink, redeploy failures; retries go to the run's log."""
    by_number = {s["slice"]: s for s in slices}
    progress = SliceProgress(job_name, kind, len(slices))
    logger = get_run_logger()
    outcome = rounds.run_slices(
        ctx, run_id, job_name, by_number, on_progress=progress.update, logger=logger
    )
    for number, reason in sorted(outcome.failed.items()):
        logger.error("%s: slice %d failed after all retries: %s", job_name, number, reason)
    return outcome


@task(
    name="fetch-records",
    persist_result=False,
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    cache_policy=NO_CACHE,
)
def fetch_records_task(
    client: ServerClient, run_id: str, dataset_sha256: str, path: str
) -> pd.DataFrame:
    """Every stored result of a run as records (also written to `path`); refuse other datasets'."""
    contents = []
    for item in client.iter_results(run_id):
        content = item["content"]
        if content.get("dataset_sha256") != dataset_sha256:
            raise RuntimeError(f"slice {item['slice']} was computed on another dataset")
        contents.append(content)
    frame = records_from_results(contents)
    save_tsv(frame, Path(path))
    return frame


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


@task(name="publish-artifacts", persist_result=False)
def publish_artifacts_task(report: ReportFiles) -> None:
    """The report as Markdown, its top-signature table, and where its files are."""
    create_markdown_artifact(report.markdown, key=_artifact_key("report-summary"))
    create_table_artifact(report.top_signatures, key=_artifact_key("top-signatures"))
    create_markdown_artifact(report_location(report.html), key=_artifact_key("report-files"))


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
