import itertools

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from tasks.io import save_tsv
from tasks.science import tables
from tasks.science.plan import Signature
from tasks.science.tables import (
    auc_interval,
    gene_evidence,
    null_means,
    null_summary,
    pooled_sd,
    random_signature_baseline,
    rank_enrichment,
    rank_sum_tail,
    records_from_results,
    selection_adjusted_p,
    selection_threshold,
    signature_table,
    signatures_needed,
    top_signature_list,
    validation_table,
)

SIGNATURES = [
    Signature(0, ("a", "b")),
    Signature(1, ("a", "c")),
    Signature(2, ("b", "c")),
    Signature(3, ("c", "d")),
]
CLASSIFIERS = ["logistic", "svm"]


def contents(order=(0, 1, 2, 3)):
    auc = {0: (0.9, 0.8), 1: (0.7, None), 2: (0.5, 0.6), 3: (0.95, 0.85)}
    return [
        {
            "slice": s + 1,
            "records": [
                {"signature": s, "classifier": c, "auc": a, "accuracy": None if a is None else 0.5}
                | ({"error": "ValueError: cannot fit"} if a is None else {})
                for c, a in zip(CLASSIFIERS, auc[s])
            ],
        }
        for s in order
    ]


def test_signature_table_ranks_by_mean_auc_and_keeps_missing():
    table = signature_table(SIGNATURES, records_from_results(contents()), CLASSIFIERS, {2})
    assert list(table["signature"]) == [3, 0, 1, 2]
    assert list(table["rank"]) == [1, 2, 3, 4]
    np.testing.assert_allclose(table["mean_auc"], [0.9, 0.85, 0.7, 0.55], rtol=1e-12)
    assert list(table["status"]) == ["ok", "ok", "partial", "slice_failed"]
    assert table.loc[table["signature"] == 1, "n_classifiers"].item() == 1


def test_failed_slice_without_records_is_listed_unranked():
    records = records_from_results(contents(order=(0, 1, 3)))
    table = signature_table(SIGNATURES, records, CLASSIFIERS, {2})
    row = table[table["signature"] == 2].iloc[0]
    assert row["status"] == "slice_failed" and pd.isna(row["rank"]) and pd.isna(row["mean_auc"])


def test_tables_are_byte_identical_whatever_the_record_order(tmp_path):
    a = signature_table(SIGNATURES, records_from_results(contents()), CLASSIFIERS, set())
    b = signature_table(
        SIGNATURES, records_from_results(contents((3, 1, 0, 2))), CLASSIFIERS, set()
    )
    save_tsv(a, tmp_path / "a.tsv")
    save_tsv(b, tmp_path / "b.tsv")
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()


def test_gene_evidence_counts_and_enrichment():
    table = signature_table(SIGNATURES, records_from_results(contents()), CLASSIFIERS, set())
    evidence = gene_evidence(table, top_fraction=0.25)  # top = signature 3 (c, d)
    assert evidence.loc["c", "n_signatures"] == 3 and evidence.loc["c", "n_top_signatures"] == 1
    assert evidence.loc["a", "n_top_signatures"] == 0
    # P(X >= 1) drawing 1 of 4 signatures when 1 contains d: 1/4
    np.testing.assert_allclose(evidence.loc["d", "enrichment_p"], 0.25, rtol=1e-12)
    np.testing.assert_allclose(evidence.loc["c", "mean_auc_containing"], (0.7 + 0.55 + 0.9) / 3)


def null_frame(values_per_permutation):
    return pd.DataFrame(
        [
            {"permutation": j, "signature": i, "mean_auc": v}
            for j, values in enumerate(values_per_permutation)
            for i, v in enumerate(values)
        ]
    )


@pytest.mark.parametrize(("observed", "p"), [(0.9, 1 / 4), (0.8, 2 / 4), (0.5, 4 / 4)])
def test_selection_adjusted_p_is_the_max_statistic_null_when_the_panel_is_every_signature(
    observed, p
):
    # Three permutations, each evaluating the same 3 searched signatures: maxima .7, .85, .6.
    null = null_frame([[0.5, 0.7, 0.6], [0.85, 0.4, 0.5], [0.6, 0.55, 0.5]])
    out = selection_adjusted_p(np.array([observed]), null, n_searched=3)
    np.testing.assert_allclose(out, [p], rtol=1e-12)


def test_selection_adjusted_p_extrapolates_a_panel_subset_to_the_best_of_all_searched():
    rng = np.random.default_rng(5)
    null = null_frame(rng.normal(0.5, 0.05, size=(19, 4)))
    groups = null.groupby("permutation")["mean_auc"]
    sd, means = np.sqrt(groups.var().mean()), groups.mean().to_numpy()
    # The best of 1000 draws from N(mean_p, sd) reaches 0.6 with probability 1 - Phi(z)^1000.
    expected = (1 + np.sum(1 - stats.norm.cdf((0.6 - means) / sd) ** 1000)) / 20
    out = selection_adjusted_p(np.array([0.6]), null, n_searched=1000)
    np.testing.assert_allclose(out, [expected], rtol=1e-9)
    # Selection makes a value harder to reach by chance: more searched, larger p.
    assert selection_adjusted_p(np.array([0.6]), null, n_searched=10)[0] < out[0]
    # The smallest attainable p is 1 / (permutations + 1).
    np.testing.assert_allclose(selection_adjusted_p(np.array([1.0]), null, 1000), [1 / 20])


def test_selection_threshold_is_where_the_adjusted_p_crosses_alpha():
    rng = np.random.default_rng(6)
    null = null_frame(rng.normal(0.5, 0.05, size=(39, 5)))
    threshold = selection_threshold(null, n_searched=300, alpha=0.05)
    p = selection_adjusted_p(np.array([threshold]), null, n_searched=300)
    np.testing.assert_allclose(p, [0.05], rtol=1e-4)
    # Nineteen permutations cannot give p below 1/20 = 0.05 exactly, so 0.04 is unreachable.
    assert np.isnan(selection_threshold(null_frame(rng.normal(0.5, 0.05, (19, 5))), 300, 0.04))


def test_random_signature_baseline_compares_real_and_permuted_distributions():
    table = pd.DataFrame({"signature": range(5), "mean_auc": [0.6, 0.7, 0.9, 0.99, np.nan]})
    null = null_frame([[0.4, 0.5], [0.5, 0.6], [0.7, 0.8]])  # the panel: signatures 0 and 1
    out = random_signature_baseline(table, null)
    assert out["n_random"] == 4 and out["n_permuted"] == 6 and out["n_permutations"] == 3
    np.testing.assert_allclose(out["random_median_auc"], 0.8)
    np.testing.assert_allclose(
        out["permuted_q95_auc"], np.quantile([0.4, 0.5, 0.5, 0.6, 0.7, 0.8], 0.95)
    )
    # The panel's means .45, .55, .75 on permuted labels against its own .65 on the real ones
    # (not the .80 of every random signature): one reaches it.
    np.testing.assert_allclose(out["panel_real_mean_auc"], 0.65)
    np.testing.assert_allclose(out["mean_auc_p"], 2 / 4)


def test_rank_enrichment_is_a_one_sided_rank_sum_test_per_probeset():
    table = signature_table(SIGNATURES, records_from_results(contents()), CLASSIFIERS, set())
    evidence = gene_evidence(table, top_fraction=0.25)
    # d is only in the best signature (3): exact P(rank sum >= best | 1 of 4) = 1/4.
    np.testing.assert_allclose(evidence.loc["d", "rank_p"], 0.25, rtol=1e-12)
    np.testing.assert_allclose(evidence.loc["d", "auc_shift"], 0.9 - (0.85 + 0.7 + 0.55) / 3)
    # c is in 3 of 4 (ranks 4, 2, 1 of 4): U = 3 of 3 pairs only if all beat a; they do not.
    c = stats.mannwhitneyu([0.9, 0.7, 0.55], [0.85], alternative="greater", method="exact")
    np.testing.assert_allclose(evidence.loc["c", "rank_p"], c.pvalue, rtol=1e-12)
    assert (evidence["rank_adj_p"] >= evidence["rank_p"]).all()


def brute_force_tail(ranks, inside):
    """P(rank sum >= observed) over every k-subset, enumerated."""
    k, observed = int(inside.sum()), ranks[inside].sum()
    sums = [sum(c) for c in itertools.combinations(ranks, k)]
    return np.mean(np.array(sums) >= observed - 1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_the_exact_rank_sum_tail_is_the_enumerated_one_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 13))
    aucs = rng.choice([0.5, 0.6, 0.6, 0.7, 0.8, 0.8, 0.8, 0.9], size=n)  # many ties
    inside = np.zeros(n, dtype=bool)
    inside[rng.choice(n, size=int(rng.integers(1, min(n, 6))), replace=False)] = True
    ranks = stats.rankdata(aucs)
    assert_allclose(rank_sum_tail(ranks, inside), brute_force_tail(ranks, inside), rtol=1e-12)


def test_without_ties_the_exact_tail_is_scipys_exact_mann_whitney():
    aucs = np.random.default_rng(3).permutation(np.linspace(0.5, 0.99, 40))
    inside = np.zeros(40, dtype=bool)
    inside[[int(np.argmax(aucs)), 7, 21]] = True
    expected = stats.mannwhitneyu(
        aucs[inside], aucs[~inside], alternative="greater", method="exact"
    )
    assert_allclose(rank_sum_tail(stats.rankdata(aucs), inside), expected.pvalue, rtol=1e-10)


def test_a_probeset_in_two_top_signatures_gets_the_exact_small_p_despite_ties():
    # CST3 after 600 golub signatures: in 2, ranked 3rd and 4th, with ties elsewhere.
    aucs = np.round(np.linspace(0.5, 0.98, 600), 3)  # 481 distinct values: ties everywhere
    order = np.argsort(-aucs, kind="stable")
    table = pd.DataFrame({"signature": np.arange(600), "mean_auc": aucs})
    members = pd.DataFrame({"probeset": "CST3", "signature": order[[2, 3]]})
    out = rank_enrichment(members, table)
    inside = np.isin(np.arange(600), order[[2, 3]])
    ranks = stats.rankdata(aucs)
    assert out.loc["CST3", "rank_test"] == "exact"
    assert_allclose(out.loc["CST3", "rank_p"], rank_sum_tail(ranks, inside), rtol=1e-12)
    assert out.loc["CST3", "rank_p"] < 1e-4  # the normal approximation gave about 8e-3
    normal = stats.mannwhitneyu(aucs[inside], aucs[~inside], alternative="greater").pvalue
    assert normal > 10 * out.loc["CST3", "rank_p"]


def test_a_costly_tail_falls_back_to_the_normal_approximation(monkeypatch):
    monkeypatch.setattr(tables, "EXACT_RANK_TEST_COST", 10)
    aucs = np.linspace(0.5, 0.9, 30)
    inside = np.zeros(30, dtype=bool)
    inside[[3, 9, 14]] = True
    assert rank_sum_tail(stats.rankdata(aucs), inside) is None
    table = pd.DataFrame({"signature": np.arange(30), "mean_auc": aucs})
    out = rank_enrichment(pd.DataFrame({"probeset": "g", "signature": [3, 9, 14]}), table)
    assert out.loc["g", "rank_test"] == "normal"


@pytest.mark.parametrize(
    ("n", "tested", "needed"), [(300, 2000, 2), (20, 2000, 7), (3, 10**6, None)]
)
def test_signatures_needed_for_a_significant_gene(n, tested, needed):
    assert signatures_needed(n, tested) == needed


def test_null_summary_describes_each_permutation():
    out = null_summary(null_frame([[0.4, 0.6], [0.5, 0.9, 0.7]]))
    assert list(out["permutation"]) == [0, 1] and list(out["n_signatures"]) == [2, 3]
    np.testing.assert_allclose(out["mean_auc_mean"], [0.5, 0.7])
    np.testing.assert_allclose(out["mean_auc_sd"], [np.std([0.4, 0.6], ddof=1), 0.2])
    np.testing.assert_allclose(out["mean_auc_best"], [0.6, 0.9])


def test_top_signatures_and_their_validation_table():
    records = records_from_results(contents())
    top = top_signature_list(SIGNATURES, records, CLASSIFIERS, 0.5)
    assert [s.id for s in top] == [3, 0]
    discovery = signature_table(SIGNATURES, records, CLASSIFIERS, set())
    held_out = records_from_results(
        [
            {
                "records": [
                    {"signature": 3, "classifier": "logistic", "auc": 0.6, "accuracy": 0.5},
                    {"signature": 3, "classifier": "svm", "auc": 0.8, "accuracy": 0.5},
                    {"signature": 0, "classifier": "logistic", "auc": 0.4, "accuracy": 0.5},
                    {"signature": 0, "classifier": "svm", "auc": 0.5, "accuracy": 0.5},
                ]
            }
        ]
    )
    table = validation_table(top, discovery, held_out, CLASSIFIERS)
    assert list(table["signature"]) == [3, 0] and list(table["discovery_rank"]) == [1, 2]
    np.testing.assert_allclose(table["discovery_mean_auc"], [0.9, 0.85])
    np.testing.assert_allclose(table["validation_mean_auc"], [0.7, 0.45])
    np.testing.assert_allclose(table["validation_auc_svm"], [0.8, 0.5])
    assert list(table["probesets"]) == ["c,d", "a,b"]
    np.testing.assert_allclose(table["optimism"], [0.9 - 0.7, 0.85 - 0.45], rtol=1e-12)
    assert "validation_auc_low" not in table  # no group sizes, no interval
    with_sizes = validation_table(top, discovery, held_out, CLASSIFIERS, (8, 16))
    low, high = auc_interval(np.array([0.7, 0.45]), 8, 16)
    np.testing.assert_allclose(with_sizes["validation_auc_low"], low, rtol=1e-12)
    np.testing.assert_allclose(with_sizes["validation_auc_high"], high, rtol=1e-12)


def empirical_auc(cases: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row's cases against its controls (no ties: continuous)."""
    return (cases[:, :, None] > controls[:, None, :]).mean(axis=(1, 2))


@pytest.mark.parametrize(("auc", "n_case", "n_control"), [(0.7, 8, 16), (0.9, 12, 12)])
def test_the_auc_interval_covers_as_stated_where_hanley_mcneil_is_exact(auc, n_case, n_control):
    # Exponential scores, control rate 1 and case rate r: AUC = 1 / (1 + r), HM's exact model.
    rng = np.random.default_rng(5)
    rate = 1 / auc - 1
    cases = rng.exponential(1 / rate, size=(4000, n_case))
    controls = rng.exponential(1.0, size=(4000, n_control))
    simulated = empirical_auc(cases, controls)
    low, high = auc_interval(np.array([auc]), n_case, n_control)
    se = (auc - low[0]) / stats.norm.ppf(0.975)  # the lower side: the upper one may be clipped
    # The formula's SE against 4,000 simulated studies' (their SD has a 1.1% standard error).
    assert_allclose(se, simulated.std(), rtol=0.05)
    assert low[0] < auc < high[0] and 0.0 <= low[0] and high[0] <= 1.0


def test_the_auc_interval_stays_within_zero_and_one():
    low, high = auc_interval(np.array([0.99, 0.02]), 3, 4)
    assert (low >= 0).all() and (high <= 1).all() and high[0] == 1.0 and low[1] == 0.0


def test_the_normal_fit_pools_spread_by_degrees_of_freedom_and_needs_some():
    # Groups of one have no spread: they do not pull the pooled SD towards 0.
    groups = [np.array([0.4, 0.6]), np.array([0.5]), np.array([0.3, 0.5, 0.7])]
    expected = np.sqrt((1 * 0.02 + 2 * 0.04) / 3)
    np.testing.assert_allclose(pooled_sd(groups), expected, rtol=1e-12)
    singletons = null_frame([[0.6], [0.5], [0.55]])
    assert np.isnan(selection_adjusted_p(np.array([0.62]), singletons, n_searched=300)).all()
    assert selection_adjusted_p(np.array([]), singletons, n_searched=300).shape == (0,)


def test_a_student_t_tail_is_heavier_than_the_normal_and_tends_to_it():
    null = null_frame([[0.50, 0.55, 0.60], [0.52, 0.58, 0.61], [0.49, 0.53, 0.57]])
    observed = np.array([0.70, 0.80, 0.95])
    normal = selection_adjusted_p(observed, null, n_searched=300)
    assert_allclose(selection_adjusted_p(observed, null, 300, tail_df=1e7), normal, rtol=1e-5)
    heavy = selection_adjusted_p(observed, null, 300, tail_df=3)
    assert (heavy >= normal).all() and heavy[-1] > normal[-1]


def test_the_threshold_is_the_smallest_value_that_reaches_alpha_on_a_stretch():
    # 19 permutations, each panel every searched signature: p = (1 + exceedances) / 20 is
    # exactly 0.05 for every value above the best permuted maximum, 0.65.
    maxima = np.linspace(0.5, 0.65, 19)
    null = null_frame([[m, 0.3] for m in maxima])
    np.testing.assert_allclose(selection_threshold(null, n_searched=2), 0.65, atol=2e-6)


def threshold_by_bisection(null, n_searched, alpha=0.05):
    """selection_threshold as first written: bisection of [0, 1] to a width of 1e-6."""
    n_perm = null["permutation"].nunique()
    if n_perm == 0 or 1 / (n_perm + 1) > alpha:
        return float("nan")

    def reaches(value):
        return bool(selection_adjusted_p(np.array([value]), null, n_searched)[0] <= alpha)

    if not reaches(1.0):
        return float("nan")
    low, high = 0.0, 1.0
    while high - low > 1e-6:
        middle = (low + high) / 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


@pytest.mark.parametrize(
    ("n_permutations", "panel", "n_searched", "alpha", "centre"),
    [
        (39, 5, 5, 0.05, 0.5),  # the panel is every signature: the exact null
        (19, 4, 4, 0.05, 0.6),  # ... at the smallest attainable p
        (99, 8, 8, 0.1, 0.5),
        (39, 5, 300, 0.05, 0.5),  # a panel subset: the normal fit
        (40, 20, 1000, 0.05, 0.55),
        (19, 3, 50, 0.1, 0.4),
    ],
)
def test_selection_threshold_agrees_with_the_bisection_it_replaces(
    n_permutations, panel, n_searched, alpha, centre
):
    rng = np.random.default_rng(n_permutations * panel)
    null = null_frame(np.round(rng.normal(centre, 0.05, (n_permutations, panel)), 6))
    new, old = (
        selection_threshold(null, n_searched, alpha),
        threshold_by_bisection(null, n_searched, alpha),
    )
    # The bisection stops on a grid of 2**-20 at the first point that reaches alpha; the
    # new value is the smallest float that does (exact null) or the root to 1e-12 (fit).
    assert 0.5 < new < 1 and -1e-11 <= old - new <= 2**-20 + 1e-11
    p = selection_adjusted_p(np.array([new]), null, n_searched)[0]
    assert p <= alpha * (1 + 1e-9)
    below = selection_adjusted_p(np.array([new - 1e-9]), null, n_searched)[0]
    assert below > alpha * (1 - 1e-6)


def test_the_mean_auc_is_the_mean_over_three_classifiers_not_another_average():
    # Three classifiers that disagree: mean .7, median .6 for signature 0.
    aucs = {0: (0.9, 0.6, 0.6), 1: (0.8, 0.75, 0.4)}
    names = ["forest", "logistic", "svm"]
    records = records_from_results(
        [
            {
                "records": [
                    {"signature": s, "classifier": c, "auc": a, "accuracy": 0.5}
                    for s, values in aucs.items()
                    for c, a in zip(names, values)
                ]
            }
        ]
    )
    table = signature_table(SIGNATURES[:2], records, names, set())
    assert list(table["signature"]) == [0, 1]  # by mean; the medians (.6, .75) rank 1 first
    np.testing.assert_allclose(table["mean_auc"], [0.7, 0.65], rtol=1e-12)
    permuted = records.assign(permutation=7)
    np.testing.assert_allclose(null_means(permuted)["mean_auc"], [0.7, 0.65], rtol=1e-12)
