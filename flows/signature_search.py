"""The `signature-search` flow: prepare -> server -> plan & deploy -> poll -> report."""

from __future__ import annotations

import contextlib
import hashlib
import json
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
from tasks.io import file_sha256
from tasks.report.build import ReportInputs, failed_signatures, run_summary
from tasks.science.dataset import DatasetError
from tasks.science.plan import permutation_slices
from tasks.science.work import work_function_source
from tasks.steps import (
    build_report_task,
    check_server_task,
    fetch_records_task,
    plan_task,
    prepare_dataset_task,
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


def prepare(params: SearchParameters) -> tuple[dict, Path]:
    """Prepared dataset summary and file; cached on input content and options."""
    input_path = Path(params.input_path)
    if not input_path.is_file():
        raise DatasetError(f"{input_path}: file not found (parameter input_path)")
    options = {
        "case": params.case,
        "control": params.control,
        "sample_sheet": params.sample_sheet,
        "phenotype_field": params.phenotype_field,
        "cv_folds": params.cv_folds,
        "log2_transform": params.log2_transform,
    }
    input_sha = file_sha256(input_path)
    key = hashlib.sha256((input_sha + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    name = f"{dataset_stem(params.input_path)}-{key[:10]}"
    prepared_file = Path(params.data_dir) / f"{name}.tsv"
    # A cached summary is only good while the file it describes is still there.
    dataset = prepare_dataset_task.with_options(refresh_cache=not prepared_file.exists())(
        input_sha, str(input_path), options, params.data_dir, name
    )
    return dataset, prepared_file


def job_context(params: SearchParameters, client: ServerClient, dataset: dict, deadline: float):
    """What the run's jobs share: backend, server, a fresh run token, config and limits."""
    config = {
        "case": dataset["case"],
        "cv_folds": params.cv_folds,
        "seed": params.seed,
        "classifiers": params.classifiers,
        "dataset_sha256": dataset["sha256"],
    }
    return JobContext(
        backend=make_backend(params, client.base_url),
        client=client,
        token=secrets.token_urlsafe(24),
        dataset_name=dataset["name"],
        config=config,
        work_source=work_function_source(),
        max_retries=params.max_slice_retries,
        slice_timeout=params.slice_timeout,
        deadline=deadline,
    )


def evaluate(
    params: SearchParameters,
    ctx: JobContext,
    dataset: dict,
    run_id: str,
    run_dir: Path,
    slices: list[dict],
    signatures: list,
):
    """Run the main job and the permutation job; return their outcomes and records."""
    check_server_task(ctx.client, run_id, dataset, ctx.token, [s["slice"] for s in slices])
    main = run_slices_task(ctx, run_id, f"{run_id}-main", slices)
    records = fetch_records_task(ctx.client, run_id, dataset["sha256"], run_dir / "records.tsv")
    top = top_for_permutation_task(records, signatures, params.classifiers, params.permutation_top)
    if not top or not params.n_permutations:
        return main, records, None, None
    perm_id = f"{run_id}-perm"
    perm_slices = permutation_slices(top, params.n_permutations, params.seed)
    check_server_task(ctx.client, perm_id, dataset, ctx.token, [s["slice"] for s in perm_slices])
    perm = run_slices_task(ctx, perm_id, perm_id, perm_slices)
    perm_path = run_dir / "permutation_records.tsv"
    perm_records = fetch_records_task(ctx.client, perm_id, dataset["sha256"], perm_path)
    return main, records, perm, perm_records


@flow(name="signature-search", flow_run_name=_run_name, log_prints=True)
def signature_search(params: SearchParameters = SearchParameters()) -> dict:  # noqa: B008
    """Search random gene signatures for ones that tell the phenotypes apart."""
    logger = get_run_logger()
    started, deadline = time.time(), time.monotonic() + params.deadline_minutes * 60
    dataset, prepared_file = prepare(params)
    signatures, slices = plan_task(str(prepared_file), params.n_signatures, params.min_len,
                                   params.max_len, params.seed, params.signatures_per_slice)  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_id = f"{dataset['name']}-{stamp}-{secrets.token_hex(3)}"
    run_dir = Path(params.results_dir) / run_id
    save_run_record_task(str(run_dir / "parameters.json"), params.model_dump())
    with serve_or_connect(params) as client:
        ctx = job_context(params, client, dataset, deadline)
        main, records, perm, perm_records = evaluate(
            params, ctx, dataset, run_id, run_dir, slices, signatures
        )
    versions = runtime_info()
    main_record, perm_record = main.as_record(), perm and perm.as_record()
    summary = run_summary(params.model_dump(), dataset, main_record, perm_record, len(slices),
                          time.time() - started, versions["versions"])  # fmt: skip
    inputs = ReportInputs(
        summary=summary,
        dataset_path=prepared_file,
        case=dataset["case"],
        control=dataset["control"],
        signatures=signatures,
        records=records,
        permutation_records=perm_records,
        classifiers=params.classifiers,
        failed_signatures=frozenset(failed_signatures(slices, main.failed)),
        top_fraction=params.top_fraction,
        annotation_path=annotation_path(params),
    )
    report = build_report_task(run_dir, inputs)
    record = {"run_id": run_id, "dataset": dataset, "runtime": versions, "main": main_record,
              "permutation": perm_record, "parameters": params.model_dump()}  # fmt: skip
    save_run_record_task(str(run_dir / "run.json"), record)
    publish_artifacts_task(report)
    logger.info("report: %s", report.html)
    failed = sorted(main.failed)
    if len(failed) > params.failure_tolerance:
        raise SlicesFailed(
            f"{len(failed)} slices failed after all retries: {failed}; "
            f"partial report at {report.html}"
        )
    if failed:
        logger.warning("%d slices failed (tolerated): %s", len(failed), failed)
    return {"run_id": run_id, "run_dir": str(run_dir), "report": str(report.html), "failed": failed}
