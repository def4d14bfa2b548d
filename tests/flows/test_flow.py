"""The signature-search flow end to end on the bundled data with the local backend."""

import contextlib
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
)
from prefect.exceptions import ParameterBindError
from pydantic import ValidationError

from flows.signature_search import NothingComputed, SlicesFailed, signature_search
from tasks.execution.local import LocalBackend
from tasks.parameters import FAULTS_VARIABLE, SearchParameters
from tasks.science.dataset import DatasetError
from tasks.science.work import remote_work_stub

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
    "null_signatures": 4,
    "slice_timeout": 30,
    "retry_backoff": 0.2,
    "seed": 5,
    # The ROC follow-up job in the runs that check it only (it adds ~15 s to a run).
    "roc_signatures": 0,
}
ROC = 5


def params(tmp_path: Path, **extra) -> dict:
    """The flow's keyword arguments: the small search, files under `tmp_path`."""
    dirs = {
        "results_dir": str(tmp_path / "results"),
        "data_dir": str(tmp_path / "data"),
        "database": str(tmp_path / "db.sqlite3"),
    }
    return {**SMALL, **dirs, **extra}


def run_with_faults(monkeypatch, faults: dict, **kwargs):
    """A flow run's final state, with faults injected through the test hook."""
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps(faults))
    return signature_search(**kwargs, return_state=True)


def warnings_of(flow_run_id) -> list[str]:
    """The flow run's log lines at WARNING and above, as the UI shows them."""
    only = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=30)
    )
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(log_filter=only)]


def artifacts_of(flow_run_id) -> dict:
    """The flow run's artifacts by key."""
    only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=only)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("flow")


@pytest.fixture(scope="module")
def reference_state(workdir):
    return signature_search(**params(workdir, workers=1, roc_signatures=ROC), return_state=True)


@pytest.fixture(scope="module")
def reference_run(reference_state):
    return reference_state.result()


def test_report_files_exist(reference_run):
    run_dir = Path(reference_run["run_dir"])
    for name in (
        "signatures.tsv",
        "genes.tsv",
        "null.tsv",
        "permutation_records.tsv",
        "report.html",
        "report.md",
        "report.json",
        "run.json",
        "parameters.json",
        "records.tsv",
        "predictions.tsv",
    ):
        assert (run_dir / name).is_file(), name
    plots = ("roc", "auc_by_classifier", "auc_by_length", "volcano", "heatmap", "random_baseline")
    for plot in plots:
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 1000
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "M27891_at" in html
    run = json.loads((run_dir / "run.json").read_text())
    assert run["dataset"]["sha256"] and run["runtime"]["versions"]["scikit-learn"]
    assert run["main"]["job_ids"] and run["main"]["rounds"][0]["failed"] == {}
    signatures = (run_dir / "signatures.tsv").read_text().splitlines()
    assert len(signatures) == 25
    # Both of the run's jobs were ended on the server: late posts are refused.
    database = Path(run_dir).parents[1] / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT run_id, finished_at FROM runs WHERE run_id LIKE ?", [run["run_id"] + "%"]
        )
        runs = dict(rows.fetchall())
    predictions_run = run["predictions"]["run_id"]
    assert runs.keys() == {run["run_id"], f"{run['run_id']}-perm", predictions_run}
    assert predictions_run.startswith(f"{run['run_id']}-predictions-")
    # What workers' URLs carry through the DCP scheduler names no file: opaque ids only.
    assert re.fullmatch(r"run-[0-9a-f]{12}(-\d+)?", run["run_id"])
    assert re.fullmatch(r"dataset-[0-9a-f]{16}", run["dataset"]["name"])
    assert run_dir.name == f"golub_all_aml-{run['run_id']}"
    assert all(runs.values())


def test_roc_curves_are_drawn_from_the_top_signatures_out_of_fold_scores(reference_run):
    from sklearn.metrics import roc_auc_score

    run_dir = Path(reference_run["run_dir"])
    scores = pd.read_csv(run_dir / "predictions.tsv", sep="\t")
    signatures = pd.read_csv(run_dir / "signatures.tsv", sep="\t")
    top = signatures.head(ROC)["signature"].tolist()
    assert sorted(set(scores["signature"])) == sorted(top)
    assert len(scores) == ROC * len(SMALL["classifiers"]) * 38  # every sample
    assert scores.groupby(["signature", "classifier"])["sample"].apply(list).map(len).eq(38).all()
    report = json.loads((run_dir / "report.json").read_text())
    assert [row["signature"] for row in report["roc"]] == top
    for row in report["roc"]:
        mine = scores[scores["signature"] == row["signature"]]
        aucs = [
            roc_auc_score(g["phenotype"] == "AML", g["score"])
            for _, g in mine.groupby("classifier")
        ]
        # The curve's area is the mean pooled AUC of the scores written (to 1e-12), and the
        # search's mean AUC of that signature, whose records are rounded to 6 digits (1e-6).
        np.testing.assert_allclose(row["roc_auc"], np.mean(aucs), rtol=0, atol=1e-12)
        np.testing.assert_allclose(row["roc_auc"], row["mean_auc"], rtol=0, atol=1e-6)


def tables(result, names=("signatures.tsv", "genes.tsv")) -> tuple[bytes, ...]:
    run_dir = Path(result["run_dir"])
    return tuple((run_dir / name).read_bytes() for name in names)


def test_same_tables_with_two_workers_and_with_absorbed_faults(workdir, reference_run, monkeypatch):
    # Two workers and faults in one run, against the reference's one worker; a run on two
    # workers without faults is the first batch of test_extending_a_search_adds_batches_...
    faults = {"fail": [2], "kill": [3], "hang": [5]}
    # A hang is found by the slice timeout; on a loaded machine other slices may time out
    # too, so there are retries enough for them: the run is slower, never red.
    faulty_params = params(
        workdir, workers=2, slice_timeout=10, max_slice_retries=6, roc_signatures=ROC
    )
    deployed = []
    real_deploy = LocalBackend.deploy
    monkeypatch.setattr(
        LocalBackend, "deploy", lambda self, spec: deployed.append(spec) or real_deploy(self, spec)
    )
    state = run_with_faults(monkeypatch, faults, **faulty_params)
    faulty = state.result()
    with_scores = ("signatures.tsv", "genes.tsv", "predictions.tsv")
    assert tables(faulty, with_scores) == tables(reference_run, with_scores)
    # Every job, retries and the null's included, shipped the stub and fetched the work source.
    assert len(deployed) >= 3
    for spec in deployed:
        assert spec.work_source == remote_work_stub() and "/work?token=" in spec.work_url
        assert "def score_classifier" not in repr(spec)
    run = json.loads((Path(faulty["run_dir"]) / "run.json").read_text())
    first, retry = run["main"]["rounds"][:2]
    failed_first = {int(s): reason for s, reason in first["failed"].items()}
    assert {2, 3, 5} <= failed_first.keys()
    others = [r for s, r in failed_first.items() if s not in (2, 3, 5)]
    assert all(r == "lost: slice timed out" for r in others)
    assert set(retry["slices"]) == failed_first.keys()
    assert run["main"]["rounds"][-1]["failed"] == {}
    assert run["parameters"]["faults"] == faults  # recorded, though not a flow parameter
    # The retries are in the flow run's log, as the UI shows it.
    logged = "\n".join(warnings_of(state.state_details.flow_run_id))
    assert f"attempt 1 redeploys slices {sorted(failed_first)}" in logged
    assert re.search(r"slice 2 error: .*injected fault", logged)
    assert "slice 3 lost: worker died" in logged
    assert "slice 5 lost: slice timed out" in logged


def failed_run_id(workdir: Path) -> str:
    """The server run id of the newest report in `workdir`."""
    reports = sorted(Path(workdir, "results").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(reports[-1].read_text())["run_id"]


def test_slices_that_keep_failing_fail_the_flow_but_are_reported(workdir, monkeypatch, caplog):
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps({"fail": [4]}))
    with pytest.raises(SlicesFailed, match=r"\[4\]"):
        signature_search(**params(workdir, max_slice_retries=0, n_permutations=0))
    # The run log (the UI's) says why in one line: a failed state, no traceback.
    ended = [r for r in caplog.records if r.name == "prefect.flow_runs" and r.exc_info]
    assert ended == []
    assert any(
        "Finished in state Failed('1 slices failed" in r.getMessage() for r in caplog.records
    )
    reports = sorted(Path(workdir, "results").glob("*/report.md"), key=lambda p: p.stat().st_mtime)
    text = reports[-1].read_text()
    assert "slices failed**: 4 (error: RuntimeError: injected fault" in text
    first_run_id = failed_run_id(workdir)
    # Asked for again, the same search resumes its run (slice 4 alone, which now succeeds);
    # a fresh run computes it all again, and slice 4 fails again.
    resumed = signature_search(**params(workdir, max_slice_retries=0, n_permutations=0))
    assert resumed["failed"] == [] and resumed["run_id"] == first_run_id
    tolerated = signature_search(
        **params(
            workdir, max_slice_retries=0, n_permutations=0, failure_tolerance=1, fresh_run=True
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
        ({"classifiers": ["knn"]}, ValidationError, "classifiers.0\n  Input should be 'logistic'"),
        ({"classifiers": []}, ValidationError, "at least 1 item"),
        ({"faults": {"fail": [1]}}, ParameterBindError, "unexpected keyword argument 'faults'"),
        ({"cv_folds": 12}, DatasetError, "cv_folds=12"),
        ({"case": "CLL"}, DatasetError, "case label 'CLL' not found"),
        ({"input_path": "input/none.tsv"}, DatasetError, "input_path"),
        ({"validation_fraction": 0.9}, DatasetError, "fewer than cv_folds=3"),
    ],
)
def test_bad_parameters_fail_before_anything_is_deployed(tmp_path, extra, error, message):
    with pytest.raises(error, match=message):
        signature_search(**params(tmp_path, **extra))
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_rerun_reuses_the_cached_preparation_and_logs_hold_no_token(workdir, reference_run):
    prepared = sorted(Path(workdir, "data").glob("*.tsv"))
    assert len(prepared) == 1
    before = prepared[0].stat().st_mtime_ns
    signature_search(**params(workdir, workers=1, n_permutations=0))
    assert prepared[0].stat().st_mtime_ns == before
    with get_client(sync_client=True) as client:
        messages = [log.message for log in client.read_logs()]
    assert any("slices done" in m for m in messages)
    leaked = [m for m in messages if re.search(r"token=(?!\*\*\*)", m)]
    assert leaked == []


def test_extending_a_search_adds_batches_and_reports_them_all(tmp_path, reference_run):
    first = signature_search(**params(tmp_path, workers=2, extend_search=True))
    assert tables(first) == tables(reference_run)  # batch 1 is the plain run
    second = signature_search(**params(tmp_path, workers=2, extend_search=True))
    run = json.loads((Path(second["run_dir"]) / "run.json").read_text())
    assert run["search"]["batch"] == 2 and run["search"]["batches_reported"] == [1, 2]
    stored = sorted(p.name for p in Path(tmp_path, "results", "searches").glob("*/batch-*"))
    assert stored == ["batch-0001", "batch-0002"]
    rows = (Path(second["run_dir"]) / "signatures.tsv").read_text().splitlines()[1:]
    ids = sorted(int(row.split("\t")[1]) for row in rows)
    assert ids == list(range(48))
    # This run's own records are batch 2's only; the report pools both.
    own = (Path(second["run_dir"]) / "records.tsv").read_text().splitlines()[1:]
    assert {int(line.split("\t")[1]) for line in own} == set(range(24, 48))
    # Batch 2 added its own permutations: the smallest attainable p fell from 1/4 to 1/7.
    report = json.loads((Path(second["run_dir"]) / "report.json").read_text())
    assert report["null"]["n_permutations"] == 2 * SMALL["n_permutations"]
    assert report["selection_adjusted_p_min"] == 1 / 7
    # On the first batch's permutations it asked only what batch 1 had not evaluated.
    first_rows = pd.read_csv(Path(first["run_dir"]) / "permutation_records.tsv", sep="\t")
    second_rows = pd.read_csv(Path(second["run_dir"]) / "permutation_records.tsv", sep="\t")
    pairs = [set(zip(r["permutation"], r["signature"])) for r in (first_rows, second_rows)]
    assert not pairs[0] & pairs[1]
    assert set(second_rows["permutation"]) > set(first_rows["permutation"])


def test_held_out_validation_scores_the_top_signatures_on_samples_the_search_never_saw(
    tmp_path, reference_run
):
    result = signature_search(**params(tmp_path, workers=2, validation_fraction=0.3))
    run_dir = Path(result["run_dir"])
    assert tables(result) != tables(reference_run)  # the search saw 27 of 38 samples
    validation = (run_dir / "validation.tsv").read_text().splitlines()
    assert len(validation) == 1 + 2  # the top 5% of 24 signatures, rounded up
    held_out = (run_dir / "validation_records.tsv").read_text().splitlines()
    assert len(held_out) == 1 + 2 * len(SMALL["classifiers"])
    record = json.loads((run_dir / "report.json").read_text())
    assert [row["discovery_rank"] for row in record["validation"]] == [1, 2]


def test_faults_from_the_test_hook_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps({"explode": [1]}))
    with pytest.raises(ValidationError, match="unknown fault kinds"):
        signature_search(**params(tmp_path))


def test_runs_have_distinct_names_and_stable_artifact_keys(reference_state, reference_run):
    with get_client(sync_client=True) as client:
        names = [run.name for run in client.read_flow_runs()]
    assert len(names) > 1 and len(set(names)) == len(names)
    pattern = r"golub_all_aml-AML-vs-ALL-24sig-\d{8}-\d{6}-[0-9a-f]{6}"
    with get_client(sync_client=True) as client:
        name = client.read_flow_run(reference_state.state_details.flow_run_id).name
    assert re.fullmatch(pattern, name), name
    artifacts = artifacts_of(reference_state.state_details.flow_run_id)
    # One history per search: the keys carry the dataset and the search's protocol key.
    main = next(k for k in artifacts if k.endswith("-main-slices"))
    prefix = main.removesuffix("-main-slices")
    assert re.fullmatch(r"golub-all-aml-[0-9a-f]{8}", prefix), prefix
    assert artifacts[main].description == "main job: 6/6 slices"
    perm = artifacts[f"{prefix}-permutation-slices"].description
    assert re.fullmatch(r"permutation job: (\d+)/\1 slices", perm), perm
    table = artifacts[f"{prefix}-top-signatures"]
    assert "4 decimals" in table.description
    assert all(len(cell.split(".")[-1]) <= 4 for cell in re.findall(r"\d+\.\d+", str(table.data)))


def test_the_ui_says_where_the_report_is_without_a_file_link(reference_run):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(limit=200)
    where = [a.data for a in artifacts if (a.key or "").endswith("-report-files")]
    assert any(str(Path(reference_run["run_dir"]).resolve()) in text for text in where)
    assert not any("file://" in text for text in where)
    summaries = [a.data for a in artifacts if (a.key or "").endswith("-report-summary")]
    assert any("selection-adjusted p" in text for text in summaries)


def test_retrying_a_failed_flow_run_redeploys_only_the_slices_without_a_result(
    tmp_path, reference_run, monkeypatch
):
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps({"fail": [4]}))
    retried = signature_search.with_options(retries=1, retry_delay_seconds=0)
    result = retried(**params(tmp_path, workers=2, max_slice_retries=0, n_permutations=0))
    run = json.loads((Path(result["run_dir"]) / "run.json").read_text())
    # The second flow attempt resumed the same server run: one round of slice 4 alone,
    # recorded after the failed attempt's round, with the time of both attempts.
    rounds = [(a["attempt"], a["slices"]) for a in run["main"]["rounds"]]
    assert rounds == [(0, [1, 2, 3, 4, 5, 6]), (1, [4])]
    assert run["main"]["rounds"][0]["failed"] == {
        "4": "error: RuntimeError: injected fault in slice 4"
    }
    assert run["main"]["slices_retried"] == 1
    assert len(run["times"]["flow_attempts"]) == 2
    assert run["times"]["span_seconds"] >= run["times"]["seconds"] > 0
    assert result["failed"] == []
    records = Path(result["run_dir"], "records.tsv").read_bytes()
    assert records == Path(reference_run["run_dir"], "records.tsv").read_bytes()
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        runs = db.execute("SELECT run_id, finished_at FROM runs").fetchall()
    assert [r[0] for r in runs] == [run["run_id"]]  # no null, no ROC job: the main run alone
    assert all(finished is not None for _, finished in runs)


def test_a_main_search_without_results_stops_the_run_before_the_null(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULTS_VARIABLE, json.dumps({"fail": [1, 2, 3, 4, 5, 6]}))
    with pytest.raises(NothingComputed, match="the main search returned no results: error: "):
        signature_search(**params(tmp_path, max_slice_retries=0))
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        runs = dict(db.execute("SELECT run_id, finished_at FROM runs").fetchall())
    assert len(runs) == 1 and not any(r.endswith("-perm") for r in runs)  # no null deployed
    assert list(runs.values()) == [None]  # suspended, resumable
    (unfinished,) = Path(tmp_path, "results").glob("*.incomplete")
    assert "the main search returned no results" in (unfinished / "INCOMPLETE.txt").read_text()


def test_each_permutation_evaluates_its_panel_and_the_signatures_screened_in_for_it(
    reference_run,
):
    import numpy as np
    import pandas as pd
    from scipy import stats

    from tasks.io import read_prepared
    from tasks.science.plan import batch_seed, null_panel, plan_signatures
    from tasks.science.worker import slice_labels

    run_dir = Path(reference_run["run_dir"])
    labels, frame = read_prepared(next(Path(run_dir).parents[1].glob("data/dataset-*.tsv")))
    signatures = pd.read_csv(run_dir / "signatures.tsv", sep="\t").set_index("signature")
    plan = plan_signatures(list(frame.columns), 24, 3, 6, seed=batch_seed(SMALL["seed"], 1))
    panel = {s.id for s in null_panel(plan, SMALL["null_signatures"], batch_seed(5, 1))}
    config = {"case": "AML", "cv_folds": SMALL["cv_folds"]}

    def screened_in(seed):
        y = slice_labels(np.array(labels), config, seed).y
        t2 = stats.ttest_ind(frame[y == 1], frame[y == 0]).statistic ** 2
        score = {s.id: np.mean([t2[frame.columns.get_loc(p)] for p in s.probesets]) for s in plan}
        k = SearchParameters().null_candidates  # the default: SMALL leaves it
        return set(sorted(score, key=lambda i: (-score[i], i))[:k])

    records = pd.read_csv(run_dir / "permutation_records.tsv", sep="\t")
    for seed, rows in records.groupby("permutation"):
        assert set(rows["signature"]) == panel | screened_in(int(seed))
    report = json.loads((run_dir / "report.json").read_text())
    real = screened_in(None)  # the statistic is the best of the candidates alone
    assert report["null"]["statistic"] == signatures.loc[sorted(real), "mean_auc"].max()
