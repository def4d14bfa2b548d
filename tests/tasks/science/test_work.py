"""The work function; also run under DCP's Pyodide package versions by `make test-pyodide-versions`."""

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import threadpoolctl

from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.work import (
    CLASSIFIERS,
    check_classifiers,
    evaluate_slice,
    load_work_function,
    work_function_source,
)

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


def test_unknown_classifier_and_wrong_dataset_are_refused(slice_datum, golub_text):
    with pytest.raises(ValueError, match="unknown classifiers"):
        run(slice_datum, golub_text, classifiers=["knn"])
    with pytest.raises(ValueError, match="does not match"):
        run(slice_datum, golub_text, dataset_sha256="0" * 64)
    with pytest.raises(ValueError, match="unknown classifiers"):
        check_classifiers(["logistic", "knn"])


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
        "import json,sys; from tasks.science.work import evaluate_slice; d,c=json.load(sys.stdin);"
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
