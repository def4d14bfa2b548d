"""Run policy: plain functions, tested without Prefect, a server or a worker (milliseconds)."""

import pandas as pd
import pytest

from tasks.execution import sizing
from tasks.execution.rounds import Round, RunOutcome
from tasks.parameters import SearchParameters
from tasks.policy import (
    JobResults,
    dataset_stem,
    follow_up_run_id,
    null_slices,
    record_files,
    roc_signatures,
    run_key,
    sample_split,
    search_protocol,
    slice_size,
    tolerated,
    validation_run_id,
    without_failed_permutations,
    worker_config,
)
from tasks.report.build import SearchRecords
from tasks.science.dataset import DatasetError
from tasks.science.plan import Signature, permutation_seeds, plan_signatures
from tasks.science.screen import NullDesign, NullPlan
from tasks.science.tables import RECORD_COLUMNS

SIGNATURES = plan_signatures([f"p{i}" for i in range(50)], 12, 2, 4, seed=1)


@pytest.fixture
def dataset(golub_summary):
    return golub_summary


@pytest.mark.parametrize(
    ("path", "stem"),
    [
        ("input/golub_all_aml.tsv", "golub_all_aml"),
        ("GSE57383_series_matrix.txt.gz", "GSE57383_series_matrix"),
        ("/data/my study (v2).csv", "my_study__v2_"),
        (".tsv", "dataset"),
    ],
)
def test_dataset_stem_is_a_plain_name(path, stem):
    assert dataset_stem(path) == stem


def test_worker_config_names_the_dataset_and_the_discovery_rows_only_when_split(dataset):
    params = SearchParameters(classifiers=["svm"], cv_folds=4, seed=9)
    plain = worker_config(params, dataset, None)
    assert plain == {
        "case": "AML",
        "cv_folds": 4,
        "seed": 9,
        "classifiers": ["svm"],
        "dataset_sha256": "0" * 64,
    }
    assert worker_config(params, dataset, [0, 2, 5]) == {**plain, "rows": [0, 2, 5]}


def test_local_slices_take_the_parameter_and_dcp_slices_fill_their_target(dataset):
    local = SearchParameters(signatures_per_slice=7)
    assert slice_size(local, dataset, None) == 7
    dcp = SearchParameters(backend="dcp", signatures_per_slice=7)
    target = sizing.DEFAULT_TARGET_SLICE_SECONDS
    expected = sizing.signatures_per_slice(target, 38, dcp.classifiers, dcp.cv_folds)
    assert slice_size(dcp, dataset, None) == expected > 7
    # Sized on the samples the search sees: the discovery rows of a split.
    split = (list(range(20)), list(range(20, 38)))
    on_discovery = sizing.signatures_per_slice(target, 20, dcp.classifiers, dcp.cv_folds)
    assert slice_size(dcp, dataset, split) == on_discovery != expected
    shorter = SearchParameters(backend="dcp", dcp={"target_slice_seconds": 20.0})
    assert slice_size(shorter, dataset, None) < expected


def test_the_run_key_changes_with_what_the_run_computes_and_nothing_else(dataset):
    protocol = search_protocol(SearchParameters(), dataset)
    key = run_key(protocol, 1, 10)
    assert key == run_key(search_protocol(SearchParameters(workers=3), dataset), 1, 10)
    others = {
        run_key(protocol, 2, 10),
        run_key(protocol, 1, 20),
        run_key(search_protocol(SearchParameters(seed=1), dataset), 1, 10),
        run_key(search_protocol(SearchParameters(n_signatures=301), dataset), 1, 10),
    }
    assert key not in others and len(others) == 4
    assert len(key) == 12 and int(key, 16) >= 0


def test_a_validation_run_is_named_by_its_top_list():
    top = SIGNATURES[:3]
    assert validation_run_id("run-x", top) == validation_run_id("run-x", list(top))
    assert validation_run_id("run-x", top) != validation_run_id("run-x", SIGNATURES[1:4])
    assert validation_run_id("run-x", top).startswith("run-x-validation-")


@pytest.mark.parametrize(("failed", "tolerance", "ok"), [(0, 0, True), (1, 0, False), (2, 2, True)])
def test_tolerated_counts_failed_slices_against_the_tolerance(failed, tolerance, ok):
    params = SearchParameters(failure_tolerance=tolerance)
    assert tolerated(params, list(range(failed))) is ok


def null_plan(evaluate):
    """A null job asking these signatures per seed (the design is not looked at)."""
    return NullPlan(evaluate, NullDesign(frozenset(), frozenset(), {}))


def test_null_slices_pack_each_permutations_signatures_as_asked():
    params = SearchParameters(n_permutations=3, null_signatures=5, seed=4)
    seeds = permutation_seeds(3, 4)
    evaluate = {seeds[0]: tuple(SIGNATURES[:5]), seeds[1]: (), seeds[2]: tuple(SIGNATURES[2:5])}
    slices = null_slices(params, null_plan(evaluate), per_slice=2)
    # 5 signatures in 3 slices, none, then 3 in 2.
    assert [s["slice"] for s in slices] == list(range(1, 6))
    assert [s["permutation_seed"] for s in slices] == [seeds[0]] * 3 + [seeds[2]] * 2
    ids = [[p["id"] for p in s["signatures"]] for s in slices]
    assert ids[3:] == [[SIGNATURES[2].id, SIGNATURES[3].id], [SIGNATURES[4].id]]
    assert null_slices(SearchParameters(n_permutations=0), null_plan(evaluate), 2) == []
    assert null_slices(params, None, 2) == []


def test_record_files_are_those_of_the_jobs_that_ran():
    outcome = RunOutcome("run-x", [Round(0, "job", "done", [1], {})])
    search = SearchRecords((1,), [Signature(0, ("a",))], None, None)
    assert record_files(JobResults(outcome, None, None, search, None)) == ("records.tsv",)
    every = JobResults(outcome, outcome, outcome, search, None, outcome)
    assert record_files(every) == (
        "records.tsv",
        "permutation_records.tsv",
        "validation_records.tsv",
        "predictions.tsv",
    )
    assert every.run_ids == ["run-x"] * 4  # the predictions run is finished or suspended too


def test_roc_signatures_are_the_best_ranked_ones_as_planned():
    classifiers = ["logistic", "svm"]
    rows = [
        (-1, s.id, c, None if s.id == 0 else 0.5 + 0.01 * s.id, 0.5, None)
        for s in SIGNATURES
        for c in classifiers
    ]
    records = pd.DataFrame(rows, columns=RECORD_COLUMNS).astype({"auc": float})
    search = SearchRecords((1,), SIGNATURES, records, None)
    top = roc_signatures(search, classifiers, 5)
    assert [s.id for s in top] == [11, 10, 9, 8, 7]
    assert top[0] is SIGNATURES[11]  # its probesets as planned
    few = SearchRecords((1,), SIGNATURES[:3], records[records["signature"] < 3], None)
    assert [s.id for s in roc_signatures(few, classifiers, 5)] == [2, 1]  # no result: not ranked
    assert roc_signatures(search, classifiers, 0) == []  # roc_signatures 0: no curves
    assert follow_up_run_id("run-x", "predictions", top).startswith("run-x-predictions-")


def test_the_sample_split_refuses_a_discovery_class_smaller_than_the_folds():
    labels = ["a"] * 10 + ["b"] * 30
    discovery, held_out = sample_split(labels, 0.3, 7, 5, "d.tsv")
    assert len(held_out) == 12 and sorted(discovery + held_out) == list(range(40))
    assert sum(labels[i] == "a" for i in discovery) == 7  # stratified: 3 of the 10 held out
    with pytest.raises(DatasetError, match="d.tsv: validation_fraction=0.3 leaves for discovery "
                       "class 'a' has 7 samples, fewer than cv_folds=8"):  # fmt: skip
        sample_split(labels, 0.3, 7, 8, "d.tsv")


def test_a_permutation_with_a_failed_slice_leaves_the_null_whole():
    params = SearchParameters(n_permutations=3, null_signatures=4, seed=4)
    seeds = permutation_seeds(3, 4)
    evaluate = {seed: tuple(SIGNATURES[:4]) for seed in seeds}
    slices = null_slices(params, null_plan(evaluate), per_slice=2)
    records = pd.DataFrame(
        [
            {"permutation": seed, "signature": s.id, "classifier": "svm", "auc": 0.5}
            for seed in seeds
            for s in SIGNATURES[:4]
            if not (seed == seeds[1] and s.id == SIGNATURES[3].id)  # slice 4 sent nothing
        ]
    )
    search = SearchRecords((1,), SIGNATURES, records, records)
    kept, dropped = without_failed_permutations(search, slices, {4})
    assert dropped == [seeds[1]]
    assert set(kept.permutation_records["permutation"]) == {seeds[0], seeds[2]}
    assert len(kept.permutation_records) == 8 and kept.records is records
    assert without_failed_permutations(search, slices, set()) == (search, [])
