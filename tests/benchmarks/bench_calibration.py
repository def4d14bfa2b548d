"""How well the selection-adjusted p is calibrated, and what it can find: prints figures.

Usage: python -m tests.benchmarks.bench_calibration [--signatures 50] [--permutations 40]

Null datasets (no true signal): golub with its labels permuted (unbalanced 11/27 and a balanced
11/11 subset), Gaussian noise (balanced 20/20 and unbalanced 10/30) and correlated noise (a
3-factor model, 20/20). Signal datasets: golub with its labels, and with 4 or 8 of them
swapped between the groups (a weaker signal). Each is searched with `--signatures` random
signatures, and every signature is evaluated on each of `--permutations` label permutations,
so the exact max-statistic null is known. From the same evaluations:
- screened (the product's): per labelling, the best of the `--candidates` signatures screened
  in by mean squared t (tasks/science/screen.py), on the real labels and on each permutation
  alike;
- normal tail (the product's until now): a panel of 5 per permutation, 1 - F(v)^N with F the
  panel's normal fit (per-permutation mean, pooled SD).

Two measures of calibration, both of which a valid p keeps at or below the nominal level:
- per dataset: the share of null datasets whose best signature gets p <= 0.05 and <= 0.10;
- leave one permutation out: each permutation's labels taken as the real ones, its p from the
  other permutations (datasets x permutations cases: tighter intervals).
Power, on the signal datasets: each method's p beside the exact one, and whether the search's
best is among the screened-in signatures. The work function is the product's
(tasks/science/worker.py), with cheap classifiers (`--classifiers`, default logistic and
decision_tree, 5 folds) to keep the exact null affordable; `--classifiers` and `--folds` take
the defaults' six and 10 too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from tasks.io import read_prepared
from tasks.parameters import SearchParameters
from tasks.science.plan import iter_slices, null_panel, permutation_seeds, plan_compact
from tasks.science.screen import screened_in
from tasks.science.tables import selection_adjusted_p

from ..conftest import GOLUB

PANEL = 5
METHODS = ("exact", "screened", "normal tail")


@dataclass(frozen=True)
class BenchDataset:
    """A dataset of the benchmark: its labels and values, and whether it carries signal."""

    name: str
    labels: list[str]
    values: np.ndarray
    probesets: list[str]
    case: str
    signal: bool

    @property
    def text(self) -> str:
        """The tutorial layout: a phenotype column, then one column per probeset."""
        rows = [
            "\t".join([lab, *(f"{v:.4f}" for v in row)])
            for lab, row in zip(self.labels, self.values)
        ]
        return "\n".join(["\t".join(["phenotype", *self.probesets]), *rows]) + "\n"


def null_datasets(n_each: int) -> list[BenchDataset]:
    """Permuted golub (unbalanced, balanced), Gaussian and correlated noise."""
    labels, frame = read_prepared(GOLUB)
    golub, names = frame.to_numpy(), list(frame.columns)
    found = []
    genes = [f"g{i}" for i in range(1000)]
    for seed in range(n_each):
        rng = np.random.default_rng(1000 + seed)
        shuffled = list(rng.permutation(labels))
        found.append(BenchDataset(f"golub-permuted-{seed}", shuffled, golub, names, "AML", False))
        keep = np.r_[
            np.flatnonzero(np.array(labels) == "AML"),
            np.flatnonzero(np.array(labels) == "ALL")[:11],
        ]
        balanced = list(rng.permutation(np.array(labels)[keep]))
        found.append(
            BenchDataset(f"golub-balanced-{seed}", balanced, golub[keep], names, "AML", False)
        )
        for n_case, n_control in ((20, 20), (10, 30)):
            x = rng.normal(8.0, 1.0, size=(n_case + n_control, 1000))
            y = ["case"] * n_case + ["control"] * n_control
            found.append(
                BenchDataset(f"noise-{n_case}v{n_control}-{seed}", y, x, genes, "case", False)
            )
        factors = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 1000))
        x = 8.0 + factors + rng.normal(size=(40, 1000))
        y = ["case", "control"] * 20
        found.append(BenchDataset(f"factor-noise-{seed}", y, x, genes, "case", False))
    return found


def signal_datasets() -> list[BenchDataset]:
    """Golub with its labels, and with 4 or 8 labels swapped between the groups."""
    labels, frame = read_prepared(GOLUB)
    found = []
    for swapped in (0, 4, 8):
        rng = np.random.default_rng(swapped)
        y = np.array(labels)
        aml, all_ = np.flatnonzero(y == "AML"), np.flatnonzero(y == "ALL")
        picked = rng.choice(aml, swapped // 2, replace=False), rng.choice(all_, swapped // 2)
        y[picked[0]], y[picked[1]] = "ALL", "AML"
        found.append(
            BenchDataset(
                f"golub-{swapped}-swapped",
                list(y),
                frame.to_numpy(),
                list(frame.columns),
                "AML",
                True,
            )
        )
    return found


def _evaluate(task: tuple) -> tuple:
    """Mean AUC per signature of one slice (a Pool worker's call)."""
    from tasks.science.worker import evaluate_slice

    index, permutation, datum, config = task
    result = json.loads(evaluate_slice(datum, TEXTS[index], json.dumps(config)))
    frame = pd.DataFrame(result["records"]).dropna(subset=["auc"])
    means = frame.groupby("signature")["auc"].mean()
    return index, permutation, means.to_dict(), result["timings"]["cpu_seconds"]


TEXTS: list[str] = []


def _init(texts: list[str]) -> None:
    TEXTS[:] = texts


def evaluate_all(datasets: list[BenchDataset], args: argparse.Namespace) -> tuple[dict, float]:
    """(dataset, permutation seed or None) -> {signature: mean AUC}, and the CPU seconds spent."""
    tasks = []
    for index, dataset in enumerate(datasets):
        config = {
            "case": dataset.case,
            "cv_folds": args.folds,
            "seed": 0,
            "classifiers": args.classifiers,
        }
        for seed in [None, *permutation_seeds(args.permutations, 7 + index)]:
            for datum in iter_slices(plan(dataset, args, index), 10):
                tasks.append((index, seed, {**datum, "permutation_seed": seed}, config))
    found: dict = {}
    cpu = 0.0
    texts = [d.text for d in datasets]
    with multiprocessing.Pool(args.processes, initializer=_init, initargs=(texts,)) as pool:
        for index, seed, means, seconds in pool.imap_unordered(_evaluate, tasks, chunksize=4):
            found.setdefault((index, seed), {}).update(means)
            cpu += seconds
    return found, cpu


def plan(dataset: BenchDataset, args: argparse.Namespace, index: int):
    """The dataset's searched signatures."""
    return plan_compact(dataset.probesets, args.signatures, 5, 9, seed=index)


def normal_tail_p(value: float, groups: list[np.ndarray], n_searched: int) -> float:
    """The product's p until now: a panel's normal fit per permutation, pooled SD."""
    dof = sum(len(g) - 1 for g in groups)
    sd = np.sqrt(sum((len(g) - 1) * np.var(g, ddof=1) for g in groups) / dof)
    z = (value - np.array([g.mean() for g in groups])) / sd
    chance = -np.expm1(n_searched * special.log_ndtr(z))
    return float((1 + chance.sum()) / (len(groups) + 1))


@dataclass(frozen=True)
class Statistics:
    """One dataset's statistic per labelling (None: the real labels), for each method."""

    exact: dict
    screened: dict
    panels: dict  # labelling -> the random panel's mean AUCs (the normal tail's input)
    best_screened_in: bool


def statistics(found: dict, dataset: BenchDataset, index: int, args) -> Statistics:
    """Every labelling's best (exact), best among its candidates (screened), the panel's AUCs."""
    signatures = plan(dataset, args, index)
    seeds = permutation_seeds(args.permutations, 7 + index)
    cases = (np.array(dataset.labels) == dataset.case).astype(np.int64)
    keys = [None, *seeds]
    candidates = screened_in(
        dataset.values, dataset.probesets, cases, [signatures], keys, args.candidates
    )
    panel = sorted(s.id for s in null_panel(signatures, PANEL, 11 + index))
    exact, screened, panels = {}, {}, {}
    for seed in keys:
        means = found[(index, seed)]
        exact[seed] = max(means.values())
        screened[seed] = max(means[s.id] for s in candidates[seed])
        panels[seed] = np.array([means[i] for i in panel])
    return Statistics(exact, screened, panels, screened[None] == exact[None])


def method_p(stat: Statistics, real, others: list, method: str, n_searched: int) -> float:
    """The p of labelling `real` against the labellings `others`, by one method."""
    if method == "normal tail":
        return normal_tail_p(stat.exact[real], [stat.panels[k] for k in others], n_searched)
    by = stat.exact if method == "exact" else stat.screened
    return float(selection_adjusted_p(np.array([by[real]]), np.array([by[k] for k in others]))[0])


def calibration(stats_of: list[Statistics], args: argparse.Namespace) -> dict:
    """Per method: the datasets' p of their best, and the leave-one-permutation-out p's."""
    per_dataset: dict[str, list[float]] = {m: [] for m in METHODS}
    loo: dict[str, list[float]] = {m: [] for m in METHODS}
    for stat in stats_of:
        seeds = [k for k in stat.exact if k is not None]
        for method in METHODS:
            per_dataset[method].append(method_p(stat, None, seeds, method, args.signatures))
            for j in seeds:
                others = [k for k in seeds if k != j]
                loo[method].append(method_p(stat, j, others, method, args.signatures))
    return {"per dataset": per_dataset, "leave one permutation out": loo}


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
    parser.add_argument(
        "--candidates",
        type=int,
        default=SearchParameters().null_candidates,
        help="signatures screened in per labelling (default: the product's)",
    )
    args = parser.parse_args()
    nulls, signals = null_datasets(args.each), signal_datasets()
    datasets = [*nulls, *signals]
    started = time.perf_counter()
    found, cpu = evaluate_all(datasets, args)
    evaluations = sum(len(v) for v in found.values())
    print(f"{len(nulls)} null and {len(signals)} signal datasets, {args.signatures} signatures, "
          f"{args.permutations} permutations, classifiers {args.classifiers}, {args.folds} "
          f"folds: {evaluations:,} evaluations, {cpu:.0f} CPU-s, "
          f"{time.perf_counter() - started:.0f} s wall")  # fmt: skip
    stats_of = [statistics(found, d, i, args) for i, d in enumerate(datasets)]
    null_stats = stats_of[: len(nulls)]
    for measure, by_method in calibration(null_stats, args).items():
        print(f"\n{measure}: share of p <= 0.05 | share of p <= 0.10")
        for method, values in by_method.items():
            print(f"  {method:12s} {share(values, 0.05)} | {share(values, 0.10)}")
    screened_in = sum(s.best_screened_in for s in null_stats)
    print(f"\nnull datasets whose best is screened in: {screened_in}/{len(null_stats)}")
    print("\nsignal datasets: best mean AUC, p exact | screened (best screened in?) | normal tail")
    for dataset, stat in zip(signals, stats_of[len(nulls) :]):
        others = [k for k in stat.exact if k is not None]
        ps = [method_p(stat, None, others, m, args.signatures) for m in METHODS]
        print(f"  {dataset.name:18s} {stat.exact[None]:.4f}  p {ps[0]:.3g} | {ps[1]:.3g} "
              f"({'yes' if stat.best_screened_in else 'no: ' + format(stat.screened[None], '.4f')})"
              f" | {ps[2]:.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
