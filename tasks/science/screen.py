"""Which signatures the permuted-label null evaluates: a random panel and screened candidates.

The selection-adjusted p is a permutation test of one statistic, computed the same way on the
real labels and on each permutation: the best mean AUC among the `n_candidates` signatures of
the whole (pooled) search whose probesets separate that labelling's groups most, by the mean
squared two-sample t of their probesets (a screen costing no classifier fit). Any screen keeps
the test exact, since it is part of the statistic; a good one keeps its power, as the search's
best is then among the candidates. A fixed random panel, on the search's first permutations,
serves the random-signature baseline. Each batch of an extended search adds permutations: the
screen being over the pooled search, a new permutation costs `n_candidates` evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tasks.science.plan import Signature, SignaturePlan, null_panel

_CHUNK_VALUES = 4_000_000  # labellings x probeset occurrences scored at once (32 MB)


@dataclass(frozen=True)
class NullDesign:
    """Which signatures the null's statistics and its baseline are taken over."""

    panel: frozenset[int]  # the random panel's ids (the baseline's signatures)
    panel_permutations: frozenset[int]  # the seeds the panel is evaluated on
    screened: Mapping[int | None, frozenset[int]]  # per labelling (None: the real labels)


@dataclass(frozen=True)
class NullPlan:
    """A batch's null job: the signatures to evaluate per permutation seed, and the design."""

    evaluate: dict[int, tuple[Signature, ...]]
    design: NullDesign


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
) -> tuple[np.ndarray, np.ndarray]:
    """Per labelling (row of `scores_of`, squared t per column), the k best positions, scores.

    A signature scores the mean of its probesets' squared t; ties go to the lower position.
    """
    n_rows, n = scores_of.shape[0], len(plan)
    genes = columns[plan.indices]
    best_pos = np.zeros((n_rows, 0), dtype=np.int64)
    best_score = np.zeros((n_rows, 0))
    per_signature = len(plan.indices) / max(1, n)  # probesets a signature, on average
    per_chunk = max(1, int(_CHUNK_VALUES / max(1.0, n_rows * per_signature)))
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
    return best_pos, best_score


def screened_in(
    values: np.ndarray,
    column_names: Sequence[str],
    cases: np.ndarray,
    plans: Sequence[SignaturePlan],
    keys: Sequence[int | None],
    k: int,
) -> dict[int | None, tuple[Signature, ...]]:
    """Per labelling (a permutation seed, None: the real labels), the k best of all `plans`.

    `values` and `cases` are the searched (discovery) samples' values and 0/1 labels; ties go
    to the lower signature id.
    """
    labellings = np.array([permuted_cases(cases, key) for key in keys], dtype=np.float64)
    t2 = squared_t(values, labellings)
    position = {name: i for i, name in enumerate(column_names)}
    ids, scores, found = [], [], []
    for plan in plans:
        columns = np.array([position[name] for name in plan.probesets], dtype=np.int64)
        best, best_score = top_candidates(t2, plan, columns, k)
        ids.append(best + plan.first_id)
        scores.append(best_score)
        found.append((plan, best))
    all_ids, all_scores = np.hstack(ids), np.hstack(scores)
    order = np.lexsort((all_ids, -all_scores), axis=1)[:, :k]
    chosen = np.take_along_axis(all_ids, order, axis=1)
    signature_of = {
        int(i) + plan.first_id: plan[int(i)] for plan, best in found for i in np.unique(best)
    }
    return {key: tuple(signature_of[int(i)] for i in row) for key, row in zip(keys, chosen)}


def plan_null(
    screen_input: tuple[np.ndarray, Sequence[str], np.ndarray],
    plans: Sequence[SignaturePlan],
    counts: tuple[int, int],
    seeds: tuple[Sequence[int], Sequence[int], int],
    evaluated: Mapping[int, frozenset[int]],
) -> NullPlan:
    """The null job of the last of `plans` (the search's batches, in order), and its design.

    `counts` = (panel size, candidates); `seeds` = (each batch's seed, the search's
    permutation seeds, how many of the first carry the panel); `evaluated` = the signature
    ids earlier batches evaluated per seed, not asked again.
    """
    n_panel, n_candidates = counts
    batch_seeds, permutation_seeds, n_panel_seeds = seeds
    panels = [null_panel(plan, n_panel, seed) for plan, seed in zip(plans, batch_seeds)]
    on_panel = frozenset(permutation_seeds[:n_panel_seeds])
    if len(panels[-1]) == len(plans[-1]) or not n_candidates:  # the panel alone
        screened: dict[int | None, tuple[Signature, ...]] = {}
    else:
        values, column_names, cases = screen_input
        keys = [None, *permutation_seeds]
        screened = screened_in(values, column_names, cases, plans, keys, n_candidates)
    evaluate = {}
    for seed in permutation_seeds:
        chosen = {s.id: s for s in screened.get(seed, ())}
        chosen.update({s.id: s for s in panels[-1]} if seed in on_panel else {})
        done = evaluated.get(seed, frozenset())
        evaluate[seed] = tuple(chosen[i] for i in sorted(chosen) if i not in done)
    design = NullDesign(
        frozenset(s.id for panel in panels for s in panel),
        on_panel,
        {key: frozenset(s.id for s in chosen) for key, chosen in screened.items()},
    )
    return NullPlan(evaluate, design)


def statistic_ids(design: NullDesign, key: int | None) -> frozenset[int]:
    """The signatures a labelling's statistic is the best of: its candidates, else the panel."""
    return design.screened.get(key, frozenset()) if design.screened else design.panel
