"""What a worker runs for one slice: decode, parse the dataset once, fit, score, report.

This module is shipped to workers as text (tasks/science/work.py builds the job's work
function from it), so it imports only the standard library, numpy, scipy and scikit-learn
(tests/tasks/science/test_worker.py holds it to that). It must run under DCP's Pyodide
worktime (Pyodide 0.28.2: Python 3.13, numpy 2.2.5, scipy 1.14.1, scikit-learn 1.7.0) and on
current releases.

What a DCP worker does with it (../shared/DCP-WORKTIME.md): arguments arrive as `str`,
or as a JS String object for a URL served as text/* other than text/plain; the sandbox
rejects a slice that never called `dcp.progress()`; an exception becomes the result.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import json
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypedDict

import numpy as np
import scipy
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier


class SliceSignature(TypedDict):
    """One signature of a slice: its plan id and its probesets."""

    id: int
    probesets: list[str]


class SliceDatum(TypedDict, total=False):
    """A slice as the plan packs it; `permutation_seed` only on permutation slices."""

    slice: int
    signatures: list[SliceSignature]
    permutation_seed: int | None


class WorkerConfig(TypedDict, total=False):
    """The config every slice of a search gets; `case` is required, the rest default."""

    case: str
    cv_folds: int
    seed: int
    classifiers: list[str]
    dataset_sha256: str
    rows: list[int]  # the discovery samples the search sees (default: all)
    validation_rows: list[int]  # held-out samples a validation slice scores once
    permutation_seed: int | None
    predictions: bool  # also return each record's out-of-fold scores (for ROC curves)


class ParsedDataset(NamedTuple):
    """A dataset's text parsed once per process: column index, labels, float64 matrix."""

    text: str
    sha256: str
    column: dict[str, int]
    labels: np.ndarray
    matrix: np.ndarray


class SliceLabels(NamedTuple):
    """The samples a slice uses, their 0/1 labels (permuted if asked) and its CV splits."""

    used: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    scored: np.ndarray


def as_text(value: Any) -> str:
    """An argument as text: bytes decoded, a JS String object through str()."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8")
    return str(value)


def as_mapping(value: Any) -> dict:
    """A JSON argument as a dict (JSON strings cross the DCP serializer untouched)."""
    return dict(value) if isinstance(value, dict) else json.loads(str(value))


def sha256_hex(text: str) -> str:
    """The text's UTF-8 sha256, hashed in 1 MiB pieces (no second copy of the whole text)."""
    digest = hashlib.sha256()
    for start in range(0, len(text), 1 << 20):
        digest.update(text[start : start + (1 << 20)].encode("utf-8"))
    return digest.hexdigest()


def sha256_problem(actual: str, expected: str | None) -> None:
    """Refuse a dataset whose sha256 is not the one the config expects."""
    if expected and expected != actual:
        raise ValueError(f"dataset sha256 {actual} does not match expected {expected}")


def data_lines(text: str) -> Iterator[str]:
    """The non-blank lines of the text, any line ending, one at a time."""
    return (
        line
        for piece in re.finditer(r"[^\n]*\n?", text)
        for line in piece.group().splitlines()
        if line.strip()
    )


def parse_dataset(text: str, sha256: str) -> ParsedDataset:
    """Parse the tutorial layout (a phenotype column, then one column per probeset)."""
    lines = data_lines(text)
    header = next(lines, "").split("\t")
    if header[0] != "phenotype":
        raise ValueError("dataset's first column must be 'phenotype'")
    labels: list[str] = []

    def values(lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            label, _, rest = line.partition("\t")
            labels.append(label)
            yield rest

    # numpy's own parser straight into the matrix (same float64 as Python's float()),
    # instead of a str object per value.
    matrix = np.loadtxt(
        values(lines), delimiter="\t", comments=None, quotechar=None, ndmin=2, dtype=np.float64
    )
    if matrix.shape != (len(labels), len(header) - 1):
        raise ValueError(
            f"dataset has {matrix.shape} values for {len(labels)} samples "
            f"and {len(header) - 1} probesets"
        )
    column = {name: i for i, name in enumerate(header[1:])}
    return ParsedDataset(text, sha256, column, np.array(labels), matrix)


def load_dataset(text: str, expected_sha256: str | None) -> ParsedDataset:
    """The parsed dataset, verified and parsed once per process, its sha256 checked each call.

    A sandbox runs many slices of the same job with the same argument; text equal to the
    verified text (identity, else memcmp) is that dataset.
    """
    cached = getattr(builtins, "_signature_search_dataset_cache", None)
    if cached is not None and cached.text == text:
        sha256_problem(cached.sha256, expected_sha256)
        return cached
    builtins._signature_search_dataset_cache = None  # type: ignore[attr-defined]  # old matrix first
    sha256 = sha256_hex(text)
    sha256_problem(sha256, expected_sha256)
    parsed = parse_dataset(text, sha256)
    builtins._signature_search_dataset_cache = parsed  # type: ignore[attr-defined]
    return parsed


def class_size_problem(labels: Iterable[str], classes: Iterable[str], cv_folds: int) -> str | None:
    """Why `labels` cannot fill `cv_folds` stratified folds (a class too small), or None."""
    counts = Counter(labels)
    for label in classes:
        if counts[label] < cv_folds:
            return f"class '{label}' has {counts[label]} samples, fewer than cv_folds={cv_folds}"
    return None


def slice_classes(labels: np.ndarray, case: str) -> list[str]:
    """The case label first, then the others (a prepared dataset has one: the control)."""
    others = sorted(set(labels.tolist()) - {case})
    return [case, *(others or ["control"])]


def slice_labels(
    labels: np.ndarray, config: WorkerConfig, permutation_seed: int | None
) -> SliceLabels:
    """The slice's samples, labels and folds: with held-out rows, one fit on all discovery rows."""
    seed, folds = int(config.get("seed", 0)), int(config.get("cv_folds", 10))
    cases = (labels == str(config["case"])).astype(np.int64)
    rows = np.arange(len(cases)) if config.get("rows") is None else np.array(config["rows"])
    held_out = np.array(config.get("validation_rows") or [], dtype=np.int64)
    used = np.concatenate([rows, held_out]).astype(np.int64)
    y = cases[used]
    if permutation_seed is not None:
        y[: len(rows)] = np.random.RandomState(int(permutation_seed)).permutation(y[: len(rows)])
    if len(held_out):
        splits = [(np.arange(len(rows)), np.arange(len(rows), len(used)))]
    elif problem := class_size_problem(
        labels[used].tolist(), slice_classes(labels[used], str(config["case"])), folds
    ):
        raise ValueError(problem)
    else:
        # Every signature of the slice uses the same y, hence the same folds: split once.
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(cv.split(np.zeros(len(y)), y))
    scored = np.sort(np.concatenate([test for _, test in splits]))
    return SliceLabels(used, y, splits, scored)


class PlattSVC(ClassifierMixin, BaseEstimator):
    """RBF SVM with a sigmoid (Platt) fitted to its decision values on the training fold.

    SVC(probability=True) is deprecated from scikit-learn 1.9 and CalibratedClassifierCV
    costs 14x more; the sigmoid is monotone, so the AUC is the SVM's own ranking.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, x, y):
        self.svc_ = SVC(random_state=self.random_state).fit(x, y)
        self.classes_ = self.svc_.classes_
        decision = self.svc_.decision_function(x).reshape(-1, 1)
        self.sigmoid_ = LogisticRegression(random_state=self.random_state).fit(decision, y)
        return self

    def predict_proba(self, x):
        return self.sigmoid_.predict_proba(self.svc_.decision_function(x).reshape(-1, 1))

    def predict(self, x):
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


MAX_INT32 = np.iinfo(np.int32).max


def forest_draws(seed: int, n: int) -> list[tuple[int, np.ndarray]]:
    """RandomForestClassifier(random_state=seed)'s 50 tree seeds and bootstrap samples."""
    rng = np.random.RandomState(seed)
    seeds = [rng.randint(MAX_INT32) for _ in range(50)]
    return [(s, np.random.RandomState(s).randint(0, n, n, dtype=np.int32)) for s in seeds]


def bagging_draws(seed: int, n: int) -> list[tuple[int, np.ndarray]]:
    """BaggingClassifier(random_state=seed)'s 10: each estimator's seed seeds its tree's
    seed and, anew, its bootstrap sample (all features are kept, drawing nothing)."""
    seeds = np.random.RandomState(seed).randint(MAX_INT32, size=10)
    return [
        (np.random.RandomState(s).randint(MAX_INT32), np.random.RandomState(s).randint(0, n, n))
        for s in seeds
    ]


DRAWS = {"forest": forest_draws, "bagging": bagging_draws}


@functools.lru_cache(maxsize=16)
def bootstrap_weights(draws: str, seed: int, n: int) -> tuple[tuple[int, np.ndarray], ...]:
    """Each tree's seed and its bootstrap sample as counts: the same in every fold of a size."""
    return tuple(
        (int(s), np.bincount(sample, minlength=n).astype(np.float64))
        for s, sample in DRAWS[draws](seed, n)
    )


class BootstrapTrees(ClassifierMixin, BaseEstimator):
    """A forest's or a bagging ensemble's trees, built as the ensemble builds them.

    Same trees, same probabilities: each tree is fitted on the counts of its bootstrap
    sample as weights, and the probabilities are summed in tree order, then divided. The
    ensembles' own fits re-clone, re-seed and re-validate every tree (80% of the forest's
    CPU on 38 samples), and redraw the bootstrap samples that are the same in every fold.
    """

    def __init__(self, draws="forest", seed=0, max_features=None):
        self.draws = draws
        self.seed = seed
        self.max_features = max_features

    def fit(self, x, y):
        x = np.ascontiguousarray(x, dtype=np.float32)  # what the ensembles cast to
        self.trees_ = [
            DecisionTreeClassifier(max_features=self.max_features, random_state=s).fit(
                x, y, sample_weight=w, check_input=False
            )
            for s, w in bootstrap_weights(self.draws, self.seed, len(y))
        ]
        return self

    def predict_proba(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        proba = np.zeros((len(x), len(self.trees_[0].classes_)))
        for tree in self.trees_:
            proba += tree.predict_proba(x, check_input=False)
        proba /= len(self.trees_)
        return proba


# scikit-learn 1.8 deprecates `penalty`; 1.4 ignores l1_ratio without it.
SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2])
L1_KWARGS: dict[str, Any] = {"l1_ratio": 1.0} if SKLEARN_VERSION >= (1, 8) else {"penalty": "l1"}

# Each classifier's builder, given the run's seed: the one list of the names the worker knows.
FACTORIES: dict[str, Callable[[int], Any]] = {
    "logistic": lambda seed: LogisticRegression(max_iter=1000, random_state=seed),
    "logistic_l1": lambda seed: LogisticRegression(
        solver="liblinear", max_iter=1000, random_state=seed, **L1_KWARGS
    ),
    # BaggingClassifier(estimator=DecisionTreeClassifier(random_state=seed),
    # random_state=seed): 10 trees.
    "bagging": lambda seed: BootstrapTrees("bagging", seed),
    # RandomForestClassifier(n_estimators=50, random_state=seed). 50 trees: 77% of a
    # signature's CPU went to the forest at 100 trees, and the mean AUC moved by less than
    # 0.01 (tests/benchmarks/bench_work.py measures it).
    "random_forest": lambda seed: BootstrapTrees("forest", seed, "sqrt"),
    "svm": lambda seed: PlattSVC(random_state=seed),
    "decision_tree": lambda seed: DecisionTreeClassifier(random_state=seed),
}
CLASSIFIERS = tuple(FACTORIES)


def classifier_names(config: WorkerConfig) -> list[str]:
    """The config's classifiers (default: all), refusing names the worker does not know."""
    names = list(config.get("classifiers") or FACTORIES)
    unknown = [n for n in names if n not in FACTORIES]
    if unknown:
        raise ValueError(f"unknown classifiers {unknown}; known: {sorted(FACTORIES)}")
    return names


def native_thread_limit() -> contextlib.AbstractContextManager:
    """One worker is one core: BLAS and OpenMP pools at one thread (Pyodide has no threads).

    The pools would start a thread per core, which on 38-sample fits only spin (4x the CPU of
    logistic and SVM fits).
    """
    if sys.platform == "emscripten":
        return contextlib.nullcontext()
    import threadpoolctl

    return threadpoolctl.threadpool_limits(limits=1)


def score_classifier(
    x: np.ndarray, labels: SliceLabels, make_model: Callable[[], Any], keep_scores: bool = False
) -> dict:
    """AUC and accuracy of one classifier's out-of-fold probabilities, or why it failed.

    The AUC is pooled: one ROC over every sample's out-of-fold probability, not a mean over
    folds. With `keep_scores`, the record also holds those probabilities (`scored` order).
    """
    y, scored = labels.y, labels.scored
    try:
        # cross_val_predict's fits and predictions, without its per-call overhead.
        proba = np.empty(len(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for train, test in labels.splits:
                model = make_model().fit(x[train], y[train])
                proba[test] = model.predict_proba(x[test])[:, 1]
        record = {
            "auc": float(roc_auc_score(y[scored], proba[scored])),
            "accuracy": float(np.mean((proba[scored] >= 0.5) == y[scored])),
        }
        if keep_scores:
            record["scores"] = proba[scored].tolist()
        return record
    except Exception as exc:  # a classifier that cannot fit is reported, not fatal
        return {"auc": None, "accuracy": None, "error": f"{type(exc).__name__}: {exc}"}


def signature_columns(dataset: ParsedDataset, signature: SliceSignature) -> list[int]:
    """The matrix columns of a signature's probesets, naming the first unknown one."""
    try:
        return [dataset.column[p] for p in signature["probesets"]]
    except KeyError as exc:
        raise ValueError(f"signature {signature['id']}: unknown probeset {exc}") from None


def slice_progress() -> Callable[..., None]:
    """DCP's `progress` (the local workers install the same); anywhere else, nowhere."""
    return getattr(sys.modules.get("dcp"), "progress", None) or (lambda value=None: None)


def evaluate_signatures(
    dataset: ParsedDataset, datum: SliceDatum, labels: SliceLabels, config: WorkerConfig
) -> tuple[list[dict], float]:
    """Every (signature, classifier) record of the slice, and the seconds spent fitting."""
    seed, names, progress = int(config.get("seed", 0)), classifier_names(config), slice_progress()
    keep_scores = bool(config.get("predictions"))
    records, fit_seconds = [], 0.0
    signatures = datum["signatures"]
    # Inputs are validated above; skipping sklearn's per-fit re-validation keeps its results.
    with (
        native_thread_limit(),
        sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
    ):
        for done, signature in enumerate(signatures):
            columns = np.array(signature_columns(dataset, signature), dtype=np.int64)
            x = dataset.matrix[np.ix_(labels.used, columns)]
            for name in names:
                fit_started = time.perf_counter()
                make_model = functools.partial(FACTORIES[name], seed)
                scores = score_classifier(x, labels, make_model, keep_scores)
                fit_seconds += time.perf_counter() - fit_started
                records.append({"signature": int(signature["id"]), "classifier": name, **scores})
            progress((done + 1) / len(signatures))
    if records and all(r["auc"] is None for r in records):
        raise RuntimeError(f"no record could be computed: {records[0]['error']}")
    return records, fit_seconds


def evaluate_slice(datum: Any, dataset: Any, config: Any) -> str:
    """Evaluate a slice's signatures with every configured classifier; return JSON text."""
    slice_progress()(0.0)
    # Under Pyodide process_time() is always 0: report wall time only, and say so.
    cpu_clock = None if sys.platform == "emscripten" else time.process_time
    clock_name = "process_time" if cpu_clock else "unavailable (Pyodide): use total_seconds"
    started, cpu_started = time.perf_counter(), cpu_clock() if cpu_clock else 0.0
    slice_datum: SliceDatum = as_mapping(datum)  # type: ignore[assignment]
    worker_config: WorkerConfig = as_mapping(config)  # type: ignore[assignment]
    parsed = load_dataset(as_text(dataset), worker_config.get("dataset_sha256"))
    parse_seconds = time.perf_counter() - started
    permutation_seed = slice_datum.get("permutation_seed", worker_config.get("permutation_seed"))
    labels = slice_labels(parsed.labels, worker_config, permutation_seed)
    records, fit_seconds = evaluate_signatures(parsed, slice_datum, labels, worker_config)
    result: dict[str, Any] = {
        "slice": int(slice_datum["slice"]),
        "dataset_sha256": parsed.sha256,
        "permutation_seed": None if permutation_seed is None else int(permutation_seed),
        "records": records,
        "timings": {
            "parse_seconds": parse_seconds,
            "fit_seconds": fit_seconds,
            "total_seconds": time.perf_counter() - started,
            "cpu_seconds": cpu_clock() - cpu_started if cpu_clock else None,
            "cpu_clock": clock_name,
        },
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    if worker_config.get("predictions"):  # the dataset rows each record's `scores` are of
        result["scored_rows"] = labels.used[labels.scored].tolist()
    return json.dumps(result, sort_keys=True)
