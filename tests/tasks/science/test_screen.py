import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from tasks.science import screen
from tasks.science.plan import null_panel, plan_batch_compact, plan_compact
from tasks.science.screen import (
    permuted_cases,
    plan_null,
    screened_in,
    squared_t,
    statistic_ids,
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
    best, _ = top_candidates(squared_t(values, labellings.astype(float)), plan, columns, 7)
    for row, labels in zip(best, labellings):
        assert row.tolist() == brute_force_top(values, names, labels, plan, 7)


def test_ties_go_to_the_lower_position():
    values, cases, names = toy(2)
    plan = plan_compact(names[:3], 40, 1, 1, seed=1)  # 40 one-probeset signatures of 3: ties
    t2 = squared_t(values, cases[None, :].astype(float))
    best, scores = top_candidates(t2, plan, np.arange(3), 5)
    expected = brute_force_top(values, names[:3], cases, plan, 5)
    assert best[0].tolist() == expected
    assert len({plan[i].probesets for i in expected}) == 1  # five of one probeset, in id order
    assert_allclose(scores[0], t2[0, plan.indices[expected]])


def brute_force_pooled_top(values, names, labels, plans, k):
    """The k best of several plans by mean squared scipy t, ties by id."""
    t2 = stats.ttest_ind(values[labels == 1], values[labels == 0]).statistic ** 2
    column = {name: i for i, name in enumerate(names)}
    scores = {s.id: np.mean([t2[column[p]] for p in s.probesets]) for plan in plans for s in plan}
    return sorted(scores, key=lambda i: (-scores[i], i))[:k]


def batches(names, n=60, count=3):
    """A search's first `count` batches of n signatures (ids following each other)."""
    return [plan_batch_compact(names, n, 3, 5, seed=4, batch=b) for b in range(1, count + 1)]


def test_the_screen_takes_the_best_of_every_batch_and_the_real_labels_as_a_permutation():
    values, cases, names = toy(3)
    plans = batches(names)
    keys = [None, 21, 22]
    found = screened_in(values, names, cases, plans, keys, 4)
    for key in keys:
        labels = permuted_cases(cases, key)
        assert [s.id for s in found[key]] == brute_force_pooled_top(values, names, labels, plans, 4)
        # A permutation's labels given as the real ones get that permutation's candidates.
        assert screened_in(values, names, labels, plans, [None], 4)[None] == found[key]
    assert all(s in plans[s.id // 60] for s in found[None])  # the signatures themselves
    # The informative columns g0-g3 are what the real labels' candidates hold.
    assert all(set(s.probesets) & {"g0", "g1", "g2", "g3"} for s in found[None])


def test_a_batchs_null_asks_only_what_no_earlier_batch_evaluated():
    values, cases, names = toy(4)
    plans = batches(names)
    seeds = [31, 32, 33, 34, 35, 36]  # 2 permutations per batch; the panel on the first 2
    screen_input = (values, names, cases)
    screened = screened_in(values, names, cases, plans, [None, *seeds], 4)
    done = {31: frozenset(s.id for s in screened[31][:2]), 35: frozenset({0, 1})}
    null = plan_null(screen_input, plans, (3, 4), ([7, 8, 9], seeds, 2), done)
    panel = null_panel(plans[-1], 3, 9)
    for seed in seeds:
        wanted = {s.id for s in screened[seed]} | ({s.id for s in panel} if seed < 33 else set())
        asked = [s.id for s in null.evaluate[seed]]
        assert asked == sorted(wanted - done.get(seed, frozenset()))
    design = null.design
    assert design.panel == {s.id for p, b in zip(plans, [7, 8, 9]) for s in null_panel(p, 3, b)}
    assert design.panel_permutations == {31, 32}
    assert design.screened == {k: frozenset(s.id for s in v) for k, v in screened.items()}
    assert statistic_ids(design, None) == design.screened[None]


def test_without_a_screen_the_statistic_is_the_panels_best():
    values, cases, names = toy(5)
    plans = batches(names, 30, 1)
    every = plan_null((values, names, cases), plans, (0, 5), ([1], [2], 1), {})
    assert [s.id for s in every.evaluate[2]] == list(range(30)) and every.design.screened == {}
    panel_only = plan_null((values, names, cases), plans, (5, 0), ([1], [2], 1), {})
    assert len(panel_only.evaluate[2]) == 5
    assert statistic_ids(panel_only.design, 2) == panel_only.design.panel


def test_the_screen_maps_the_plans_probesets_to_the_datasets_columns():
    values, cases, names = toy(6)
    plan = plan_compact(names[::-1], 80, 2, 4, seed=2)  # another order than the columns
    found = screened_in(values, names, cases, [plan], [None], 4)
    expected = brute_force_pooled_top(values, names, cases, [plan], 4)
    assert [s.id for s in found[None]] == expected
