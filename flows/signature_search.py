"""The `signature-search` flow: prepare -> server -> plan & deploy -> poll -> report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.backends import make_backend
from flows.params import SearchParameters
from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient
from tasks.execution.rounds import JobContext
from tasks.host import runtime_info
from tasks.report.build import ReportInputs, failed_signatures, run_summary
from tasks.science.dataset import PreparedSummary
from tasks.science.plan import permutation_slices
from tasks.science.work import work_function_source
from tasks.steps import (
    build_report_task,
    check_server_task,
    fetch_records_task,
    plan_task,
    prepare_dataset_step,
    publish_artifacts_task,
    run_slices_task,
    save_run_record_task,
    top_for_permutation_task,
)


class SlicesFailed(RuntimeError):
    """More slices failed after all retries than the run tolerates."""


def _run_name() -> str:
    params = flow_run.parameters.get("params") or {}
    if isinstance(params, SearchParameters):
        params = params.model_dump()
    stem = dataset_stem(params.get("input_path", "input"))
    contrast = f"{params.get('case') or 'auto'}-vs-{params.get('control') or 'auto'}"
    return f"{stem}-{contrast}-{params.get('n_signatures', '?')}sig"


def dataset_stem(path: str) -> str:
    """A plain name for an input file (`GSE1_series_matrix.txt.gz` -> `GSE1_series_matrix`)."""
    name = Path(path).name
    for suffix in (".gz", ".txt", ".tsv", ".csv"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "dataset"


def annotation_path(params: SearchParameters) -> Path | None:
    """The annotation file given, or `<input stem>.annotation.tsv` beside the input."""
    if params.annotation_path:
        return Path(params.annotation_path)
    guess = Path(params.input_path).with_name(dataset_stem(params.input_path) + ".annotation.tsv")
    return guess if guess.is_file() else None


@contextlib.contextmanager
def serve_or_connect(params: SearchParameters) -> Iterator[ServerClient]:
    """The given server (admin token from the environment), or an embedded one on loopback."""
    if params.server_url:
        token = os.environ.get("SIGSEARCH_ADMIN_TOKEN")
        if not token:
            raise ValueError("server_url is set but SIGSEARCH_ADMIN_TOKEN is not")
        yield ServerClient(params.server_url, token)
        return
    admin_token = secrets.token_urlsafe(32)
    server = EmbeddedServer.for_data(Path(params.data_dir), Path(params.database), admin_token)
    try:
        yield ServerClient(server.url, admin_token)
    finally:
        server.stop()


def preparation_options(params: SearchParameters) -> dict:
    """The parameters that decide the prepared dataset."""
    names = ("case", "control", "sample_sheet", "phenotype_field", "cv_folds", "log2_transform")
    return {name: getattr(params, name) for name in names}


def job_context(
    params: SearchParameters, client: ServerClient, dataset: PreparedSummary, deadline: float
) -> JobContext:
    """What the run's jobs share: backend, server, a fresh run token, config and limits."""
    config = {
        "case": dataset.case,
        "cv_folds": params.cv_folds,
        "seed": params.seed,
        "classifiers": params.classifiers,
        "dataset_sha256": dataset.sha256,
    }
    return JobContext(
        backend=make_backend(params, client.base_url),
        client=client,
        token=secrets.token_urlsafe(24),
        dataset_name=dataset.name,
        config=config,
        work_source=work_function_source(),
        max_retries=params.max_slice_retries,
        slice_timeout=params.slice_timeout,
        deadline=deadline,
        retry_backoff=params.retry_backoff,
    )


def evaluate(
    params: SearchParameters,
    ctx: JobContext,
    dataset: PreparedSummary,
    run_id: str,
    run_dir: Path,
    slices: list[dict],
    signatures: list,
):
    """Run the main job and the permutation job; return their outcomes and records."""
    check_server_task(ctx.client, run_id, dataset, ctx.token, [s["slice"] for s in slices])
    main = run_slices_task(ctx, run_id, f"{run_id}-main", slices)
    records = fetch_records_task(ctx.client, run_id, dataset.sha256, run_dir / "records.tsv")
    top = top_for_permutation_task(records, signatures, params.classifiers, params.permutation_top)
    if not top or not params.n_permutations:
        return main, records, None, None
    perm_id = f"{run_id}-perm"
    perm_slices = permutation_slices(top, params.n_permutations, params.seed)
    check_server_task(ctx.client, perm_id, dataset, ctx.token, [s["slice"] for s in perm_slices])
    perm = run_slices_task(ctx, perm_id, perm_id, perm_slices)
    perm_path = run_dir / "permutation_records.tsv"
    perm_records = fetch_records_task(ctx.client, perm_id, dataset.sha256, perm_path)
    return main, records, perm, perm_records


@flow(name="signature-search", flow_run_name=_run_name, log_prints=True)
def signature_search(params: SearchParameters = SearchParameters()) -> dict:  # noqa: B008
    """Search random gene signatures for ones that tell the phenotypes apart."""
    started, deadline = time.time(), time.monotonic() + params.deadline_minutes * 60
    dataset = prepare_dataset_step(
        Path(params.input_path),
        preparation_options(params),
        Path(params.data_dir),
        dataset_stem(params.input_path),
    )
    signatures, slices = plan_task(
        dataset.path,
        n_signatures=params.n_signatures,
        min_len=params.min_len,
        max_len=params.max_len,
        seed=params.seed,
        signatures_per_slice=params.signatures_per_slice,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_id = f"{dataset.name}-{stamp}-{secrets.token_hex(3)}"
    run_dir = Path(params.results_dir) / run_id
    save_run_record_task(str(run_dir / "parameters.json"), params.model_dump())
    with serve_or_connect(params) as client:
        ctx = job_context(params, client, dataset, deadline)
        main, records, perm, perm_records = evaluate(
            params, ctx, dataset, run_id, run_dir, slices, signatures
        )
    versions = runtime_info()
    summary = run_summary(
        params=params.model_dump(),
        dataset=dataclasses.asdict(dataset),
        main=main.as_record(),
        perm=perm and perm.as_record(),
        n_slices=len(slices),
        seconds=time.time() - started,
        versions=versions["versions"],
    )
    inputs = ReportInputs(
        summary=summary,
        dataset_path=dataset.path,
        case=dataset.case,
        control=dataset.control,
        signatures=signatures,
        records=records,
        permutation_records=perm_records,
        classifiers=params.classifiers,
        failed_signatures=frozenset(failed_signatures(slices, main.failed)),
        top_fraction=params.top_fraction,
        annotation_path=annotation_path(params),
    )
    report = build_report_task(run_dir, inputs)
    record = {
        "run_id": run_id,
        "dataset": dataclasses.asdict(dataset),
        "runtime": versions,
        "main": main.as_record(),
        "permutation": perm and perm.as_record(),
        "parameters": params.model_dump(),
    }
    save_run_record_task(str(run_dir / "run.json"), record)
    publish_artifacts_task(report)
    return finish(params, run_id, run_dir, report, sorted(main.failed))


def finish(params: SearchParameters, run_id: str, run_dir: Path, report, failed: list[int]):
    """Fail the run beyond the failure tolerance; else say where the report is."""
    logger = get_run_logger()
    logger.info("report: %s", report.html)
    if len(failed) > params.failure_tolerance:
        raise SlicesFailed(
            f"{len(failed)} slices failed after all retries: {failed}; "
            f"partial report at {report.html}"
        )
    if failed:
        logger.warning("%d slices failed (tolerated): %s", len(failed), failed)
    return {"run_id": run_id, "run_dir": str(run_dir), "report": str(report.html), "failed": failed}
