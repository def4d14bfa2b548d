"""The worker module's helpers one at a time, and the rule that keeps it shippable as text."""

import ast
import builtins
import contextlib
import functools
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.science import work, worker

from .test_work import JsString

WORKER_FILE = Path(worker.__file__)
# What a DCP sandbox can import: the standard library and the job's Pyodide packages.
SHIPPABLE = {"numpy", "scipy", "sklearn", "threadpoolctl", "__future__"}


def imported_modules(path: Path) -> set[str]:
    """The top-level names of every module a file imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else node.module.split(".")[0])
    return names


def test_the_worker_imports_only_the_standard_library_and_the_jobs_packages():
    outside = imported_modules(WORKER_FILE) - SHIPPABLE - set(sys.stdlib_module_names)
    assert outside == set(), f"{WORKER_FILE.name} imports {sorted(outside)}: workers lack them"


def test_the_import_rule_sees_project_and_relative_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import json\ndef f():\n    from tasks.io import x\n    from . import y\n")
    assert imported_modules(probe) - set(sys.stdlib_module_names) == {"tasks", "."}


def test_the_shipped_text_is_one_function_carrying_the_worker_module():
    text = work.work_function_source()
    tree = ast.parse(text)
    # DCP calls the first definition of the text; the local workers look up evaluate_slice.
    assert [type(n).__name__ for n in tree.body] == ["FunctionDef"]
    assert tree.body[0].name == "evaluate_slice"
    assert WORKER_FILE.read_text() in ast.literal_eval(
        next(n for n in ast.walk(tree) if isinstance(n, ast.Constant) and len(str(n.value)) > 999)
    )


def test_the_shipped_text_compiles_the_worker_once_per_process(monkeypatch):
    monkeypatch.setattr(builtins, "_signature_search_worker", None, raising=False)
    shipped = work.load_work_function(work.work_function_source())
    datum = json.dumps({"slice": 1, "signatures": []})
    dataset = "phenotype\tq\n" + "a\t1.0\nb\t2.0\n" * 2
    config = json.dumps({"case": "a", "cv_folds": 2})
    shipped(datum, dataset, config)
    first = builtins._signature_search_worker
    work.load_work_function(work.work_function_source())(datum, dataset, config)
    assert builtins._signature_search_worker is first  # a second slice, a re-run setup: reused
    sha = hashlib.sha256(WORKER_FILE.read_text().encode()).hexdigest()
    assert first["__sha256__"] == sha


@pytest.mark.parametrize("value", ["x\ty", b"x\ty", bytearray(b"x\ty"), JsString("x\ty")])
def test_as_text_decodes_every_form_an_argument_arrives_in(value):
    assert worker.as_text(value) == "x\ty"


@pytest.mark.parametrize("value", ['{"a": 1}', {"a": 1}, JsString('{"a": 1}')])
def test_as_mapping_reads_json_text_and_dicts(value):
    assert worker.as_mapping(value) == {"a": 1}


def test_sha256_in_pieces_is_the_whole_texts_sha256():
    text = "é" * ((1 << 20) + 5)  # pieces split between characters, never inside one
    assert worker.sha256_hex(text) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label\tp1\na\t1.0\n", "first column must be 'phenotype'"),
        ("phenotype\tp1\tp2\na\t1.0\n", "values for 1 samples and 2 probesets"),
        ("phenotype\tp1\na\tone\n", "could not convert"),
    ],
)
def test_parse_dataset_refuses_what_is_not_the_tutorial_layout(text, message):
    with pytest.raises(ValueError, match=message):
        worker.parse_dataset(text, "sha")


def test_parse_dataset_reads_labels_columns_and_values_across_line_endings():
    parsed = worker.parse_dataset("phenotype\tp1\tp2\r\na\t1.5\t-2\r\n\r\nb\t0\t3e2\r\n", "s")
    assert parsed.column == {"p1": 0, "p2": 1} and parsed.labels.tolist() == ["a", "b"]
    np.testing.assert_array_equal(parsed.matrix, [[1.5, -2.0], [0.0, 300.0]])


def test_class_size_problem_names_the_first_class_too_small_for_the_folds():
    labels = ["a"] * 5 + ["b"] * 2
    too_few = "class 'b' has 2 samples, fewer than cv_folds=3"
    assert worker.class_size_problem(labels, ["a", "b"], 3) == too_few
    assert worker.class_size_problem(iter(labels), ["c", "b"], 3).startswith(
        "class 'c' has 0 samples"
    )
    assert worker.class_size_problem(labels, ["a", "b"], 2) is None


LABELS = np.array(["case", "ctrl"] * 6)


def test_slice_labels_use_every_row_and_stratified_folds_by_default():
    labels = worker.slice_labels(LABELS, {"case": "case", "cv_folds": 3}, None)
    assert labels.used.tolist() == list(range(12)) and labels.y.tolist() == [1, 0] * 6
    assert len(labels.splits) == 3 and labels.scored.tolist() == list(range(12))
    for _, test in labels.splits:
        assert labels.y[test].sum() == 2  # each fold holds 2 of the 6 cases


def test_a_permutation_shuffles_the_search_rows_only_and_keeps_the_class_sizes():
    config = {"case": "case", "rows": [0, 1, 2, 3, 4, 5], "validation_rows": [6, 7, 8, 9]}
    plain = worker.slice_labels(LABELS, config, None)
    permuted = worker.slice_labels(LABELS, config, 11)
    assert permuted.y[6:].tolist() == plain.y[6:].tolist()  # held-out labels never move
    assert sorted(permuted.y[:6]) == sorted(plain.y[:6]) and permuted.y[:6].tolist() != [1, 0] * 3
    # Held out: one fit on the discovery rows, the held-out rows scored.
    [(train, test)] = permuted.splits
    assert train.tolist() == list(range(6)) and test.tolist() == [6, 7, 8, 9]


def test_slice_labels_refuse_folds_a_class_cannot_fill_naming_the_class():
    with pytest.raises(ValueError, match="class 'case' has 2 samples, fewer than cv_folds=3"):
        worker.slice_labels(LABELS, {"case": "case", "cv_folds": 3, "rows": [0, 1, 2, 3]}, None)


def test_classifier_names_default_to_all_and_refuse_unknown_ones():
    assert worker.classifier_names({"case": "a"}) == list(worker.CLASSIFIERS)
    assert worker.classifier_names({"case": "a", "classifiers": ["svm"]}) == ["svm"]
    with pytest.raises(ValueError, match=r"unknown classifiers \['knn'\]; known: \['bagging'"):
        worker.classifier_names({"case": "a", "classifiers": ["svm", "knn"]})


def test_every_factory_builds_a_fresh_estimator_with_the_seed():
    for name, factory in worker.FACTORIES.items():
        a, b = factory(7), factory(7)
        assert a is not b and hasattr(a, "predict_proba"), name


def test_bootstrap_weights_count_the_ensembles_own_draws():
    for draws in worker.DRAWS:
        weights = worker.bootstrap_weights(draws, 3, 20)
        assert len(weights) == {"forest": 50, "bagging": 10}[draws]
        assert all(w.sum() == 20 and len(w) == 20 for _, w in weights)


def test_score_classifier_reports_a_model_that_cannot_fit_as_a_record():
    labels = worker.slice_labels(LABELS, {"case": "case", "cv_folds": 2}, None)

    class Broken:
        def fit(self, x, y):
            raise ArithmeticError("no fit")

    assert worker.score_classifier(np.zeros((12, 1)), labels, Broken) == {
        "auc": None,
        "accuracy": None,
        "error": "ArithmeticError: no fit",
    }


def test_signature_columns_name_the_first_unknown_probeset():
    parsed = worker.parse_dataset("phenotype\tp1\tp2\na\t1\t2\n", "s")
    assert worker.signature_columns(parsed, {"id": 4, "probesets": ["p2", "p1"]}) == [1, 0]
    with pytest.raises(ValueError, match="signature 4: unknown probeset 'p9'"):
        worker.signature_columns(parsed, {"id": 4, "probesets": ["p1", "p9"]})


def test_native_threads_are_left_alone_under_pyodide(monkeypatch):
    monkeypatch.setattr(sys, "platform", "emscripten")
    assert isinstance(worker.native_thread_limit(), contextlib.nullcontext)


def test_progress_goes_nowhere_without_a_dcp_module(monkeypatch):
    monkeypatch.delitem(sys.modules, "dcp", raising=False)
    assert worker.slice_progress()(0.5) is None


def test_score_classifier_keeps_scores_only_when_asked_and_only_for_a_fit():
    labels = worker.slice_labels(LABELS, {"case": "case", "cv_folds": 2}, None)
    x = np.arange(12.0).reshape(-1, 1)
    make = functools.partial(worker.FACTORIES["logistic"], 0)
    assert "scores" not in worker.score_classifier(x, labels, make)
    kept = worker.score_classifier(x, labels, make, keep_scores=True)
    assert len(kept["scores"]) == 12 and all(0 <= s <= 1 for s in kept["scores"])

    class Broken:
        def fit(self, x, y):
            raise ArithmeticError("no fit")

    assert "scores" not in worker.score_classifier(x, labels, Broken, keep_scores=True)
