import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from tasks.science import screen
from tasks.science.plan import null_panel, plan_compact
from tasks.science.screen import (
    NullDesign,
    permuted_cases,
    plan_null,
    squared_t,
    top_candidates,
)
from tasks.science.worker import slice_labels


def toy(seed=0, n=24, genes=60):
    """Values with a few informative columns, 0/1 labels, and their column names."""
    rng = np.random.default_rng(seed)
    cases = np.array([1] * (n // 3) + [0] * (n - n // 3))
    values = rng.normal(8.0, 1.0, size=(n, genes))
    values[:, :4] += 1.5 * cases[:, None]
    return values, cases, [f"g{i}" for i in range(genes)]


def brute_force_top(values, names, labels, plan, k):
    """Each signature's mean squared scipy t, sorted best first, ties by position."""
    t2 = stats.ttest_ind(values[labels == 1], values[labels == 0]).statistic ** 2
    column = {name: i for i, name in enumerate(names)}
    scores = [np.mean([t2[column[p]] for p in s.probesets]) for s in plan]
    return sorted(range(len(plan)), key=lambda i: (-scores[i], i))[:k]


def test_squared_t_is_scipys_pooled_t_squared_under_each_labelling():
    values, cases, _ = toy()
    labellings = np.array([permuted_cases(cases, seed) for seed in (None, 1, 2, 3)])
    out = squared_t(values, labellings.astype(float))
    for row, labels in zip(out, labellings):
        expected = stats.ttest_ind(values[labels == 1], values[labels == 0]).statistic ** 2
        assert_allclose(row, expected, rtol=1e-9)


def test_a_constant_column_separates_nothing():
    values, cases, _ = toy()
    values[:, 5] = 3.0
    assert squared_t(values, cases[None, :].astype(float))[0, 5] == 0.0


@pytest.mark.parametrize("held_out", [[], [20, 21, 22, 23]])
def test_the_screens_permutations_are_the_workers(held_out):
    labels = np.array(["AML"] * 8 + ["ALL"] * 16)
    rows = [i for i in range(24) if i not in held_out]
    config = {"case": "AML", "cv_folds": 3, "rows": rows, "validation_rows": held_out}
    cases = (labels[rows] == "AML").astype(np.int64)
    for seed in (None, 7, 123456789):
        worker_y = slice_labels(labels, config, seed).y[: len(rows)]
        np.testing.assert_array_equal(permuted_cases(cases, seed), worker_y)


@pytest.mark.parametrize("chunk", [10**9, 50, 7])
def test_top_candidates_are_the_brute_force_ones_in_any_chunking(monkeypatch, chunk):
    monkeypatch.setattr(screen, "_CHUNK_VALUES", chunk)
    values, cases, names = toy(1)
    plan = plan_compact(names, 200, 2, 6, seed=3)
    labellings = np.array([permuted_cases(cases, seed) for seed in (None, 5, 6)])
    columns = np.arange(len(names))
    best = top_candidates(squared_t(values, labellings.astype(float)), plan, columns, 7)
    for row, labels in zip(best, labellings):
        assert row.tolist() == brute_force_top(values, names, labels, plan, 7)


def test_ties_go_to_the_lower_position():
    values, cases, names = toy(2)
    plan = plan_compact(names[:3], 40, 1, 1, seed=1)  # 40 one-probeset signatures of 3: ties
    best = top_candidates(squared_t(values, cases[None, :].astype(float)), plan, np.arange(3), 5)
    expected = brute_force_top(values, names[:3], cases, plan, 5)
    assert best[0].tolist() == expected
    assert len({plan[i].probesets for i in expected}) == 1  # five of one probeset, in id order


def test_the_real_labels_are_screened_as_a_permutation_would_be():
    values, cases, names = toy(3)
    plan = plan_compact(names, 150, 3, 5, seed=4)
    null = plan_null(values, names, cases, plan, (5, 4), (11, [21, 22]))
    assert list(null.panel) == null_panel(plan, 5, 11)
    for key in (None, 21, 22):
        labels = permuted_cases(cases, key)
        # A permutation's labels given as the real ones get that permutation's candidates.
        again = plan_null(values, names, labels, plan, (5, 4), (11, []))
        assert again.candidates[None] == null.candidates[key]
        assert [s.id for s in null.candidates[key]] == brute_force_top(
            values, names, labels, plan, 4
        )
    # The informative columns g0-g3 are what the real labels' candidates hold.
    assert all(set(s.probesets) & {"g0", "g1", "g2", "g3"} for s in null.candidates[None])
    evaluated = null.evaluated(21)
    ids = [s.id for s in evaluated]
    assert ids == sorted({s.id for s in (*null.panel, *null.candidates[21])})
    assert null.design() == NullDesign(
        frozenset(s.id for s in null.panel), frozenset(s.id for s in null.candidates[None])
    )


def test_without_a_panel_subset_or_candidates_nothing_is_screened():
    values, cases, names = toy(4)
    plan = plan_compact(names, 30, 3, 5, seed=4)
    every = plan_null(values, names, cases, plan, (0, 5), (1, [2]))
    assert len(every.panel) == 30 and every.candidates == {}
    assert [s.id for s in every.evaluated(2)] == list(range(30))
    panel_only = plan_null(values, names, cases, plan, (5, 0), (1, [2]))
    assert len(panel_only.evaluated(2)) == 5 and panel_only.design().screened == frozenset()


def test_the_screen_maps_the_plans_probesets_to_the_datasets_columns():
    values, cases, names = toy(5)
    plan = plan_compact(names[::-1], 80, 2, 4, seed=2)  # another order than the columns
    null = plan_null(values, names, cases, plan, (3, 4), (1, []))
    assert [s.id for s in null.candidates[None]] == brute_force_top(values, names, cases, plan, 4)
