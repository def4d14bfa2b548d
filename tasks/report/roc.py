"""ROC curves of the top signatures from their pooled out-of-fold scores (plain functions).

A signature's curve is the vertical average of its classifiers' curves: at every false
positive rate k / n_control, the mean of their true positive rates. The classifiers' curves
are piecewise linear between those rates, so the averaged curve's area is exactly the mean
of their areas: the signature's mean AUC, as the search computed it (pooled out of fold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve


@dataclass(frozen=True)
class RocCurve:
    """One signature's classifier-averaged ROC curve and its area."""

    signature: int
    rank: int
    probesets: list[str]
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float  # the area under (fpr, tpr): the mean of its classifiers' pooled AUCs
    mean_auc: float  # the signature table's mean AUC (records to 6 digits), for comparison
    n_classifiers: int


def tpr_limits(fpr: np.ndarray, tpr: np.ndarray, n_control: int) -> tuple[np.ndarray, np.ndarray]:
    """A ROC curve's true positive rate just before and just after each k / n_control.

    A vertical step (cases tied above the next control) has two values at one rate; a tie
    of cases and controls is a diagonal segment, interpolated.
    """
    steps = np.rint(fpr * n_control).astype(np.int64)
    at, first = np.unique(steps, return_index=True)  # at[0] = 0 and at[-1] = n_control
    last = np.append(first[1:], len(steps)) - 1
    low, high = tpr[first], tpr[last]
    grid = np.arange(n_control + 1)
    position = np.searchsorted(at, grid)
    exact = at[np.minimum(position, len(at) - 1)] == grid
    # Between two rates the curve has: the line from the last point of one to the next's first.
    after = np.clip(position, 1, len(at) - 1)
    share = (grid - at[after - 1]) / (at[after] - at[after - 1])
    between = high[after - 1] + share * (low[after] - high[after - 1])
    before = np.where(exact, low[np.minimum(position, len(at) - 1)], between)
    beyond = np.where(exact, high[np.minimum(position, len(at) - 1)], between)
    return before, beyond


def mean_roc(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The vertical average of the ROC curves of `scores` (one array per classifier) on `y`."""
    n_control = int((y == 0).sum())
    limits = []
    for score in scores:
        fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
        limits.append(tpr_limits(fpr, tpr, n_control))
    before = np.mean([b for b, _ in limits], axis=0)
    beyond = np.mean([a for _, a in limits], axis=0)
    rates = np.arange(n_control + 1) / n_control
    return np.repeat(rates, 2), np.column_stack([before, beyond]).ravel()


def area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under a curve by the trapezoidal rule (numpy 1.26 has no `trapezoid`)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_curves(predictions: pd.DataFrame, table: pd.DataFrame, case: str) -> list[RocCurve]:
    """Each predicted signature's averaged ROC curve, in the signature table's rank order."""
    by_id = table.dropna(subset=["rank"]).set_index("signature")
    ranks = dict(zip(by_id.index.astype(int), by_id["rank"].astype(int)))
    curves = []
    for signature in sorted(set(predictions["signature"]), key=ranks.__getitem__):
        rows = predictions[predictions["signature"] == signature]
        groups = [g for _, g in rows.groupby("classifier", sort=True)]
        y = (groups[0]["phenotype"].to_numpy() == case).astype(np.int64)
        fpr, tpr = mean_roc(y, [g["score"].to_numpy() for g in groups])
        row = by_id.loc[signature]
        curves.append(
            RocCurve(
                signature=int(signature),
                rank=ranks[signature],
                probesets=str(row["probesets"]).split(","),
                fpr=fpr,
                tpr=tpr,
                auc=area(fpr, tpr),
                mean_auc=float(row["mean_auc"]),
                n_classifiers=len(groups),
            )
        )
    return curves
