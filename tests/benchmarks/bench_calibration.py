"""How well the selection-adjusted p is calibrated on null data: a command that prints figures.

Usage: python -m tests.benchmarks.bench_calibration [--signatures 50] [--permutations 40]

Null datasets (no true signal): golub with its labels permuted (unbalanced 11/27 and a balanced
11/11 subset), Gaussian noise (balanced 20/20 and unbalanced 10/30) and correlated noise (a
3-factor model, 20/20). Each is searched with `--signatures` random signatures, and every
signature is evaluated on each of `--permutations` label permutations, so the exact
max-statistic null is known. From the same evaluations, the panel nulls take a seeded 5 of
them per permutation (the default `null_signatures`) and fit a tail: normal (the product's
until now) or Student's t with few degrees of freedom.

Two measures of calibration, both of which a valid p keeps at or below the nominal level:
- per dataset: the share of null datasets whose best signature gets p <= 0.05 and <= 0.10;
- leave one permutation out: each permutation's best is a null search's best, its p taken from
  the other permutations (datasets x permutations cases: tighter intervals).
The work function is the product's (tasks/science/worker.py), run with cheap classifiers
(`--classifiers`, default logistic and decision_tree, 5 folds) to keep the exact null affordable.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tasks.io import read_prepared
from tasks.science.plan import iter_slices, null_panel, permutation_seeds, plan_signatures
from tasks.science.tables import selection_adjusted_p

from ..conftest import GOLUB

PANEL = 5
TAILS = ("normal", "t10", "t5", "t3")


@dataclass(frozen=True)
class NullDataset:
    """A dataset without signal, as the tutorial layout's text."""

    name: str
    text: str
    case: str
    probesets: list[str]


def as_text(labels: list[str], matrix: np.ndarray, names: list[str]) -> str:
    """The tutorial layout: a phenotype column, then one column per probeset."""
    rows = ["\t".join([lab, *(f"{v:.4f}" for v in row)]) for lab, row in zip(labels, matrix)]
    return "\n".join(["\t".join(["phenotype", *names]), *rows]) + "\n"


def null_datasets(n_each: int) -> list[NullDataset]:
    """Permuted golub (unbalanced, balanced), Gaussian and correlated noise."""
    labels, frame = read_prepared(GOLUB)
    golub, names = frame.to_numpy(), list(frame.columns)
    found = []
    for seed in range(n_each):
        rng = np.random.default_rng(1000 + seed)
        shuffled = list(rng.permutation(labels))
        found.append(
            NullDataset(f"golub-permuted-{seed}", as_text(shuffled, golub, names), "AML", names)
        )
        keep = np.r_[
            np.flatnonzero(np.array(labels) == "AML"),
            np.flatnonzero(np.array(labels) == "ALL")[:11],
        ]
        balanced = list(rng.permutation(np.array(labels)[keep]))
        found.append(
            NullDataset(
                f"golub-balanced-{seed}", as_text(balanced, golub[keep], names), "AML", names
            )
        )
        genes = [f"g{i}" for i in range(1000)]
        for n_case, n_control in ((20, 20), (10, 30)):
            x = rng.normal(8.0, 1.0, size=(n_case + n_control, 1000))
            y = ["case"] * n_case + ["control"] * n_control
            found.append(
                NullDataset(
                    f"noise-{n_case}v{n_control}-{seed}", as_text(y, x, genes), "case", genes
                )
            )
        factors = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 1000))
        x = 8.0 + factors + rng.normal(size=(40, 1000))
        y = ["case", "control"] * 20
        found.append(NullDataset(f"factor-noise-{seed}", as_text(y, x, genes), "case", genes))
    return found


def _evaluate(task: tuple) -> tuple:
    """Mean AUC per signature of one slice (a Pool worker's call)."""
    from tasks.science.worker import evaluate_slice

    index, permutation, datum, config = task
    result = json.loads(evaluate_slice(datum, DATASETS[index].text, json.dumps(config)))
    frame = pd.DataFrame(result["records"]).dropna(subset=["auc"])
    means = frame.groupby("signature")["auc"].mean()
    return index, permutation, means.to_dict(), result["timings"]["cpu_seconds"]


DATASETS: list[NullDataset] = []


def _init(datasets: list[NullDataset]) -> None:
    DATASETS[:] = datasets


def evaluate_all(datasets: list[NullDataset], args: argparse.Namespace) -> tuple[dict, float]:
    """(dataset, permutation or -1) -> {signature: mean AUC}, and the CPU seconds spent."""
    tasks = []
    for index, dataset in enumerate(datasets):
        signatures = plan_signatures(dataset.probesets, args.signatures, 5, 9, seed=index)
        config = {
            "case": dataset.case,
            "cv_folds": args.folds,
            "seed": 0,
            "classifiers": args.classifiers,
        }
        for j, seed in enumerate([None, *permutation_seeds(args.permutations, 7 + index)]):
            for datum in iter_slices(signatures, 10):
                tasks.append((index, j - 1, {**datum, "permutation_seed": seed}, config))
    found: dict = {}
    cpu = 0.0
    with multiprocessing.Pool(args.processes, initializer=_init, initargs=(datasets,)) as pool:
        for index, permutation, means, seconds in pool.imap_unordered(
            _evaluate, tasks, chunksize=4
        ):
            found.setdefault((index, permutation), {}).update(means)
            cpu += seconds
    return found, cpu


def tail_p(observed: float, null: pd.DataFrame, n_searched: int, tail: str) -> float:
    """The selection-adjusted p of one value under a null frame, with the given tail."""
    df = None if tail == "normal" else float(tail.removeprefix("t"))
    return float(selection_adjusted_p(np.array([observed]), null, n_searched, tail_df=df)[0])


def null_frame(
    found: dict, index: int, permutations: list[int], panel: list[int] | None
) -> pd.DataFrame:
    """The permutations' mean AUCs: every signature (exact) or the panel's."""
    rows = [
        {"permutation": j, "signature": s, "mean_auc": v}
        for j in permutations
        for s, v in found[(index, j)].items()
        if panel is None or s in panel
    ]
    return pd.DataFrame(rows)


def calibration(found: dict, datasets: list[NullDataset], args: argparse.Namespace) -> dict:
    """Per method: the datasets' p of their best, and the leave-one-permutation-out p's."""
    per_dataset: dict[str, list[float]] = {m: [] for m in ("exact", *TAILS)}
    loo: dict[str, list[float]] = {m: [] for m in ("exact", *TAILS)}
    perms = list(range(args.permutations))
    for index, dataset in enumerate(datasets):
        n = args.signatures
        signatures = plan_signatures(dataset.probesets, n, 5, 9, seed=index)
        panel = {s.id for s in null_panel(signatures, PANEL, 11 + index)}
        best = max(found[(index, -1)].values())
        exact, partial = (
            null_frame(found, index, perms, None),
            null_frame(found, index, perms, panel),
        )
        per_dataset["exact"].append(tail_p(best, exact, n, "normal"))
        for tail in TAILS:
            per_dataset[tail].append(tail_p(best, partial, n, tail))
        for j in perms:
            others = [k for k in perms if k != j]
            held = max(found[(index, j)].values())
            loo["exact"].append(tail_p(held, exact[exact["permutation"] != j], n, "normal"))
            for tail in TAILS:
                loo[tail].append(
                    tail_p(held, partial[partial["permutation"].isin(others)], n, tail)
                )
    return {"per_dataset": per_dataset, "leave_one_out": loo}


def share(values: list[float], alpha: float) -> str:
    """`k/n = share [95% Clopper-Pearson interval]` of values at or below alpha."""
    k, n = int(np.sum(np.array(values) <= alpha + 1e-12)), len(values)
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} = {k / n:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--signatures", type=int, default=50)
    parser.add_argument("--permutations", type=int, default=40)
    parser.add_argument("--each", type=int, default=5, help="datasets of each of the 5 kinds")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--classifiers", nargs="+", default=["logistic", "decision_tree"])
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    datasets = null_datasets(args.each)
    started = time.perf_counter()
    found, cpu = evaluate_all(datasets, args)
    evaluations = sum(len(v) for v in found.values())
    print(f"{len(datasets)} null datasets, {args.signatures} signatures, {args.permutations} "
          f"permutations, classifiers {args.classifiers}, {args.folds} folds: {evaluations:,} "
          f"evaluations, {cpu:.0f} CPU-s, {time.perf_counter() - started:.0f} s wall")  # fmt: skip
    result = calibration(found, datasets, args)
    for measure, by_method in result.items():
        print(f"\n{measure}: share of p <= 0.05 | share of p <= 0.10")
        for method, values in by_method.items():
            label = (
                "exact (every signature)"
                if method == "exact"
                else f"panel of {PANEL}, {method} tail"
            )
            print(f"  {label:28s} {share(values, 0.05)} | {share(values, 0.10)}")


if __name__ == "__main__":
    main()
