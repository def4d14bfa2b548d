"""Report inputs built from the bundled dataset, a small plan and synthetic records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.execution.rounds import Round, RunOutcome
from tasks.parameters import SearchParameters
from tasks.report.analysis import ReportInputs, SearchRecords
from tasks.report.summary import run_summary
from tasks.science.plan import plan_signatures
from tasks.science.screen import NullDesign
from tasks.science.tables import signature_table

from ...conftest import GOLUB

CLASSIFIERS = ["logistic", "svm"]
N_SIGNATURES = 40


def synthetic_records(signature_ids: list[int], permutations: list[int], seed: int) -> pd.DataFrame:
    """AUC and accuracy per (permutation, signature, classifier), to 6 digits as records are."""
    rng = np.random.default_rng(seed)
    rows = [
        (p, s, c, round(float(rng.uniform(0.4, 1.0)), 6), round(float(rng.uniform(0.4, 1.0)), 6))
        for p in permutations
        for s in signature_ids
        for c in sorted(CLASSIFIERS)
    ]
    frame = pd.DataFrame(
        rows, columns=["permutation", "signature", "classifier", "auc", "accuracy"]
    )
    return frame.assign(error=np.nan)


def synthetic_predictions(signature_ids: list[int], labels: list[str], seed: int) -> pd.DataFrame:
    """Out-of-fold scores per (signature, classifier, sample), tied at 2 decimals, cases higher."""
    rng = np.random.default_rng(seed)
    case = np.array(labels) == "AML"
    rows = [
        (s, c, f"s{i}", labels[i], score)
        for s in signature_ids
        for c in sorted(CLASSIFIERS)
        for i, score in enumerate(
            np.round(np.clip(rng.uniform(0, 0.8, len(labels)) + 0.3 * case, 0, 1), 2)
        )
    ]
    return pd.DataFrame(rows, columns=["signature", "classifier", "sample", "phenotype", "score"])


@pytest.fixture(scope="session")
def outcomes() -> tuple[RunOutcome, RunOutcome]:
    """A main job whose slice 2 failed once, then passed; a permutation job in one round."""
    main = RunOutcome(
        "run-1",
        rounds=[
            Round(0, "job-a", "done", [1, 2, 3, 4], {2: "error: RuntimeError: <boom> & co"}),
            Round(1, "job-b", "done", [2], {}),
        ],
    )
    perm = RunOutcome("run-1-perm", rounds=[Round(0, "job-c", "done", [1, 2], {})])
    return main, perm


@pytest.fixture(scope="session")
def params() -> SearchParameters:
    """Parameters of a small run."""
    return SearchParameters(
        n_signatures=N_SIGNATURES, classifiers=CLASSIFIERS, n_permutations=5, cv_folds=3
    )


@pytest.fixture(scope="session")
def report_inputs(params, golub_summary, outcomes) -> ReportInputs:
    """Everything a report is made from, for a 40-signature run with a permutation job."""
    probesets = GOLUB.read_text().split("\n", 1)[0].split("\t")[1:]
    signatures = plan_signatures(probesets, N_SIGNATURES, 5, 9, seed=3)
    ids = [s.id for s in signatures]
    main, perm = outcomes
    records = synthetic_records(ids, [-1], seed=1)
    top = signature_table(signatures, records, CLASSIFIERS, set())["signature"].head(3).tolist()
    labels = [line.split("\t", 1)[0] for line in GOLUB.read_text().strip().split("\n")[1:]]
    return ReportInputs(
        summary=run_summary(params, golub_summary, main, perm, 4, 12.5, {"numpy": "2.0"}),
        dataset_path=GOLUB,
        case="AML",
        control="ALL",
        search=SearchRecords(
            (1,),
            signatures,
            records,
            synthetic_records(ids[:3], [11, 12, 13, 14, 15], seed=2),
            # A panel of 3 on every permutation, no candidates.
            NullDesign(frozenset(ids[:3]), frozenset([11, 12, 13, 14, 15]), {}),
        ),
        classifiers=CLASSIFIERS,
        failed_signatures=frozenset(),
        top_fraction=0.1,
        annotation_path=Path(GOLUB).with_name("golub_all_aml.annotation.tsv"),
        record_files=(
            "records.tsv",
            "permutation_records.tsv",
            "validation_records.tsv",
            "predictions.tsv",
        ),
        validation_records=synthetic_records(ids[:4], [-1], seed=3),
        predictions=synthetic_predictions(top, labels, seed=4),
    )
