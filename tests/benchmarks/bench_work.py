"""Benchmark: CPU seconds per signature of the work function vs the original example's logic.

Run: `.venv/bin/python -m tests.benchmarks.bench_work [--signatures 200]`. Prints, per
dataset, CPU seconds per signature for both, their ratio, the mean AUCs, and the share of
slice time spent outside classifier fitting and prediction.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.worker import evaluate_slice

from ..conftest import GOLUB


def original_work(datum: dict, dataset: str, case: str) -> list[float]:
    """The original example's algorithm: parse per call, six default classifiers, 10-fold CV."""
    import io
    import warnings

    import pandas as pd
    from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    df = pd.read_csv(io.StringIO(dataset), sep="\t")
    y = (df["phenotype"] == case).astype(int)
    models = [
        LogisticRegression(max_iter=1000),
        LogisticRegression(solver="liblinear", C=1.0, l1_ratio=1.0),
        BaggingClassifier(estimator=DecisionTreeClassifier()),
        RandomForestClassifier(n_estimators=100),
        SVC(probability=True),
        DecisionTreeClassifier(),
    ]
    aucs = []
    warnings.simplefilter("ignore")  # the original's SVC(probability=True) warns from 1.9
    for signature in datum["signatures"]:
        x = df[signature["probesets"]]
        for model in models:
            proba = cross_val_predict(
                model, x, y, cv=StratifiedKFold(10, shuffle=True), method="predict_proba"
            )[:, 1]
            aucs.append(roc_auc_score(y, proba))
    return aucs


def synthetic_dataset(n_samples: int = 80, n_probesets: int = 12_000, seed: int = 0) -> str:
    """A two-class matrix with 200 informative probesets, in the original layout."""
    rng = np.random.default_rng(seed)
    labels = np.array(["case"] * (n_samples // 2) + ["control"] * (n_samples - n_samples // 2))
    x = rng.normal(size=(n_samples, n_probesets))
    x[labels == "case", :200] += 0.8
    header = "\t".join(["phenotype", *(f"p{i}" for i in range(n_probesets))])
    rows = ["\t".join([lab, *(f"{v:.6f}" for v in row)]) for lab, row in zip(labels, x)]
    return "\n".join([header, *rows]) + "\n"


def measure(name: str, text: str, case: str, n: int) -> dict:
    """Both implementations on the same n signatures (one signature per call, as slices)."""
    probesets = text.split("\n", 1)[0].split("\t")[1:]
    slices = pack_slices(plan_signatures(probesets, n, 5, 9, seed=1), 1)
    config = json.dumps({"case": case, "cv_folds": 10, "seed": 1})
    cpu0 = time.process_time()
    ours, fit, total = [], 0.0, 0.0
    for datum in slices:
        result = json.loads(evaluate_slice(datum, text, config))
        ours += [r["auc"] for r in result["records"] if r["auc"] is not None]
        fit += result["timings"]["fit_seconds"]
        total += result["timings"]["total_seconds"]
    ours_cpu = (time.process_time() - cpu0) / n
    cpu0 = time.process_time()
    baseline = [auc for datum in slices for auc in original_work(datum, text, case)]
    base_cpu = (time.process_time() - cpu0) / n
    return {
        "dataset": name,
        "signatures": n,
        "baseline_cpu_s_per_signature": round(base_cpu, 4),
        "ours_cpu_s_per_signature": round(ours_cpu, 4),
        "ratio": round(base_cpu / ours_cpu, 2),
        "baseline_mean_auc": round(float(np.mean(baseline)), 4),
        "ours_mean_auc": round(float(np.mean(ours)), 4),
        "mean_auc_difference": round(float(np.mean(ours) - np.mean(baseline)), 4),
        "share_outside_fit_predict": round(1 - fit / total, 4),
    }


def main() -> None:
    """Print one JSON line per dataset."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signatures", type=int, default=200)
    args = parser.parse_args()
    datasets = [("golub_all_aml", GOLUB.read_text(), "AML"),
                ("synthetic_80x12000", synthetic_dataset(), "case")]  # fmt: skip
    for name, text, case in datasets:
        print(json.dumps(measure(name, text, case, args.signatures)), flush=True)


if __name__ == "__main__":
    main()
