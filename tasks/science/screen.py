"""Which signatures the permuted-label null evaluates: a random panel and screened candidates.

The selection-adjusted p is a permutation test of one statistic, computed the same way on the
real labels and on each permutation: the best mean AUC among the null's signatures for that
labelling. They are a fixed random panel (for the random-signature baseline) and the
`n_candidates` searched signatures whose probesets separate that labelling's groups most, by
the mean squared two-sample t of their probesets (a screen costing no classifier fit). Any
screen keeps the test exact, since it is part of the statistic; a good one keeps its power, as
the search's best is then among the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasks.science.plan import Signature, SignaturePlan, null_panel

_CHUNK_VALUES = 4_000_000  # labellings x probeset occurrences scored at once (32 MB)


@dataclass(frozen=True)
class NullDesign:
    """The ids the statistic is taken over on the real labels: the panel and the candidates."""

    panel: frozenset[int]
    screened: frozenset[int]

    def union(self, other: NullDesign) -> NullDesign:
        """Both designs' signatures (pooled batches)."""
        return NullDesign(self.panel | other.panel, self.screened | other.screened)


@dataclass(frozen=True)
class NullPlan:
    """A batch's null: its panel, and each labelling's candidates (key None: the real labels)."""

    panel: tuple[Signature, ...]
    candidates: dict[int | None, tuple[Signature, ...]]

    def evaluated(self, permutation_seed: int) -> list[Signature]:
        """The signatures evaluated on one permutation: panel and candidates, by id."""
        chosen = {s.id: s for s in (*self.panel, *self.candidates.get(permutation_seed, ()))}
        return [chosen[i] for i in sorted(chosen)]

    def design(self) -> NullDesign:
        """What the real labels' statistic is taken over."""
        return NullDesign(
            frozenset(s.id for s in self.panel),
            frozenset(s.id for s in self.candidates.get(None, ())),
        )


def permuted_cases(cases: np.ndarray, permutation_seed: int | None) -> np.ndarray:
    """The 0/1 case labels a worker uses for a permutation seed (None: unpermuted), a new array."""
    y = np.array(cases, dtype=np.int64)
    if permutation_seed is None:
        return y
    return np.random.RandomState(int(permutation_seed)).permutation(y)


def squared_t(values: np.ndarray, labellings: np.ndarray) -> np.ndarray:
    """The pooled-variance two-sample t, squared, of every column under each 0/1 row labelling.

    A column constant within both groups gets 0 (it separates nothing a classifier can use).
    """
    x = values - values.mean(axis=0)  # centred: the sums of squares below lose no digits
    n = x.shape[0]
    n1 = labellings.sum(axis=1, keepdims=True).astype(np.float64)
    n0 = n - n1
    sum1 = labellings @ x
    squares1 = labellings @ (x * x)
    total, squares = x.sum(axis=0), (x * x).sum(axis=0)
    mean1, mean0 = sum1 / n1, (total - sum1) / n0
    within = (squares1 - n1 * mean1**2) + (squares - squares1 - n0 * mean0**2)
    se2 = np.maximum(within, 0.0) / (n - 2) * (1 / n1 + 1 / n0)
    difference2 = (mean1 - mean0) ** 2
    out = np.zeros_like(se2)
    np.divide(difference2, se2, out=out, where=se2 > 1e-300)
    return out


def top_candidates(
    scores_of: np.ndarray, plan: SignaturePlan, columns: np.ndarray, k: int
) -> np.ndarray:
    """Per labelling (row of `scores_of`, squared t per column), the k best signature positions.

    A signature scores the mean of its probesets' squared t; ties go to the lower position.
    """
    n_rows, n = scores_of.shape[0], len(plan)
    genes = columns[plan.indices]
    best_pos = np.zeros((n_rows, 0), dtype=np.int64)
    best_score = np.zeros((n_rows, 0))
    per_chunk = max(1, _CHUNK_VALUES // max(1, n_rows * 9))
    for start in range(0, n, per_chunk):
        stop = min(n, start + per_chunk)
        lo, hi = plan.offsets[start], plan.offsets[stop]
        sums = np.add.reduceat(scores_of[:, genes[lo:hi]], plan.offsets[start:stop] - lo, axis=1)
        scores = sums / np.diff(plan.offsets[start : stop + 1])
        positions = np.broadcast_to(np.arange(start, stop), scores.shape)
        best_score = np.hstack([best_score, scores])
        best_pos = np.hstack([best_pos, positions])
        order = np.lexsort((best_pos, -best_score), axis=1)[:, :k]
        best_score = np.take_along_axis(best_score, order, axis=1)
        best_pos = np.take_along_axis(best_pos, order, axis=1)
    return best_pos


def plan_null(
    values: np.ndarray,
    column_names: Sequence[str],
    cases: np.ndarray,
    signatures: SignaturePlan,
    counts: tuple[int, int],
    seeds: tuple[int, Sequence[int]],
) -> NullPlan:
    """A batch's null: `counts` = (panel size, candidates), `seeds` = (batch seed, permutations).

    `values` and `cases` are the searched (discovery) samples' values and 0/1 labels.
    """
    n_panel, n_candidates = counts
    batch_seed, permutation_seeds = seeds
    panel = tuple(null_panel(signatures, n_panel, batch_seed))
    if len(panel) == len(signatures) or not n_candidates:  # every signature already evaluated
        return NullPlan(panel, {})
    keys: list[int | None] = [None, *permutation_seeds]
    labellings = np.array([permuted_cases(cases, seed) for seed in keys], dtype=np.float64)
    position = {name: i for i, name in enumerate(column_names)}
    columns = np.array([position[name] for name in signatures.probesets], dtype=np.int64)
    best = top_candidates(squared_t(values, labellings), signatures, columns, n_candidates)
    return NullPlan(
        panel, {key: tuple(signatures[int(i)] for i in row) for key, row in zip(keys, best)}
    )
