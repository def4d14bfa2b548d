"""Run policy: what a run computes, what it is called, what it records (plain functions).

The flow (`flows/signature_search.py`) wires Prefect tasks around these; they open no files
and start nothing, so they are tested in milliseconds (tests/tasks/test_policy.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.execution import sizing
from tasks.execution.history import Journal
from tasks.execution.rounds import PlannedSlices, RunOutcome
from tasks.report.build import ReportInputs, SearchRecords
from tasks.report.summary import RunSummary
from tasks.science.dataset import DatasetError, PreparedSummary
from tasks.science.design import DesignError, ExpressionModel
from tasks.science.plan import (
    SearchProtocol,
    Signature,
    SignaturePlan,
    permutation_slices,
    slice_signature_ids,
    stratified_split,
)
from tasks.science.screen import NullPlan
from tasks.science.tables import signature_table

if TYPE_CHECKING:
    from tasks.parameters import SearchParameters
    from tasks.science.worker import SliceDatum, WorkerConfig


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


def search_protocol(params: SearchParameters, dataset: PreparedSummary) -> SearchProtocol:
    """What a run's batch shares with the other batches of its search."""
    return SearchProtocol(
        dataset_sha256=dataset.sha256,
        case=dataset.case,
        control=dataset.control,
        classifiers=tuple(params.classifiers),
        cv_folds=params.cv_folds,
        seed=params.seed,
        n_signatures=params.n_signatures,
        min_len=params.min_len,
        max_len=params.max_len,
        n_permutations=params.n_permutations,
        null_signatures=params.null_signatures,
        validation_fraction=params.validation_fraction,
        null_candidates=params.null_candidates,
    )


def run_key(protocol: SearchProtocol, batch: int, signatures_per_slice: int) -> str:
    """What names a run's server runs: its search, its batch and its slices, nothing else.

    The same search asked for again finds its unfinished server run and resumes it; the
    key is in workers' URLs (seen by the DCP scheduler), so it is a hash, not a file name.
    """
    text = json.dumps([protocol.key(), batch, signatures_per_slice])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def worker_config(
    params: SearchParameters, dataset: PreparedSummary, discovery: list[int] | None
) -> WorkerConfig:
    """The config every slice of the run's search gets (the work function reads it)."""
    config: WorkerConfig = {
        "case": dataset.case,
        "cv_folds": params.cv_folds,
        "seed": params.seed,
        "classifiers": list(params.classifiers),
        "dataset_sha256": dataset.sha256,
    }
    if discovery is not None:
        config["rows"] = discovery  # the search sees the discovery samples only
    return config


def slice_size(
    params: SearchParameters,
    dataset: PreparedSummary,
    split: tuple[list[int], list[int]] | None,
) -> int:
    """Signatures per slice: on DCP, what fills `dcp.target_slice_seconds`; else the parameter.

    A fresh DCP sandbox costs seconds before useful work, so DCP slices are sized to make it a
    small share (tasks/execution/sizing.py); the records do not depend on the packing.
    """
    if params.backend != "dcp":
        return params.signatures_per_slice
    n_samples = len(split[0]) if split else sum(dataset.samples.values())
    return sizing.signatures_per_slice(
        params.dcp.target_slice_seconds, n_samples, params.classifiers, params.cv_folds
    )


def sample_split(
    labels: Sequence[str],
    fraction: float,
    seed: int,
    cv_folds: int,
    source: str,
    model: ExpressionModel | None = None,
    case: str = "",
) -> tuple[list[int], list[int]]:
    """Discovery and held-out rows, stratified and seeded; a DatasetError naming `source` if
    the discovery samples of a class cannot fill the folds or the model's design."""
    from tasks.science.worker import class_size_problem  # the worker's rule, loaded when used

    try:
        discovery, held_out = stratified_split(labels, fraction, seed)
    except ValueError as exc:
        raise DatasetError(f"{source}: {exc} (parameter validation_fraction)") from None
    problem = class_size_problem([labels[i] for i in discovery], sorted(set(labels)), cv_folds)
    if problem:
        raise DatasetError(
            f"{source}: validation_fraction={fraction} leaves for discovery {problem}; "
            "lower one of them"
        )
    if model is not None and model.covariates:
        try:
            model.design(np.asarray([labels[i] == case for i in discovery]), discovery, source)
        except DesignError as exc:
            raise DatasetError(
                f"{exc}, among the discovery samples validation_fraction={fraction} leaves"
            ) from None
    return discovery, held_out


def follow_up_run_id(run_id: str, kind: str, top: Sequence[Signature]) -> str:
    """The server run of a follow-up job on a top list, named by it: a resume may have another."""
    digest = hashlib.sha256(json.dumps([s.id for s in top]).encode()).hexdigest()[:8]
    return f"{run_id}-{kind}-{digest}"


def validation_run_id(run_id: str, top: Sequence[Signature]) -> str:
    """The server run validating a top list."""
    return follow_up_run_id(run_id, "validation", top)


# The top signatures' out-of-fold predictions (for ROC curves) go one a slice: spread over
# the workers whatever their number (the packing changes no score).
ROC_SIGNATURES_PER_SLICE = 1


def roc_signatures(
    search: SearchRecords, classifiers: Sequence[str], count: int
) -> list[Signature]:
    """The best `count` ranked signatures of the search, as planned."""
    if count == 0:
        return []
    table = signature_table(search.signatures, search.records, classifiers, set())
    by_id = {s.id: s for s in search.signatures}
    ranked = table.dropna(subset=["rank"]).head(count)
    return [by_id[int(i)] for i in ranked["signature"]]


def null_slices(
    params: SearchParameters, null: NullPlan | None, per_slice: int
) -> list[SliceDatum]:
    """The permuted-label slices: each permutation's panel and candidates (none without a null).

    The labels' permutations come from the search's seed, not the batch's: every batch's
    permutation j shares its labels, so pooled batches form one null.
    """
    if null is None or not params.n_permutations:
        return []
    return permutation_slices(list(null.evaluate.items()), per_slice)


def without_failed_permutations(
    search: SearchRecords, perm_slices: Sequence[SliceDatum], failed: Collection[int]
) -> tuple[SearchRecords, list[int]]:
    """The search without the permutations one of whose slices failed, and their seeds.

    Such a permutation's statistic would be the best of fewer signatures than the real
    labels' one, which makes a p too small; leaving out whole permutations keeps it exact.
    """
    chosen = (s["permutation_seed"] for s in perm_slices if s["slice"] in failed)
    seeds = sorted({seed for seed in chosen if seed is not None})
    records = search.permutation_records
    if not seeds or records is None:
        return search, seeds
    kept = records[~records["permutation"].isin(seeds)].reset_index(drop=True)
    return dataclasses.replace(search, permutation_records=kept), seeds


RECORD_FILES = {
    "main": "records.tsv",
    "permutation": "permutation_records.tsv",
    "validation": "validation_records.tsv",
    "predictions": "predictions.tsv",
}


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run computes: its batch of the search, its slices, where its files go."""

    run_id: str
    run_dir: Path  # where the run's files are once it completes
    protocol: SearchProtocol
    search_dir: Path
    batch: int
    signatures: SignaturePlan
    slices: PlannedSlices
    split: tuple[list[int], list[int]] | None  # (discovery, validation) sample rows
    journal: Journal  # the run's history, kept in its folder across flow attempts
    artifact_prefix: str  # the search's artifact keys: one history per search in the UI

    @property
    def work_dir(self) -> Path:
        """Where the run's files are written until it completes (clearly marked unfinished)."""
        return self.run_dir.with_name(self.run_dir.name + ".incomplete")


@dataclasses.dataclass(frozen=True)
class JobResults:
    """What the run's jobs returned: outcomes, and the records the report is made from."""

    main: RunOutcome
    perm: RunOutcome | None
    validation: RunOutcome | None
    search: SearchRecords
    validation_records: pd.DataFrame | None
    predictions: RunOutcome | None = None  # the top signatures' out-of-fold scores, for ROC
    prediction_scores: pd.DataFrame | None = None  # predictions.tsv (sample-level)

    @property
    def run_ids(self) -> list[str]:
        """The server runs of the jobs that ran."""
        outcomes = (self.main, self.perm, self.validation, self.predictions)
        return [outcome.run_id for outcome in outcomes if outcome is not None]


def tolerated(params: SearchParameters, failed: Collection[int]) -> bool:
    """Whether the run ends Completed: its failed slices within the tolerance."""
    return len(failed) <= params.failure_tolerance


def report_inputs(
    params: SearchParameters,
    dataset: PreparedSummary,
    plan: RunPlan,
    jobs: JobResults,
    summary: RunSummary,
) -> ReportInputs:
    """What the report is made from: the run's summary, records and files."""
    return ReportInputs(
        summary=summary,
        dataset_path=dataset.path,
        case=dataset.case,
        control=dataset.control,
        search=jobs.search,
        classifiers=params.classifiers,
        failed_signatures=frozenset(
            slice_signature_ids(plan.signatures, plan.slices.per_slice, sorted(jobs.main.failed))
        ),
        top_fraction=params.top_fraction,
        annotation_path=annotation_path(params),
        record_files=record_files(jobs),
        validation_records=jobs.validation_records,
        discovery_rows=tuple(plan.split[0]) if plan.split else None,
        predictions=jobs.prediction_scores,
    )


def run_record(
    params: SearchParameters,
    dataset: PreparedSummary,
    plan: RunPlan,
    jobs: JobResults,
    versions: dict,
) -> dict:
    """run.json: the run's dataset, runtime, jobs (every round of every attempt), batch, parameters."""
    return {
        "run_id": plan.run_id,
        "dataset": dataclasses.asdict(dataset),
        "runtime": versions,
        "main": jobs.main.as_record(),
        "permutation": jobs.perm and jobs.perm.as_record(),
        "validation": jobs.validation and jobs.validation.as_record(),
        "predictions": jobs.predictions and jobs.predictions.as_record(),
        "search": {
            "key": plan.protocol.key(),
            "batch": plan.batch,
            "batches_reported": jobs.search.batches,
        },
        "parameters": params.model_dump(),
    }


def record_files(jobs: JobResults) -> tuple[str, ...]:
    """The records files a run wrote beside its report."""
    names = {
        "records.tsv": True,
        "permutation_records.tsv": jobs.perm is not None,
        "validation_records.tsv": jobs.validation is not None,
        "predictions.tsv": jobs.predictions is not None,
    }
    return tuple(name for name, written in names.items() if written)
