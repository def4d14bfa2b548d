"""The work function; also run under DCP's Pyodide package versions by `make test-pyodide-versions`."""

import builtins
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import threadpoolctl

from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.work import (
    load_work_function,
    remote_work_stub,
    source_sha256,
    work_function_source,
    worker_source,
)
from tasks.science.worker import CLASSIFIERS, evaluate_slice

from ...conftest import ROOT

COMPARE_PYTHON = os.environ.get("SIGSEARCH_COMPARE_PYTHON")


@pytest.fixture(scope="module")
def slice_datum(golub_text):
    probesets = golub_text.split("\n", 1)[0].split("\t")[1:]
    return pack_slices(plan_signatures(probesets, 3, 5, 9, seed=3), 3)[0]


def run(datum, text, **config):
    return json.loads(
        evaluate_slice(json.dumps(datum), text, json.dumps({"case": "AML", **config}))
    )


def test_every_classifier_gives_auc_and_accuracy(slice_datum, golub_text):
    result = run(slice_datum, golub_text, cv_folds=5, seed=1)
    assert result["slice"] == 1
    assert len(result["records"]) == 3 * len(CLASSIFIERS)
    for record in result["records"]:
        assert 0.0 <= record["auc"] <= 1.0 and 0.0 <= record["accuracy"] <= 1.0
    assert set(result["versions"]) == {"numpy", "scipy", "scikit-learn"}
    assert result["timings"]["fit_seconds"] <= result["timings"]["total_seconds"]


def test_same_inputs_give_bit_identical_records(slice_datum, golub_text):
    a = run(slice_datum, golub_text, cv_folds=5, seed=1)["records"]
    b = run(slice_datum, golub_text, cv_folds=5, seed=1)["records"]
    assert a == b


def test_seed_and_permutation_change_results(slice_datum, golub_text):
    base = run(slice_datum, golub_text, cv_folds=5, seed=1, classifiers=["logistic"])
    perm = run(
        {**slice_datum, "permutation_seed": 5},
        golub_text,
        cv_folds=5,
        seed=1,
        classifiers=["logistic"],
    )
    assert perm["permutation_seed"] == 5
    assert [r["auc"] for r in base["records"]] != [r["auc"] for r in perm["records"]]


def test_shipped_source_runs_the_same(slice_datum, golub_text):
    shipped = load_work_function(work_function_source())
    config = json.dumps({"case": "AML", "cv_folds": 3, "classifiers": ["svm"]})
    a = json.loads(shipped(json.dumps(slice_datum), golub_text, config))
    b = json.loads(evaluate_slice(slice_datum, golub_text, config))
    assert a["records"] == b["records"]


@pytest.fixture
def fresh_sandbox(monkeypatch):
    """A worker process that has compiled no work source yet."""
    monkeypatch.setattr(builtins, "_signature_search_worker", None, raising=False)


def stub_config(sha256=None, **config):
    """A config as the flow registers it for the remote stub."""
    sha256 = source_sha256(worker_source()) if sha256 is None else sha256
    return json.dumps({"case": "AML", "cv_folds": 3, "worker_sha256": sha256, **config})


def test_the_remote_stub_runs_the_fetched_source_as_the_worker_does(
    fresh_sandbox, slice_datum, golub_text
):
    stub = load_work_function(remote_work_stub())
    config = stub_config(classifiers=["svm", "logistic"])
    a = json.loads(stub(json.dumps(slice_datum), golub_text, config, worker_source()))
    b = json.loads(evaluate_slice(slice_datum, golub_text, config))  # the extra key is ignored
    assert a["records"] == b["records"]
    # A JS String object (a JsProxy under Pyodide) and a mapping config work too.
    c = json.loads(stub(slice_datum, golub_text, json.loads(config), JsString(worker_source())))
    assert c["records"] == b["records"]


def test_the_remote_stub_compiles_the_source_once_per_sandbox(
    fresh_sandbox, slice_datum, golub_text, monkeypatch
):
    stub = load_work_function(remote_work_stub())
    config = stub_config(classifiers=["logistic"])
    compiled = []
    real_compile = builtins.compile
    monkeypatch.setattr(
        builtins, "compile", lambda *a, **k: compiled.append(a[1]) or real_compile(*a, **k)
    )
    for _ in range(3):
        stub(json.dumps(slice_datum), golub_text, config, worker_source())
    # (numpy and scikit-learn compile snippets of their own)
    assert compiled.count("signature_search_worker.py") == 1


@pytest.mark.parametrize("expected", ["0" * 64, ""])
def test_the_remote_stub_refuses_a_source_of_another_sha256(
    fresh_sandbox, slice_datum, golub_text, expected
):
    stub = load_work_function(remote_work_stub())
    actual = source_sha256(worker_source() + "#")
    wanted = expected or "none (it has no worker_sha256)"
    message = f"has sha256 {actual}, the config expects {wanted}"
    with pytest.raises(ValueError, match=re.escape(message)):
        stub(json.dumps(slice_datum), golub_text, stub_config(expected), worker_source() + "#")
    assert getattr(builtins, "_signature_search_worker", None) is None  # nothing ran


def test_a_sandbox_that_ran_one_source_checks_the_next_against_its_config(
    fresh_sandbox, slice_datum, golub_text
):
    stub = load_work_function(remote_work_stub())
    stub(
        json.dumps(slice_datum), golub_text, stub_config(classifiers=["logistic"]), worker_source()
    )
    with pytest.raises(ValueError, match="the config expects " + "1" * 64):
        stub(json.dumps(slice_datum), golub_text, stub_config("1" * 64), worker_source())


def test_the_remote_stub_names_neither_the_method_nor_a_classifier():
    stub = remote_work_stub()
    source = worker_source()
    assert "def score_classifier" in source and "sklearn" in source
    for name in [*CLASSIFIERS, "sklearn", "score_classifier", "StratifiedKFold", "numpy"]:
        assert name not in stub, name
    assert len(stub) < 2000 < len(work_function_source())


def test_unknown_classifier_and_wrong_dataset_are_refused(slice_datum, golub_text):
    with pytest.raises(ValueError, match="unknown classifiers"):
        run(slice_datum, golub_text, classifiers=["knn"])
    with pytest.raises(ValueError, match="does not match"):
        run(slice_datum, golub_text, dataset_sha256="0" * 64)


def test_a_classifier_that_cannot_fit_is_reported_per_record(golub_text):
    # A constant feature cannot be split by a tree but logistic regression still fits.
    header, *rows = golub_text.strip().split("\n")
    text = "phenotype\tconst\tp2\n" + "\n".join(
        f"{r.split(chr(9))[0]}\t1.0\t{r.split(chr(9))[1]}" for r in rows
    )
    datum = {"slice": 1, "signatures": [{"id": 0, "probesets": ["const", "p2"]}]}
    result = run(datum, text, cv_folds=3, classifiers=["logistic", "svm"])
    assert all(r["auc"] is not None for r in result["records"])
    datum_bad = {"slice": 2, "signatures": [{"id": 0, "probesets": ["nope"]}]}
    with pytest.raises(ValueError, match="unknown probeset"):
        run(datum_bad, text, cv_folds=3)


@pytest.mark.skipif(
    not COMPARE_PYTHON, reason="set SIGSEARCH_COMPARE_PYTHON to compare environments"
)
def test_records_agree_with_other_environment(slice_datum, golub_text):
    script = (
        "import json,sys; from tasks.science.worker import evaluate_slice; d,c=json.load(sys.stdin);"
        f"print(evaluate_slice(d, open({str(ROOT / 'input' / 'golub_all_aml.tsv')!r}).read(), c))"
    )
    config = json.dumps({"case": "AML", "cv_folds": 10, "seed": 2})
    other = subprocess.run(
        [COMPARE_PYTHON, "-c", script],
        input=json.dumps([slice_datum, config]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    theirs = json.loads(other.stdout)["records"]
    ours = json.loads(evaluate_slice(slice_datum, golub_text, config))["records"]
    # All six classifiers gave identical records under DCP's versions (numpy 1.26.4,
    # scikit-learn 1.4.2) and current ones (numpy 2.0, scikit-learn 1.9): exact, not close.
    assert ours == theirs, f"records differ between {sys.version_info[:2]} and {COMPARE_PYTHON}"


class JsString:
    """Stands in for the JsProxy of a JS String object: str() works, str methods do not."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


def test_a_dataset_delivered_as_a_js_string_object_gives_the_same_records(slice_datum, golub_text):
    config = json.dumps({"case": "AML", "classifiers": ["logistic"]})
    as_str = json.loads(evaluate_slice(json.dumps(slice_datum), golub_text, config))
    as_object = json.loads(
        evaluate_slice(JsString(json.dumps(slice_datum)), JsString(golub_text), JsString(config))
    )
    assert as_object["records"] == as_str["records"]


def test_progress_is_reported_at_least_once_per_signature(slice_datum, golub_text, monkeypatch):
    calls = []
    dcp = type(sys)("dcp")
    dcp.progress = lambda value=None: calls.append(value)
    monkeypatch.setitem(sys.modules, "dcp", dcp)
    run(slice_datum, golub_text, classifiers=["logistic"])
    n = len(slice_datum["signatures"])
    assert len(calls) >= n + 1 and calls[-1] == 1.0
    assert calls == sorted(calls) and all(0.0 <= c <= 1.0 for c in calls)


def test_timings_say_which_clock_they_are(slice_datum, golub_text):
    timings = run(slice_datum, golub_text, classifiers=["logistic"])["timings"]
    assert timings["cpu_clock"] == "process_time" and timings["cpu_seconds"] > 0


def sklearn_records(datum, text, folds, seed):
    """What scikit-learn's own ensembles and cross_val_predict give for the same slice."""
    from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    header, *rows = [line.split("\t") for line in text.strip().split("\n")]
    y = np.array([r[0] == "AML" for r in rows], dtype=np.int64)
    matrix = np.array([r[1:] for r in rows], dtype=np.float64)
    models = {
        "logistic": LogisticRegression(max_iter=1000, random_state=seed),
        "bagging": BaggingClassifier(
            estimator=DecisionTreeClassifier(random_state=seed), random_state=seed
        ),
        "random_forest": RandomForestClassifier(n_estimators=50, random_state=seed),
        "decision_tree": DecisionTreeClassifier(random_state=seed),
    }
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    records = []
    for signature in datum["signatures"]:
        x = matrix[:, [header.index(p) - 1 for p in signature["probesets"]]]
        for name, model in models.items():
            proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
            records.append(
                {
                    "signature": signature["id"],
                    "classifier": name,
                    "auc": float(roc_auc_score(y, proba)),
                    "accuracy": float(np.mean((proba >= 0.5) == y)),
                }
            )
    return records


def test_trees_ensembles_and_folds_give_scikit_learns_own_records(slice_datum, golub_text):
    classifiers = ["logistic", "bagging", "random_forest", "decision_tree"]
    ours = run(slice_datum, golub_text, cv_folds=5, seed=4, classifiers=classifiers)["records"]
    assert ours == sklearn_records(slice_datum, golub_text, folds=5, seed=4)


def test_native_threads_are_limited_to_one_but_not_under_pyodide(
    slice_datum, golub_text, monkeypatch
):
    calls = []

    @contextlib.contextmanager
    def recording_limits(limits=None, user_api=None):
        calls.append(limits)
        yield

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", recording_limits)
    run(slice_datum, golub_text, cv_folds=3, classifiers=["logistic"])
    assert calls == [1]
    monkeypatch.setattr(sys, "platform", "emscripten")  # Pyodide: no threads, no native pools
    run(slice_datum, golub_text, cv_folds=3, classifiers=["logistic"])
    assert calls == [1]


GOLDEN = ROOT / "tests" / "tasks" / "science" / "work_records.json"


def test_records_are_those_the_work_function_gave_before_the_numpy_parse(golub_text):
    for case in json.loads(GOLDEN.read_text())["slices"]:
        result = json.loads(evaluate_slice(case["datum"], golub_text, json.dumps(case["config"])))
        assert result["records"] == case["records"], case["config"]  # exact, not close


def test_line_endings_and_blank_lines_parse_to_the_same_records(slice_datum, golub_text):
    config = json.dumps({"case": "AML", "cv_folds": 3, "classifiers": ["logistic", "svm"]})
    expected = json.loads(evaluate_slice(slice_datum, golub_text, config))["records"]
    variants = [
        golub_text.replace("\n", "\r\n"),
        golub_text.replace("\n", "\r"),
        golub_text.replace("\n", "\n\n \t\n", 5).rstrip("\n"),
    ]
    for text in variants:
        assert json.loads(evaluate_slice(slice_datum, text, config))["records"] == expected


@pytest.fixture
def fresh_process(monkeypatch):
    """A worker process that has not parsed any dataset yet."""
    monkeypatch.setattr(builtins, "_signature_search_dataset_cache", None, raising=False)


def test_the_dataset_is_hashed_once_per_process_and_still_checked_every_slice(
    fresh_process, slice_datum, golub_text, monkeypatch
):
    sha = hashlib.sha256(golub_text.encode()).hexdigest()
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: hashed.append(1) or real(*a))
    config = {"cv_folds": 3, "classifiers": ["logistic"], "dataset_sha256": sha}
    first = run(slice_datum, golub_text, **config)
    # The same argument (a sandbox's sys.argv) and an equal copy (a local worker's fetch).
    run(slice_datum, golub_text, **config)
    run(slice_datum, golub_text[:1] + golub_text[1:], **config)
    assert len(hashed) == 1 and first["dataset_sha256"] == sha
    with pytest.raises(ValueError, match="does not match"):
        run(slice_datum, golub_text, **{**config, "dataset_sha256": "0" * 64})
    other = golub_text.replace("\n", "\r\n")
    with pytest.raises(ValueError, match="does not match"):  # other text: verified again
        run(slice_datum, other, **config)
    assert len(hashed) == 2


def test_the_parse_keeps_no_python_object_per_value(fresh_process):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5000))
    rows = ["\t".join(["a" if i % 2 else "b", *map(repr, r)]) for i, r in enumerate(x.tolist())]
    text = "\n".join(["\t".join(["phenotype", *(f"p{i}" for i in range(5000))]), *rows]) + "\n"
    datum = json.dumps({"slice": 1, "signatures": []})
    evaluate_slice(datum, "phenotype\tq\n" + "a\t1.0\nb\t2.0\n" * 2, '{"case": "a", "cv_folds": 2}')
    tracemalloc.start()
    try:
        evaluate_slice(datum, text, '{"case": "a", "cv_folds": 2}')
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The matrix (1.6 MB), a 1 MiB hash chunk and the parser's buffer; a str per value was 19 MB.
    assert peak < 3 * x.nbytes
    assert builtins._signature_search_dataset_cache.matrix.tobytes() == x.tobytes()


@pytest.mark.parametrize("held_out", [False, True])
def test_packing_does_not_change_any_record(golub_text, held_out):
    probesets = golub_text.split("\n", 1)[0].split("\t")[1:]
    signatures = plan_signatures(probesets, 25, 5, 9, seed=5)
    config = {"case": "AML", "cv_folds": 2, "seed": 4, "permutation_seed": 6}
    if held_out:
        config.update(rows=list(range(0, 38, 2)), validation_rows=list(range(1, 38, 2)))
    by_packing = {}
    for per_slice in (1, 7, 25):
        records = []
        for datum in pack_slices(signatures, per_slice):
            records += json.loads(evaluate_slice(datum, golub_text, json.dumps(config)))["records"]
        by_packing[per_slice] = sorted(records, key=lambda r: (r["signature"], r["classifier"]))
    assert len(by_packing[1]) == 25 * len(CLASSIFIERS)
    assert by_packing[1] == by_packing[7] == by_packing[25]  # exact, not close


def golub_cases(text):
    """Each row's 0/1 label (AML is the case), in the dataset's order."""
    return np.array([line.split("\t", 1)[0] == "AML" for line in text.strip().split("\n")[1:]])


@pytest.mark.parametrize("rows", [None, list(range(37, 0, -2))])
def test_predictions_are_the_out_of_fold_scores_the_records_are_computed_from(
    slice_datum, golub_text, rows
):
    from sklearn.metrics import roc_auc_score

    config = {"cv_folds": 5, "seed": 2} | ({"rows": rows} if rows else {})
    plain = run(slice_datum, golub_text, **config)
    scored = run(slice_datum, golub_text, **config, predictions=True)
    # The same records (same folds, seeds and fits), each with its samples' scores.
    without = [{k: v for k, v in r.items() if k != "scores"} for r in scored["records"]]
    assert without == plain["records"] and "scored_rows" not in plain
    samples = rows or list(range(38))  # the dataset rows the slice used, in the config's order
    assert scored["scored_rows"] == samples
    y = golub_cases(golub_text)[samples]
    for record in scored["records"]:
        scores = np.array(record["scores"])
        assert scores.shape == (len(samples),) and ((scores >= 0) & (scores <= 1)).all()
        # The record's AUC is the pooled out-of-fold one: sklearn's on the returned scores
        # (the same computation on the same numbers, so to 1e-12).
        np.testing.assert_allclose(roc_auc_score(y, scores), record["auc"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.mean((scores >= 0.5) == y), record["accuracy"], atol=1e-12)
