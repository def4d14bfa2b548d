"""Prefect tasks: thin wrappers over the plain functions of this package."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
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
from tasks.io import file_sha256, read_input, read_probesets, save_json, save_prepared, save_tsv
from tasks.report.build import ReportFiles, ReportInputs, build_report, top_for_permutation
from tasks.science.dataset import DatasetError, PreparedSummary, PrepareOptions, prepare_dataset
from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.tables import records_from_results


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


def prepare_dataset_step(
    input_path: Path, options: dict, data_dir: Path, stem: str
) -> PreparedSummary:
    """The cached preparation, named by the input's content and options, redone if its file went."""
    if not input_path.is_file():
        raise DatasetError(f"{input_path}: file not found (parameter input_path)")
    input_sha = file_sha256(input_path)
    key = hashlib.sha256((input_sha + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    name = f"{stem}-{key[:10]}"
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
    dataset_path: str,
    n_signatures: int,
    min_len: int,
    max_len: int,
    seed: int,
    signatures_per_slice: int,
) -> tuple[list, list[dict]]:
    """The deterministic signature plan over the prepared dataset's probesets, and its slices."""
    probesets = read_probesets(Path(dataset_path))
    signatures = plan_signatures(probesets, n_signatures, min_len, max_len, seed)
    return signatures, pack_slices(signatures, signatures_per_slice)


class SliceProgress:
    """Slices done, shown as a Prefect progress artifact, in the run log and on a terminal."""

    def __init__(self, job_name: str) -> None:
        self.job_name, self.done = job_name, -1
        self.artifact = create_progress_artifact(
            0.0, key=_artifact_key(f"{job_name}-progress"), description=f"{job_name}: slices done"
        )

    def update(self, done: int, total: int) -> None:
        """Report a new count (repeats are ignored)."""
        if done == self.done:
            return
        self.done = done
        update_progress_artifact(self.artifact, 100.0 * done / max(1, total))
        get_run_logger().info("%s: %d/%d slices done", self.job_name, done, total)
        terminal_progress(self.job_name, done, total)


@task(name="run-slices", persist_result=False, cache_policy=NO_CACHE)
def run_slices_task(ctx: JobContext, run_id: str, job_name: str, slices: list[dict]) -> RunOutcome:
    """Deploy slices, poll the sink with a progress artifact, redeploy failures."""
    by_number = {s["slice"]: s for s in slices}
    progress = SliceProgress(job_name)
    outcome = rounds.run_slices(ctx, run_id, job_name, by_number, on_progress=progress.update)
    for number, reason in sorted(outcome.failed.items()):
        get_run_logger().error(
            "%s: slice %d failed after all retries: %s", job_name, number, reason
        )
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


@task(name="top-for-permutation")
def top_for_permutation_task(
    records: pd.DataFrame, signatures: list, classifiers: list[str], n_top: int
) -> list[dict]:
    """The top signatures of the main job, to re-evaluate on permuted labels."""
    return top_for_permutation(records, signatures, classifiers, n_top)


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
    """Markdown summary, top-signature table and a link to the report file."""
    create_markdown_artifact(report.markdown, key=_artifact_key("report-summary"))
    create_table_artifact(report.top_signatures, key=_artifact_key("top-signatures"))
    create_link_artifact(
        report.html.resolve().as_uri(),
        link_text="report.html",
        key=_artifact_key("report-file"),
    )


def _artifact_key(text: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:100]
