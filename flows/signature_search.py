"""The `signature-search` flow: prepare -> server -> plan & deploy -> poll -> report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pandas as pd
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows.backends import make_backend
from flows.cli import GROUPS
from flows.params import injected_faults, takes_fields_of
from server.embedded import EmbeddedServer
from tasks.execution import history
from tasks.execution.client import CA_BUNDLE_VARIABLE, ServerClient
from tasks.execution.history import Journal
from tasks.execution.rounds import (
    JobContext,
    ListedSlices,
    PlannedSlices,
    RunOutcome,
    SliceSource,
)
from tasks.host import runtime_info
from tasks.io import read_jsonl
from tasks.parameters import TEST_ONLY, SearchParameters, preparation_options
from tasks.policy import (
    RECORD_FILES,
    ROC_SIGNATURES_PER_SLICE,
    JobResults,
    RunPlan,
    dataset_stem,
    follow_up_run_id,
    null_slices,
    report_inputs,
    roc_signatures,
    run_key,
    run_record,
    search_protocol,
    slice_size,
    tolerated,
    validation_run_id,
    without_failed_permutations,
    worker_config,
)
from tasks.redact import redact_http_logs
from tasks.report.build import SearchRecords, run_summary, with_split
from tasks.science.dataset import PreparedSummary
from tasks.science.tables import top_signature_list
from tasks.science.work import (
    WORKER_SHA256_KEY,
    remote_work_stub,
    source_sha256,
    work_function_source,
    worker_source,
)
from tasks.steps import (
    abandon_run,
    build_report_task,
    close_intake_task,
    close_runs_task,
    fetch_predictions_task,
    fetch_records_task,
    find_server_run_task,
    journal_task,
    next_batch_task,
    plan_null_task,
    plan_task,
    pool_search_task,
    prepare_dataset_step,
    publish_run_task,
    register_run_task,
    rename_flow_run_task,
    run_slices_task,
    save_run_record_task,
    split_samples_task,
)

if TYPE_CHECKING:  # the worker's types, without loading scikit-learn
    from tasks.science.worker import SliceDatum, WorkerConfig


# The run form's groups: the command line's, in its order, then the DCP options (one object).
FORM_GROUPS = {**GROUPS, "dcp": ("dcp",)}


class SlicesFailed(RuntimeError):
    """More slices failed after all retries than the run tolerates."""


class NothingComputed(RuntimeError):
    """The main search returned no result at all: nothing to test or report."""


def run_name() -> str:
    """Dataset, contrast, size, start time (UTC) and the flow run id's start: distinct per run.

    A retry keeps the name an earlier attempt gave (the one alerts and links carry).
    """
    params = flow_run.parameters
    stem = dataset_stem(params.get("input_path") or "input")
    current, suffix = flow_run.name or "", f"-{flow_run.id[:6]}"
    if current.startswith(f"{stem}-") and current.endswith(suffix):
        return current
    contrast = f"{params.get('case') or 'auto'}-vs-{params.get('control') or 'auto'}"
    if params.get("contrasts"):
        contrast = "contrasts"
    started = flow_run.scheduled_start_time.strftime("%Y%m%d-%H%M%S")
    return f"{stem}-{contrast}-{params.get('n_signatures')}sig-{started}{suffix}"


def name_contrast(params: SearchParameters, dataset: PreparedSummary) -> None:
    """Put the contrast preparation resolved into the run's name (once: `auto` only)."""
    if params.case and params.control:
        return
    current = flow_run.name or ""
    given = f"-{params.case or 'auto'}-vs-{params.control or 'auto'}-"
    resolved = current.replace(given, f"-{dataset.case}-vs-{dataset.control}-", 1)
    if resolved != current:
        rename_flow_run_task(resolved)


@contextlib.contextmanager
def serve_or_connect(params: SearchParameters, deadline: float) -> Iterator[ServerClient]:
    """The given server (admin token from the environment), or an embedded one on loopback.

    Until the run's deadline, the client waits out an outage of the server instead of failing.
    """
    logger = get_run_logger()
    if params.server_url:
        token = os.environ.get("SIGSEARCH_ADMIN_TOKEN")
        if not token:
            raise ValueError("server_url is set but SIGSEARCH_ADMIN_TOKEN is not")
        if params.ca_bundle:  # local workers read it from the environment, as the client can
            os.environ[CA_BUNDLE_VARIABLE] = params.ca_bundle
        yield ServerClient(
            params.server_url,
            token,
            ride_out_until=deadline,
            logger=logger,
            ca_bundle=params.ca_bundle,
        )
        return
    admin_token = secrets.token_urlsafe(32)
    server = EmbeddedServer.for_data(Path(params.data_dir), Path(params.database), admin_token)
    try:
        yield ServerClient(server.url, admin_token, ride_out_until=deadline, logger=logger)
    finally:
        server.stop()


def job_context(
    params: SearchParameters,
    client: ServerClient,
    dataset: PreparedSummary,
    deadline: float,
    discovery: list[int] | None,
) -> JobContext:
    """What the run's jobs share: backend, server, a fresh run token, config and limits."""
    backend = make_backend(params, client.base_url)
    # A remote work function: the jobs ship the stub, the server serves worker.py's text.
    remote_work = backend.remote_work_function
    config = worker_config(params, dataset, discovery)
    # Named either way, so that a retried run that switches remote_work_function registers
    # the same config (the inline shim ignores it).
    config = cast("WorkerConfig", {**config, WORKER_SHA256_KEY: source_sha256(worker_source())})
    return JobContext(
        backend=backend,
        client=client,
        token=secrets.token_urlsafe(24),
        dataset_name=dataset.name,
        config=config,
        work_source=remote_work_stub() if remote_work else work_function_source(),
        work_text=worker_source() if remote_work else "",
        max_retries=params.max_slice_retries,
        slice_timeout=params.slice_timeout,
        deadline=deadline,
        retry_backoff=params.retry_backoff,
    )


def evaluate(
    ctx: JobContext, dataset: PreparedSummary, plan: RunPlan, perm_slices: list[SliceDatum]
):
    """Run the main job and the permuted-label (null) job; return outcomes and records."""
    main, records = run_and_fetch(ctx, dataset, plan, plan.run_id, plan.slices, "main")
    if len(main.failed) == len(plan.slices.numbers()):
        raise NothingComputed(
            "the main search returned no results: "
            + (main.job_failure or next(iter(main.failed.values()), "no slices"))
        )
    if not perm_slices:
        return main, records, None, None
    perm_id = f"{plan.run_id}-perm"
    by_number = ListedSlices({s["slice"]: s for s in perm_slices})
    perm, perm_records = run_and_fetch(ctx, dataset, plan, perm_id, by_number, "permutation")
    return main, records, perm, perm_records


def run_and_fetch(
    ctx: JobContext,
    dataset: PreparedSummary,
    plan: RunPlan,
    server_run: str,
    slices: SliceSource,
    kind: str,
) -> tuple[RunOutcome, pd.DataFrame]:
    """One server run's slices to the end, its intake closed, then all its records fetched.

    Closed before the fetch: a result arriving later is refused, so the report and the
    server agree on what was received.
    """
    job_name = f"{server_run}-main" if kind == "main" else server_run
    register_run_task(ctx.client, server_run, dataset, ctx.token, list(slices.numbers()))
    outcome = run_slices_task(ctx, server_run, job_name, slices, kind, plan)
    close_intake_task(ctx.client, server_run)
    path = plan.work_dir / RECORD_FILES[kind]
    if kind == "predictions":
        return outcome, fetch_predictions_task(ctx.client, server_run, dataset, path)
    return outcome, fetch_records_task(ctx.client, server_run, dataset.sha256, path)


def run_jobs(
    params: SearchParameters, ctx: JobContext, dataset: PreparedSummary, plan: RunPlan
) -> JobResults:
    """The main and null jobs, the search's earlier batches, then held-out validation."""
    rows = plan.split[0] if plan.split else None
    stored = plan.search_dir if params.extend_search else None
    null = plan_null_task(
        str(dataset.path), plan.protocol, plan.signatures, plan.batch, rows, stored
    )
    perm_slices = null_slices(params, null, plan.slices.per_slice)
    main, records, perm, perm_records = evaluate(ctx, dataset, plan, perm_slices)
    search = SearchRecords((plan.batch,), plan.signatures, records, perm_records)
    if params.extend_search:
        complete = not main.failed and not (perm and perm.failed)
        search = pool_search_task(
            plan.search_dir, plan.protocol, str(dataset.path), search, complete
        )
    if perm is not None and perm.failed:
        search, dropped = without_failed_permutations(search, perm_slices, perm.failed)
        get_run_logger().warning(
            "%d permutations left out of the null (a slice of each failed): %s",
            len(dropped),
            ", ".join(map(str, dropped)),
        )
    if null is not None:
        search = dataclasses.replace(search, null_design=null.design)
    if not tolerated(params, main.failed):
        return JobResults(main, perm, None, search, None)
    predictions, scores = predict(params, ctx, dataset, plan, search)
    if plan.split is None:
        return JobResults(main, perm, None, search, None, predictions, scores)
    validation, validation_records = validate(params, ctx, dataset, plan, search)
    return JobResults(main, perm, validation, search, validation_records, predictions, scores)


def predict(
    params: SearchParameters,
    ctx: JobContext,
    dataset: PreparedSummary,
    plan: RunPlan,
    search: SearchRecords,
) -> tuple[RunOutcome | None, pd.DataFrame | None]:
    """The top signatures' out-of-fold scores for ROC curves: the search's folds and seeds."""
    top = roc_signatures(search, params.classifiers, params.roc_signatures)
    if not top:
        return None, None
    slices = PlannedSlices(top, ROC_SIGNATURES_PER_SLICE)
    scoring = dataclasses.replace(ctx, config={**ctx.config, "predictions": True})
    job_id = follow_up_run_id(plan.run_id, "predictions", top)
    outcome, scores = run_and_fetch(scoring, dataset, plan, job_id, slices, "predictions")
    if outcome.failed:  # the report draws the others; the run's outcome is the search's
        get_run_logger().warning(
            "ROC curves: predictions slices %s failed; those signatures have no curve",
            sorted(outcome.failed),
        )
    return outcome, scores


def validate(
    params: SearchParameters,
    ctx: JobContext,
    dataset: PreparedSummary,
    plan: RunPlan,
    search: SearchRecords,
) -> tuple[RunOutcome, pd.DataFrame]:
    """Fit the top signatures on the discovery samples and score them on the held-out ones."""
    top = top_signature_list(
        search.signatures, search.records, params.classifiers, params.top_fraction
    )
    slices = PlannedSlices(top, plan.slices.per_slice)
    assert plan.split is not None, "validation runs only with a sample split"
    held_out = dataclasses.replace(ctx, config={**ctx.config, "validation_rows": plan.split[1]})
    job_id = validation_run_id(plan.run_id, top)
    return run_and_fetch(held_out, dataset, plan, job_id, slices, "validation")


def make_plan(params: SearchParameters, dataset: PreparedSummary, client: ServerClient) -> RunPlan:
    """Pick the run's batch of the search, its signatures, its sample split and its server run.

    The server run is the unfinished one of the same plan (a resumed run) unless
    `fresh_run` is set, else a new one.
    """
    protocol = search_protocol(params, dataset)
    search_dir = Path(params.results_dir) / "searches" / protocol.key()
    batch = next_batch_task(search_dir) if params.extend_search else 1
    split = (
        split_samples_task(
            str(dataset.path),
            params.validation_fraction,
            params.seed,
            params.cv_folds,
            dataset.case,
        )
        if params.validation_fraction
        else None
    )
    per_slice = slice_size(params, dataset, split)
    signatures, slices = plan_task(str(dataset.path), protocol, batch, per_slice)
    key = run_key(protocol, batch, per_slice)
    run_id = find_server_run_task(client, f"run-{key}", params.fresh_run)
    run_dir = Path(params.results_dir) / f"{dataset_stem(params.input_path)}-{run_id}"
    work_dir = run_dir.with_name(run_dir.name + ".incomplete")
    return RunPlan(
        run_id=run_id,
        run_dir=run_dir,
        protocol=protocol,
        search_dir=search_dir,
        batch=batch,
        signatures=signatures,
        slices=slices,
        split=split,
        journal=Journal(work_dir / "history.jsonl", secrets.token_hex(4)),
        artifact_prefix=f"{dataset_stem(params.input_path)}-{protocol.key()[:8]}",
    )


# Prefect validates nothing itself: SearchParameters is the one place of checks (the form
# still checks types, limits and choices through the schema of the same fields).
@flow(
    name="signature-search",
    flow_run_name=run_name,
    log_prints=True,
    validate_parameters=False,
)
@takes_fields_of(SearchParameters, hidden=TEST_ONLY, groups=FORM_GROUPS)
def signature_search(**fields) -> dict | State:
    """Search random gene signatures for ones that tell the phenotypes apart."""
    redact_http_logs()  # a deployment starts here, not at `python -m flows`
    params = SearchParameters(**fields, faults=injected_faults())
    if params.contrasts:  # the parent of one subflow (this flow) per contrast
        from flows.contrasts import search_contrasts

        return search_contrasts(params)
    deadline = time.monotonic() + params.deadline_minutes * 60
    dataset = prepare_dataset_step(
        Path(params.input_path),
        preparation_options(params),
        Path(params.data_dir),
    )
    name_contrast(params, dataset)
    with serve_or_connect(params, deadline) as client:
        plan = make_plan(params, dataset, client)
        journal_task(plan.run_dir, plan.journal, flow_run.id or "")
        try:
            save_run_record_task(str(plan.work_dir / "parameters.json"), params.model_dump())
            discovery = plan.split[0] if plan.split else None
            ctx = job_context(params, client, dataset, deadline, discovery)
            jobs = run_jobs(params, ctx, dataset, plan)
            report = report_run(params, dataset, plan, jobs)
            complete = tolerated(params, jobs.main.failed)
            # Last, once the report is written: a run that failed stays resumable.
            close_runs_task(client, jobs.run_ids, complete=complete)
        except BaseException as exc:
            abandon_run(client, plan.work_dir, plan.journal, exc)
            raise
        report = publish_run_task(plan, report)
    return finish(params, plan.run_id, plan.run_dir, report, sorted(jobs.main.failed))


def report_run(
    params: SearchParameters,
    dataset: PreparedSummary,
    plan: RunPlan,
    jobs: JobResults,
):
    """Write the report, run.json and the UI's artifacts; return the report's files."""
    versions = runtime_info()
    times = history.run_times(read_jsonl(plan.journal.path), time.time())
    summary = run_summary(
        params=params,
        dataset=dataset,
        main=jobs.main,
        perm=jobs.perm,
        n_slices=len(plan.slices.numbers()),
        seconds=times["seconds"],
        versions=versions["versions"],
    )
    summary = with_split(summary, plan.split)
    report = build_report_task(plan.work_dir, report_inputs(params, dataset, plan, jobs, summary))
    record = run_record(params, dataset, plan, jobs, versions) | {"times": times}
    save_run_record_task(str(plan.work_dir / "run.json"), record)
    return report


def finish(
    params: SearchParameters, run_id: str, run_dir: Path, report, failed: list[int]
) -> dict | State:
    """Fail the run beyond the failure tolerance; else say where the report is."""
    logger = get_run_logger()
    logger.info("report: %s", report.html)
    if not tolerated(params, failed):
        message = (
            f"{len(failed)} slices failed after all retries: {failed}; "
            f"partial report at {report.html}"
        )
        # A failed state, not a raise: the UI shows the reason in one line, no traceback; the
        # caller of the flow still gets SlicesFailed raised.
        return Failed(message=message, data=SlicesFailed(message))
    if failed:
        logger.warning("%d slices failed (tolerated): %s", len(failed), failed)
    return {"run_id": run_id, "run_dir": str(run_dir), "report": str(report.html), "failed": failed}
