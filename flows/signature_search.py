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

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from flows.backends import make_backend
from flows.params import SearchParameters
from tasks.build import build_report, read_records
from tasks.client import EmbeddedServer, ServerClient
from tasks.prepare import DatasetError
from tasks.steps import (
    check_server_task,
    fetch_records_task,
    file_sha256,
    plan_task,
    prepare_dataset_task,
    publish_artifacts_task,
    run_slices_task,
    runtime_info,
)


class SlicesFailed(RuntimeError):
    """More slices failed after all retries than the run tolerates."""


def _run_name() -> str:
    params = flow_run.parameters.get("params") or {}
    if isinstance(params, SearchParameters):
        params = params.model_dump()
    stem = _dataset_stem(params.get("input_path", "input"))
    contrast = f"{params.get('case') or 'auto'}-vs-{params.get('control') or 'auto'}"
    return f"{stem}-{contrast}-{params.get('n_signatures', '?')}sig"


def _dataset_stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".txt", ".tsv", ".csv"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] or "dataset"


def _preparation_options(params: SearchParameters) -> dict:
    return {
        "case": params.case,
        "control": params.control,
        "sample_sheet": params.sample_sheet,
        "phenotype_field": params.phenotype_field,
        "cv_folds": params.cv_folds,
        "log2_transform": params.log2_transform,
    }


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
    server = EmbeddedServer(Path(params.data_dir), Path(params.database), admin_token)
    try:
        yield ServerClient(server.url, admin_token)
    finally:
        server.stop()


def permutation_slices(top: list[dict], n_permutations: int, seed: int) -> list[dict]:
    """One slice per permutation of the labels, each re-evaluating the top signatures."""
    return [
        {"slice": j + 1, "signatures": top, "permutation_seed": (seed * 1_000_003 + j) % 2**32}
        for j in range(n_permutations)
    ]


@task(name="build-report", persist_result=False)
def build_report_task(**kwargs) -> dict:
    """Aggregate records into the report files."""
    return build_report(**kwargs)


@flow(name="signature-search", flow_run_name=_run_name, log_prints=True)
def signature_search(params: SearchParameters = SearchParameters()) -> dict:  # noqa: B008
    """Search random gene signatures for ones that tell the phenotypes apart."""
    logger = get_run_logger()
    started, deadline = time.time(), time.monotonic() + params.deadline_minutes * 60
    input_path = Path(params.input_path)
    if not input_path.is_file():
        raise DatasetError(f"{input_path}: file not found (parameter input_path)")
    options = _preparation_options(params)
    input_sha = file_sha256(input_path)
    key = hashlib.sha256((input_sha + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    name = f"{_dataset_stem(params.input_path)}-{key[:10]}"
    prepared_file = Path(params.data_dir) / f"{name}.tsv"
    dataset = prepare_dataset_task.with_options(refresh_cache=not prepared_file.exists())(
        input_sha, str(input_path), options, params.data_dir, name
    )
    probesets = prepared_file.read_text().split("\n", 1)[0].split("\t")[1:]
    signatures, slices = plan_task(
        probesets,
        params.n_signatures,
        params.min_len,
        params.max_len,
        params.seed,
        params.signatures_per_slice,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_id = f"{name}-{stamp}-{secrets.token_hex(3)}"
    run_dir = Path(params.results_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "parameters.json").write_text(params.model_dump_json(indent=2))
    config = {
        "case": dataset["case"],
        "cv_folds": params.cv_folds,
        "seed": params.seed,
        "classifiers": params.classifiers,
        "dataset_sha256": dataset["sha256"],
    }
    with serve_or_connect(params) as client:
        backend, parallelism = make_backend(params, client.base_url)
        token = secrets.token_urlsafe(24)
        check_server_task(client, run_id, dataset, token, [s["slice"] for s in slices])
        common = {
            "client": client,
            "backend": backend,
            "token": token,
            "parallelism": parallelism,
            "dataset_name": name,
            "config": config,
            "deadline": deadline,
            "max_retries": params.max_slice_retries,
            "slice_timeout": params.slice_timeout,
        }
        main = run_slices_task(run_id=run_id, slices=slices, job_name=f"{run_id}-main", **common)
        records_path = fetch_records_task(
            client, run_id, dataset["sha256"], str(run_dir / "records.tsv")
        )
        perm, perm_path = None, None
        top = top_for_permutation_task(records_path, signatures, params.permutation_top)
        if top and params.n_permutations:
            perm_id, perm_slices = (
                f"{run_id}-perm",
                permutation_slices(top, params.n_permutations, params.seed),
            )
            check_server_task(client, perm_id, dataset, token, [s["slice"] for s in perm_slices])
            perm = run_slices_task(run_id=perm_id, slices=perm_slices, job_name=perm_id, **common)
            perm_path = fetch_records_task(
                client, perm_id, dataset["sha256"], str(run_dir / "permutation_records.tsv")
            )
    failed = {int(k): v for k, v in main["failed"].items()}
    failed_sigs = {s["id"] for sl in slices if sl["slice"] in failed for s in sl["signatures"]}
    summary = {
        "run id": run_id,
        "dataset": params.input_path,
        "dataset sha256": dataset["sha256"],
        "layout": dataset["layout"],
        "contrast": f"{dataset['case']} (case) vs {dataset['control']} (control)",
        "samples": dataset["samples"],
        "probesets": dataset["n_probesets"],
        "preparation": "; ".join(dataset["decisions"] + dataset["warnings"]),
        "backend": params.backend,
        "job ids": ", ".join(main["job_ids"] + (perm["job_ids"] if perm else [])),
        "slices": len(slices),
        "slices retried": sum(len(a["slices"]) for a in main["attempts"][1:]),
        "slices failed": ", ".join(f"{k} ({v})" for k, v in sorted(failed.items())) or "none",
        "classifiers": ", ".join(params.classifiers),
        "cv folds": params.cv_folds,
        "seed": params.seed,
        "signatures": f"{params.n_signatures} of length {params.min_len}-{params.max_len}",
        "permutations": f"{params.n_permutations} x top {params.permutation_top}",
        "run time": f"{time.time() - started:.1f} s",
        "versions": runtime_info()["versions"],
    }
    report = build_report_task(
        run_dir=run_dir,
        summary=summary,
        dataset_path=prepared_file,
        case=dataset["case"],
        control=dataset["control"],
        signatures=signatures,
        records_path=Path(records_path),
        permutation_records_path=perm_path and Path(perm_path),
        classifiers=params.classifiers,
        failed_signatures=failed_sigs,
        top_fraction=params.top_fraction,
        annotation_path=_annotation_path(params),
    )
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "dataset": dataset,
                "runtime": runtime_info(),
                "main": main,
                "permutation": perm,
                "parameters": params.model_dump(),
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    publish_artifacts_task(report)
    logger.info("report: %s", report["html"])
    if len(failed) > params.failure_tolerance:
        raise SlicesFailed(
            f"{len(failed)} slices failed after all retries: {sorted(failed)}; "
            f"partial report at {report['html']}"
        )
    if failed:
        logger.warning("%d slices failed (tolerated): %s", len(failed), sorted(failed))
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "report": report["html"],
        "failed": sorted(failed),
    }


def _annotation_path(params: SearchParameters) -> Path | None:
    if params.annotation_path:
        return Path(params.annotation_path)
    guess = Path(params.input_path).with_name(_dataset_stem(params.input_path) + ".annotation.tsv")
    return guess if guess.is_file() else None


@task(name="top-for-permutation")
def top_for_permutation_task(records_path: str, signatures, n_top: int) -> list[dict]:
    """The `n_top` signatures by mean AUC (ties by id), as slice-datum entries."""
    records = read_records(Path(records_path))
    if n_top == 0 or records.empty:
        return []
    mean_auc = records[records["permutation"] == -1].groupby("signature")["auc"].mean().dropna()
    ranked = sorted(mean_auc.items(), key=lambda kv: (-kv[1], kv[0]))[:n_top]
    by_id = {s.id: s for s in signatures}
    return [{"id": int(i), "probesets": list(by_id[i].probesets)} for i, _ in ranked]
