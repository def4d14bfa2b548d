"""The signature-search flow end to end on the bundled data with the local backend."""

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.params import SearchParameters
from flows.signature_search import SlicesFailed, signature_search
from tasks.science.dataset import DatasetError

from ..conftest import GOLUB

SMALL = {
    "input_path": str(GOLUB),
    "n_signatures": 24,
    "signatures_per_slice": 4,
    "min_len": 3,
    "max_len": 6,
    "classifiers": ["logistic", "decision_tree"],
    "cv_folds": 3,
    "n_permutations": 3,
    "permutation_top": 2,
    "slice_timeout": 30,
    "retry_backoff": 0.2,
    "seed": 5,
}


def params(tmp_path: Path, **extra) -> SearchParameters:
    dirs = {
        "results_dir": str(tmp_path / "results"),
        "data_dir": str(tmp_path / "data"),
        "database": str(tmp_path / "db.sqlite3"),
    }
    return SearchParameters(**{**SMALL, **dirs, **extra})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("flow")


@pytest.fixture(scope="module")
def reference_run(workdir):
    return signature_search(params(workdir, workers=1))


def test_report_files_exist(reference_run):
    run_dir = Path(reference_run["run_dir"])
    for name in (
        "signatures.tsv",
        "genes.tsv",
        "permutation.tsv",
        "report.html",
        "report.md",
        "report.json",
        "run.json",
        "parameters.json",
        "records.tsv",
    ):
        assert (run_dir / name).is_file(), name
    for plot in ("auc_by_classifier", "auc_by_length", "volcano", "heatmap", "permutation"):
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 1000
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "M27891_at" in html
    run = json.loads((run_dir / "run.json").read_text())
    assert run["dataset"]["sha256"] and run["runtime"]["versions"]["scikit-learn"]
    assert run["main"]["job_ids"] and run["main"]["attempts"][0]["failed"] == {}
    signatures = (run_dir / "signatures.tsv").read_text().splitlines()
    assert len(signatures) == 25


def tables(result) -> tuple[bytes, bytes]:
    run_dir = Path(result["run_dir"])
    return (run_dir / "signatures.tsv").read_bytes(), (run_dir / "genes.tsv").read_bytes()


def test_same_tables_with_two_workers_and_with_absorbed_faults(workdir, reference_run):
    again = signature_search(params(workdir, workers=2))
    assert tables(again) == tables(reference_run)
    faulty = signature_search(
        params(workdir, workers=2, slice_timeout=10, faults={"fail": [2], "kill": [3], "hang": [5]})
    )
    assert tables(faulty) == tables(reference_run)
    run = json.loads((Path(faulty["run_dir"]) / "run.json").read_text())
    first, retry = run["main"]["attempts"][:2]
    assert sorted(int(s) for s in first["failed"]) == [2, 3, 5]
    assert retry["slices"] == [2, 3, 5] and retry["failed"] == {}


def test_slices_that_keep_failing_fail_the_flow_but_are_reported(workdir):
    with pytest.raises(SlicesFailed, match=r"\[4\]"):
        signature_search(
            params(workdir, max_slice_retries=0, faults={"fail": [4]}, n_permutations=0)
        )
    reports = sorted(Path(workdir, "results").glob("*/report.md"), key=lambda p: p.stat().st_mtime)
    text = reports[-1].read_text()
    assert "slices failed**: 4 (error: RuntimeError: injected fault" in text
    tolerated = signature_search(
        params(
            workdir,
            max_slice_retries=0,
            faults={"fail": [4]},
            n_permutations=0,
            failure_tolerance=1,
        )
    )
    assert tolerated["failed"] == [4]
    signatures = (Path(tolerated["run_dir"]) / "signatures.tsv").read_text()
    assert signatures.count("slice_failed") == 4


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"backend": "slurm"}, ValidationError, "backend"),
        ({"min_len": 7, "max_len": 5}, ValidationError, "min_len"),
        ({"classifiers": ["knn"]}, ValidationError, "unknown classifiers"),
        ({"faults": {"explode": [1]}}, ValidationError, "unknown fault kinds"),
        ({"cv_folds": 12}, DatasetError, "cv_folds=12"),
        ({"case": "CLL"}, DatasetError, "case label 'CLL' not found"),
        ({"input_path": "input/none.tsv"}, DatasetError, "input_path"),
    ],
)
def test_bad_parameters_fail_before_anything_is_deployed(tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        signature_search(params(tmp_path, **extra))
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_rerun_reuses_the_cached_preparation_and_logs_hold_no_token(workdir, reference_run):
    from prefect.client.orchestration import get_client

    prepared = sorted(Path(workdir, "data").glob("*.tsv"))
    assert len(prepared) == 1
    before = prepared[0].stat().st_mtime_ns
    signature_search(params(workdir, workers=1, n_permutations=0))
    assert prepared[0].stat().st_mtime_ns == before
    with get_client(sync_client=True) as client:
        messages = [log.message for log in client.read_logs()]
    assert any("slices done" in m for m in messages)
    leaked = [m for m in messages if re.search(r"token=(?!\*\*\*)", m)]
    assert leaked == []
