"""tasks.science.counts against edgeR 3.40.2 / limma 3.54.1 (R 4.2.2).

The references are tables that counts_reference.R wrote next to this file (rerun it with
`cd tests/tasks/science && Rscript counts_reference.R`); no R is needed here. Tolerances,
against what this machine reached (numpy 2.0, x86-64):

- kept genes: the identical set;
- TMM norm factors and voom's E: rtol 1e-14 (reached: identical doubles, E within 2e-16);
- voom's weights: rtol 1e-12 (reached: 5e-14 on the stored genes, 1.1e-13 over all kept
  genes; they go through destats.lm_fit's sigma and the power functions);
- lowess: rtol 1e-12 (reached: identical doubles in every case);
- the voom + limma table: rtol 1e-6 (reached: 3e-10 on logFC and t, 5e-12 on the rest).
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.science.counts import (
    CountsPrepared,
    count_problem,
    filter_by_expr,
    lowess,
    prepare_counts,
    tmm_factors,
    voom,
)
from tasks.science.destats import limma_table

HERE = Path(__file__).parent
CASES = ["main", "group", "tmm"]  # ~ batch + group (12 samples), ~ group (3 vs 4), ~ group (TMM)
TABLE = ["logFC", "AveExpr", "t", "P.Value", "adj.P.Val", "B"]


def _read(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A reference dataset's counts (genes x samples, as R) and design (samples x columns)."""
    counts = pd.read_csv(HERE / f"counts_{name}.tsv", sep="\t", index_col="gene")
    design = pd.read_csv(HERE / f"counts_{name}_design.tsv", sep="\t", index_col="sample")
    assert list(design.index) == list(counts.columns)
    return counts, design.to_numpy(dtype=float)


@pytest.fixture(scope="module")
def prepared() -> dict[str, tuple[pd.DataFrame, np.ndarray, CountsPrepared]]:
    out = {}
    for name in CASES:
        counts, design = _read(name)
        out[name] = (counts, design, prepare_counts(counts.to_numpy(dtype=float).T, design))
    return out


@pytest.mark.parametrize("name", CASES)
def test_filter_keeps_the_genes_r_keeps(prepared, name):
    counts, _, prep = prepared[name]
    kept = (HERE / f"counts_{name}_kept.txt").read_text().split()
    assert list(counts.index[prep.keep]) == kept
    assert 0 < len(kept) < len(counts)  # the filter dropped some, kept most


@pytest.mark.parametrize("name", CASES)
def test_norm_factors_and_library_sizes_match_r(prepared, name):
    counts, _, prep = prepared[name]
    norm = pd.read_csv(HERE / f"counts_{name}_norm.tsv", sep="\t")
    np.testing.assert_allclose(prep.norm_factors, norm["norm_factors"], rtol=1e-14)
    effective = norm["lib_size"] * norm["norm_factors"]  # DGEList's, after keep.lib.sizes=FALSE
    np.testing.assert_allclose(prep.lib_size, effective, rtol=1e-14)
    unfiltered = tmm_factors(counts.to_numpy(dtype=float).T)
    np.testing.assert_allclose(unfiltered, norm["tmm_all"], rtol=1e-14)


def test_tmm_takes_the_sqrt_reference_when_most_upper_quartiles_are_zero():
    counts = pd.read_csv(HERE / "counts_sparse.tsv", sep="\t", index_col="gene")
    norm = pd.read_csv(HERE / "counts_sparse_norm.tsv", sep="\t")
    np.testing.assert_allclose(
        tmm_factors(counts.to_numpy(dtype=float).T), norm["tmm_all"], rtol=1e-14
    )


@pytest.mark.parametrize("name", CASES)
def test_voom_matches_r(prepared, name):
    counts, _, prep = prepared[name]
    ref = pd.read_csv(HERE / f"counts_{name}_voom.tsv", sep="\t")
    genes = {g: j for j, g in enumerate(counts.index[prep.keep])}
    samples = {s: i for i, s in enumerate(counts.columns)}
    rows = ref["sample"].map(samples).to_numpy()
    cols = ref["gene"].map(genes).to_numpy()
    np.testing.assert_allclose(prep.log_cpm[rows, cols], ref["E"], rtol=1e-14)
    np.testing.assert_allclose(prep.weights[rows, cols], ref["weight"], rtol=1e-12)


@pytest.mark.parametrize("name", ["main", "group"])
def test_limma_on_voom_matches_r_top_table(prepared, name):
    counts, design, prep = prepared[name]
    ref = pd.read_csv(HERE / f"counts_{name}_toptable.tsv", sep="\t")
    assert list(ref["gene"]) == list(counts.index[prep.keep])
    coef = design.shape[1] - 1  # the group column, last in model.matrix(~ [batch +] group)
    got = limma_table(prep.log_cpm, design, coef, weights=prep.weights)
    for column in TABLE:
        np.testing.assert_allclose(got[column], ref[column], rtol=1e-6, err_msg=column)


def _lowess_cases() -> list[tuple[str, float, int, float | None]]:
    cases = pd.read_csv(HERE / "counts_lowess_cases.tsv", sep="\t")
    return [
        (r.case, float(r.f), int(r.iter), None if np.isnan(r.delta) else float(r.delta))
        for r in cases.itertuples()
    ]


@pytest.mark.parametrize(("case", "f", "iterations", "delta"), _lowess_cases())
def test_lowess_matches_r(case, f, iterations, delta):
    data = pd.read_csv(HERE / "counts_lowess.tsv", sep="\t")
    data = data[data["case"] == case]
    x, y = data["x"].to_numpy(), data["y"].to_numpy()
    xs, fit = lowess(x, y, f, iterations, delta)
    np.testing.assert_array_equal(xs, np.sort(x))
    scale = np.max(np.abs(data["fit"]))
    np.testing.assert_allclose(fit, data["fit"], rtol=1e-12, atol=1e-15 * scale)


def test_lowess_interpolates_within_delta_and_copies_ties():
    x = np.array([0.0, 1.0, 1.0, 2.0, 3.0, 10.0])
    y = np.array([0.0, 1.0, 3.0, 2.0, 9.0, 4.0])
    _, fit = lowess(x, y, f=1.0, iterations=0, delta=5.0)
    assert fit[1] == fit[2]  # tied x, one value
    # Fits at x = 0, at 3 (the last point within delta) and at 10; 1 and 2 lie on the line.
    np.testing.assert_allclose(fit[1:4], fit[0] + (fit[4] - fit[0]) * np.array([1, 1, 2]) / 3)
    # R 4.2.2: lowess(c(0, 1, 1, 2, 3, 10), c(0, 1, 3, 2, 9, 4), f = 1, iter = 0, delta = 5)
    r = [-0.73490382409462685, 1.9632531973469283, 1.9632531973469283, 4.6614102187884834]
    np.testing.assert_allclose(fit, r + [7.3595672402300396, 4.1259091820536513], rtol=1e-14)


def test_lowess_checks_its_arguments_and_leaves_them_alone():
    x, y = np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 4.0])
    for bad in [{"f": 0.0}, {"f": np.inf}, {"iterations": -1}, {"delta": -1.0}]:
        with pytest.raises(ValueError):
            lowess(x, y, **bad)
    lowess(x, y)
    np.testing.assert_array_equal(x, [3.0, 1.0, 2.0])
    assert lowess(np.array([1.0]), np.array([5.0]))[1].tolist() == [5.0]


def _with_filler(genes: list[list[float]], lib_size: list[float]) -> np.ndarray:
    """Samples x genes: the given genes, and a last one that brings each library to lib_size."""
    m = np.array(genes, dtype=float).T
    return np.column_stack([m, np.array(lib_size) - m.sum(axis=1)])


TWO_BY_TWO = np.column_stack([np.ones(4), [0, 0, 1, 1]])


def test_filter_keeps_a_count_exactly_at_the_cutoff_as_r_does():
    # Libraries of 1000: the cutoff is 10 / 1000 * 1e6 = 10000 CPM and 10 counts give
    # 10 * (1e6 / 1000) = 10000 exactly, so a gene with 10 in 2 samples (the smaller group)
    # is kept and one with 10, 9, 9, 9 is not.
    counts = _with_filler([[10, 10, 0, 0], [10, 9, 9, 9], [10, 10, 10, 10]], [1000] * 4)
    assert filter_by_expr(counts, TWO_BY_TWO).tolist() == [True, False, True, True]
    # Libraries of 1001: 10 * (1e6 / 1001) is one rounding below 10 / 1001 * 1e6, so edgeR
    # 3.40.2 drops even a gene with 10 counts in every sample; so must we.
    counts = _with_filler([[10, 10, 0, 0], [10, 9, 9, 9], [10, 10, 10, 10]], [1001] * 4)
    assert filter_by_expr(counts, TWO_BY_TWO).tolist() == [False, False, False, True]


def test_filter_needs_a_total_of_15_and_scales_the_cutoff_by_library():
    # Median library 1250: 8000 CPM, i.e. 4 counts in a library of 500; totals 15 and 14.
    counts = _with_filler([[4, 4, 4, 3], [4, 4, 3, 3]], [500, 500, 2000, 2000])
    assert filter_by_expr(counts, TWO_BY_TWO).tolist() == [True, False, True]


def test_filter_asks_large_groups_for_ten_plus_70_percent_of_the_rest():
    # 12 vs 12: the smallest group 12 becomes 10 + 2 * 0.7 = 11.4 samples, so 12 are needed.
    design = np.column_stack([np.ones(24), np.repeat([0, 1], 12)])
    genes = [[10] * 12 + [0] * 12, [10] * 11 + [0] * 13]
    assert filter_by_expr(_with_filler(genes, [1000] * 24), design).tolist() == [True, False, True]


def test_tmm_of_proportional_columns_is_one():
    genes = np.arange(1, 51, dtype=float)
    np.testing.assert_array_equal(tmm_factors(np.vstack([genes, genes, genes])), [1, 1, 1])
    np.testing.assert_array_equal(tmm_factors(np.vstack([genes, 2 * genes])), [1, 1])
    np.testing.assert_array_equal(tmm_factors(genes[None, :]), [1])


def test_tmm_trims_a_dominant_gene_and_ignores_all_zero_genes():
    # Sample c is a with one gene 20 times up: trimmed away, c's 19 other genes match a's, so
    # TMM's effective library sizes agree and the factors multiply to 1.
    a = np.full(20, 100.0)
    c = a.copy()
    c[-1] = 2000.0
    counts = np.vstack([a, a, c])
    f = tmm_factors(counts)
    np.testing.assert_allclose(
        counts.sum(axis=1) * f, np.full(3, (counts.sum(axis=1) * f)[0]), rtol=1e-14
    )
    assert np.prod(f) == pytest.approx(1.0, rel=1e-14)
    padded = np.column_stack([np.zeros((3, 2)), counts, np.zeros((3, 1))])
    np.testing.assert_array_equal(tmm_factors(padded), f)


def test_prepare_counts_leaves_its_inputs_alone_and_is_frozen(prepared):
    counts, design = _read("group")
    values = counts.to_numpy(dtype=float).T
    before, design_before = values.copy(), design.copy()
    prep = prepare_counts(values, design)
    np.testing.assert_array_equal(values, before)
    np.testing.assert_array_equal(design, design_before)
    assert prep.log_cpm.shape == prep.weights.shape == (values.shape[0], int(prep.keep.sum()))
    with pytest.raises(FrozenInstanceError):
        prep.keep = prep.keep  # type: ignore[misc]


def test_voom_without_residual_df_gives_unit_weights():
    counts = np.array([[5.0, 7.0, 0.0], [9.0, 1.0, 3.0]])
    e, w = voom(counts, np.column_stack([np.ones(2), [0, 1]]), counts.sum(axis=1))
    np.testing.assert_array_equal(w, np.ones((2, 3)))
    np.testing.assert_allclose(e[0, 0], np.log2(5.5 / 13 * 1e6))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([[0, 1], [2, 3]], None),
        (np.array([[0, 1], [2, -3]], dtype=np.int64), (1, 1, "negative count -3")),
        ([[0, 2.5], [-1, 0]], (0, 1, "non-integer count 2.5")),  # row-major: (0, 1) first
        ([[0, 0], [-1, 2.5]], (1, 0, "negative count -1")),
        ([[-0.5]], (0, 0, "negative count -0.5")),
        ([[1, np.nan]], (0, 1, "non-integer count nan")),
        ([[np.inf, 1]], (0, 0, "non-integer count inf")),
        ([[3, -np.inf]], (0, 1, "negative count -inf")),
        ([[1e-9, 0]], (0, 0, "non-integer count 1e-09")),
        ([[1e15, 2.0000001]], (0, 1, "non-integer count 2.0000001")),
    ],
)
def test_count_problem(values, expected):
    assert count_problem(np.asarray(values)) == expected
