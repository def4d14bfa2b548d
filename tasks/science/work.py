"""The work function every backend runs, and what the job client needs to know about it.

`evaluate_slice` is shipped to workers as source (DCP) or executed from that same
source (local backend), so it is fully self-contained: imports inside, no closures,
no project imports. It must run under DCP's Pyodide worktime (Pyodide 0.28.2:
Python 3.13, numpy 2.2.5, scipy 1.14.1, scikit-learn 1.7.0) and on current releases.

What a DCP worker does with it (../shared/DCP-WORKTIME.md): arguments arrive as `str`,
or as a JS String object for a URL served as text/* other than text/plain; the sandbox
rejects a slice that never called `dcp.progress()`; an exception becomes the result.
"""

from __future__ import annotations

import inspect

CLASSIFIERS = (
    "logistic",
    "logistic_l1",
    "bagging",
    "random_forest",
    "svm",
    "decision_tree",
)
# Pyodide package names the work function imports (checked against the SDK's lock file).
WORK_MODULES = ("numpy", "scikit-learn", "scipy")


def evaluate_slice(datum, dataset, config):
    """Evaluate a slice's signatures with every configured classifier; return JSON text."""
    import builtins
    import contextlib
    import hashlib
    import json
    import re
    import sys
    import time
    import warnings

    import numpy as np
    import scipy
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    # DCP's worktime registers a `dcp` module with `progress`; the local backend's workers
    # install the same; anywhere else progress goes nowhere.
    progress = getattr(sys.modules.get("dcp"), "progress", None) or (lambda value=None: None)
    progress(0.0)
    # Under Pyodide process_time() is always 0: report wall time only, and say so.
    cpu_clock = None if sys.platform == "emscripten" else time.process_time
    started, cpu_started = time.perf_counter(), cpu_clock() if cpu_clock else 0.0
    # JSON strings cross the DCP serializer untouched; a fetched URL can arrive as a JS
    # String object, which str() turns into text.
    datum = dict(datum) if isinstance(datum, dict) else json.loads(str(datum))
    config = dict(config) if isinstance(config, dict) else json.loads(str(config))
    if isinstance(dataset, (bytes, bytearray)):
        dataset = dataset.decode("utf-8")
    dataset = str(dataset)
    expected_sha = config.get("dataset_sha256")

    # Verify and parse once per process: a sandbox runs many slices of the same job with the
    # same argument; text equal to the verified text (identity, else memcmp) is that dataset.
    cache = getattr(builtins, "_signature_search_dataset_cache", None)
    if cache is None or cache["text"] != dataset:
        cache = builtins._signature_search_dataset_cache = None  # the old matrix goes first
        digest = hashlib.sha256()
        for start in range(0, len(dataset), 1 << 20):  # no second copy of the whole text
            digest.update(dataset[start : start + (1 << 20)].encode("utf-8"))
        if expected_sha and expected_sha != digest.hexdigest():
            raise ValueError(
                f"dataset sha256 {digest.hexdigest()} does not match expected {expected_sha}"
            )
        # numpy's own parser straight into the matrix (same float64 as Python's float()),
        # instead of a str object per value.
        lines = (
            line
            for piece in re.finditer(r"[^\n]*\n?", dataset)
            for line in piece.group().splitlines()
            if line.strip()
        )
        header = next(lines, "").split("\t")
        if header[0] != "phenotype":
            raise ValueError("dataset's first column must be 'phenotype'")
        labels = []

        def values(lines):
            for line in lines:
                label, _, rest = line.partition("\t")
                labels.append(label)
                yield rest

        matrix = np.loadtxt(
            values(lines), delimiter="\t", comments=None, quotechar=None, ndmin=2, dtype=np.float64
        )
        if matrix.shape != (len(labels), len(header) - 1):
            raise ValueError(
                f"dataset has {matrix.shape} values for {len(labels)} samples "
                f"and {len(header) - 1} probesets"
            )
        cache = {
            "text": dataset,
            "sha256": digest.hexdigest(),
            "column": {name: i for i, name in enumerate(header[1:])},
            "labels": np.array(labels),
            "matrix": matrix,
        }
        builtins._signature_search_dataset_cache = cache
    elif expected_sha and expected_sha != cache["sha256"]:
        raise ValueError(f"dataset sha256 {cache['sha256']} does not match expected {expected_sha}")
    sha256 = cache["sha256"]
    parse_seconds = time.perf_counter() - started

    seed = int(config.get("seed", 0))
    folds = int(config.get("cv_folds", 10))
    labels = (cache["labels"] == str(config["case"])).astype(np.int64)
    # With held-out validation the search sees the discovery rows only, and a validation
    # slice fits on all of them and scores the held-out rows once.
    rows = np.arange(len(labels)) if config.get("rows") is None else np.array(config["rows"])
    held_out = np.array(config.get("validation_rows") or [], dtype=np.int64)
    used = np.concatenate([rows, held_out]).astype(np.int64)
    y = labels[used]
    permutation_seed = datum.get("permutation_seed", config.get("permutation_seed"))
    if permutation_seed is not None:
        y[: len(rows)] = np.random.RandomState(int(permutation_seed)).permutation(y[: len(rows)])
    if len(held_out):
        splits = [(np.arange(len(rows)), np.arange(len(rows), len(used)))]
    elif y.sum() < folds or (len(y) - y.sum()) < folds:
        raise ValueError(f"fewer samples in a class than cv_folds={folds}")
    else:
        # Every signature of the slice uses the same y, hence the same folds: split once.
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(cv.split(np.zeros(len(y)), y))
    scored = np.sort(np.concatenate([test for _, test in splits]))

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

    max_int = np.iinfo(np.int32).max

    def forest_draws(n):
        """RandomForestClassifier(random_state=seed)'s 50 tree seeds and bootstrap samples."""
        rng = np.random.RandomState(seed)
        seeds = [rng.randint(max_int) for _ in range(50)]
        return [(s, np.random.RandomState(s).randint(0, n, n, dtype=np.int32)) for s in seeds]

    def bagging_draws(n):
        """BaggingClassifier(random_state=seed)'s 10: each estimator's seed seeds its tree's
        seed and, anew, its bootstrap sample (all features are kept, drawing nothing)."""
        seeds = np.random.RandomState(seed).randint(max_int, size=10)
        return [
            (np.random.RandomState(s).randint(max_int), np.random.RandomState(s).randint(0, n, n))
            for s in seeds
        ]

    bootstraps = {}  # (draws, n) -> [(tree seed, sample weights)]: same for every fold of a size

    class BootstrapTrees(ClassifierMixin, BaseEstimator):
        """A forest's or a bagging ensemble's trees, built as the ensemble builds them.

        Same trees, same probabilities: each tree is fitted on the counts of its bootstrap
        sample as weights, and the probabilities are summed in tree order, then divided. The
        ensembles' own fits re-clone, re-seed and re-validate every tree (80% of the forest's
        CPU on 38 samples), and redraw the bootstrap samples that are the same in every fold.
        """

        def __init__(self, draws=None, max_features=None):
            self.draws = draws
            self.max_features = max_features

        def fit(self, x, y):
            key = (self.draws, len(y))
            if key not in bootstraps:
                bootstraps[key] = [
                    (int(s), np.bincount(sample, minlength=len(y)).astype(np.float64))
                    for s, sample in self.draws(len(y))
                ]
            x = np.ascontiguousarray(x, dtype=np.float32)  # what the ensembles cast to
            self.trees_ = [
                DecisionTreeClassifier(max_features=self.max_features, random_state=s).fit(
                    x, y, sample_weight=w, check_input=False
                )
                for s, w in bootstraps[key]
            ]
            return self

        def predict_proba(self, x):
            x = np.ascontiguousarray(x, dtype=np.float32)
            proba = np.zeros((len(x), len(self.trees_[0].classes_)))
            for tree in self.trees_:
                proba += tree.predict_proba(x, check_input=False)
            proba /= len(self.trees_)
            return proba

    sk_version = tuple(int(p) for p in sklearn.__version__.split(".")[:2])
    # scikit-learn 1.8 deprecates `penalty`; 1.4 ignores l1_ratio without it.
    l1_kwargs = {"l1_ratio": 1.0} if sk_version >= (1, 8) else {"penalty": "l1"}
    factories = {
        "logistic": lambda: LogisticRegression(max_iter=1000, random_state=seed),
        "logistic_l1": lambda: LogisticRegression(
            solver="liblinear", max_iter=1000, random_state=seed, **l1_kwargs
        ),
        # BaggingClassifier(estimator=DecisionTreeClassifier(random_state=seed),
        # random_state=seed): 10 trees.
        "bagging": lambda: BootstrapTrees(bagging_draws),
        # RandomForestClassifier(n_estimators=50, random_state=seed). 50 trees: 77% of a
        # signature's CPU went to the forest at 100 trees, and the mean AUC moved by less than
        # 0.01 (tests/benchmarks/bench_work.py measures it).
        "random_forest": lambda: BootstrapTrees(forest_draws, "sqrt"),
        "svm": lambda: PlattSVC(random_state=seed),
        "decision_tree": lambda: DecisionTreeClassifier(random_state=seed),
    }
    names = list(config.get("classifiers") or factories)
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise ValueError(f"unknown classifiers {unknown}; known: {sorted(factories)}")

    # One worker is one core: the BLAS and OpenMP pools would start a thread per core, which on
    # 38-sample fits only spin (4x the CPU of logistic and SVM fits). Pyodide has no threads.
    if sys.platform == "emscripten":
        native_threads = contextlib.nullcontext()
    else:
        from threadpoolctl import threadpool_limits

        native_threads = threadpool_limits(limits=1)
    records, fit_seconds = [], 0.0
    signatures = datum["signatures"]
    # Inputs are validated above; skipping sklearn's per-fit re-validation keeps its results.
    with native_threads, sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for done, signature in enumerate(signatures):
            try:
                columns = [cache["column"][p] for p in signature["probesets"]]
            except KeyError as exc:
                raise ValueError(f"signature {signature['id']}: unknown probeset {exc}") from None
            x = cache["matrix"][np.ix_(used, columns)]
            for name in names:
                record = {"signature": int(signature["id"]), "classifier": name}
                fit_started = time.perf_counter()
                try:
                    # cross_val_predict's fits and predictions, without its per-call overhead.
                    proba = np.empty(len(y))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        for train, test in splits:
                            model = factories[name]().fit(x[train], y[train])
                            proba[test] = model.predict_proba(x[test])[:, 1]
                    record["auc"] = float(roc_auc_score(y[scored], proba[scored]))
                    record["accuracy"] = float(np.mean((proba[scored] >= 0.5) == y[scored]))
                except Exception as exc:  # a classifier that cannot fit is reported, not fatal
                    record["auc"] = None
                    record["accuracy"] = None
                    record["error"] = f"{type(exc).__name__}: {exc}"
                fit_seconds += time.perf_counter() - fit_started
                records.append(record)
            progress((done + 1) / len(signatures))
    if records and all(r["auc"] is None for r in records):
        raise RuntimeError(f"no record could be computed: {records[0]['error']}")

    result = {
        "slice": int(datum["slice"]),
        "dataset_sha256": sha256,
        "permutation_seed": None if permutation_seed is None else int(permutation_seed),
        "records": records,
        "timings": {
            "parse_seconds": parse_seconds,
            "fit_seconds": fit_seconds,
            "total_seconds": time.perf_counter() - started,
            "cpu_seconds": cpu_clock() - cpu_started if cpu_clock else None,
            "cpu_clock": "process_time"
            if cpu_clock
            else "unavailable (Pyodide): use total_seconds",
        },
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    return json.dumps(result, sort_keys=True)


def work_function_source() -> str:
    """Return the exact source shipped to workers (both backends run this text)."""
    return inspect.getsource(evaluate_slice)


def load_work_function(source: str):
    """Compile shipped work-function source into a callable, as a worker does."""
    namespace: dict = {}
    exec(compile(source, "<work-function>", "exec"), namespace)  # noqa: S102
    return namespace["evaluate_slice"]


def check_classifiers(names: list[str]) -> list[str]:
    """Refuse unknown classifier names before any job starts."""
    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"unknown classifiers {unknown}; known: {list(CLASSIFIERS)}")
    if not names:
        raise ValueError("at least one classifier is required")
    return list(names)
