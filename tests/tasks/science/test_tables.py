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
    capped_selection_p,
    gene_evidence,
    null_maxima,
    null_means,
    null_statistic,
    null_summary,
    predictions_from_results,
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


def brute_force_p(value, maxima):
    """(1 + permutations whose best reaches the value) / (permutations + 1), one at a time."""
    return (1 + sum(1 for m in maxima if m >= value)) / (len(maxima) + 1)


@pytest.mark.parametrize(("observed", "p"), [(0.9, 1 / 4), (0.85, 2 / 4), (0.5, 4 / 4)])
def test_selection_adjusted_p_is_the_permutation_test_of_each_permutations_best(observed, p):
    # Three permutations, each with its own signatures evaluated: maxima .7, .85, .6.
    null = null_frame([[0.5, 0.7, 0.6], [0.85, 0.4, 0.5], [0.6, 0.55, 0.5]])
    maxima = null_maxima(null)
    assert_allclose(maxima, [0.7, 0.85, 0.6])
    assert_allclose(selection_adjusted_p(np.array([observed]), maxima), [p], rtol=1e-12)
    rng = np.random.default_rng(2)
    many, values = rng.uniform(0.4, 0.9, 39), rng.uniform(0.3, 1.0, 50)
    expected = [brute_force_p(v, many) for v in values]
    assert_allclose(selection_adjusted_p(values, many), expected, rtol=1e-12)
    assert np.isnan(selection_adjusted_p(np.array([0.7]), np.array([]))).all()


def test_a_value_above_the_real_labels_statistic_gets_the_statistics_p():
    maxima = np.array([0.6, 0.7, 0.8, 0.9])
    # The best signature (0.95) was not screened in: the statistic is 0.75, and its p is 3/5.
    out = capped_selection_p(np.array([0.95, 0.75, 0.65]), maxima, statistic=0.75)
    assert_allclose(out, [3 / 5, 3 / 5, 4 / 5])
    table = pd.DataFrame({"signature": [1, 2, 3, 4], "mean_auc": [0.95, 0.75, 0.65, np.nan]})
    assert null_statistic(table, frozenset({2, 3, 4})) == 0.75
    assert null_statistic(table, None) == 0.95
    assert np.isnan(null_statistic(table, frozenset({4})))


@pytest.mark.parametrize(("n", "alpha"), [(19, 0.05), (39, 0.05), (99, 0.1), (999, 0.001)])
def test_the_threshold_is_the_smallest_value_whose_p_reaches_alpha(n, alpha):
    maxima = np.round(np.random.default_rng(n).uniform(0.5, 0.9, n), 3)
    threshold = selection_threshold(maxima, alpha)
    assert selection_adjusted_p(np.array([threshold]), maxima)[0] <= alpha * (1 + 1e-12)
    below = np.nextafter(threshold, 0)
    assert selection_adjusted_p(np.array([below]), maxima)[0] > alpha
    # Nineteen permutations cannot give p below 1/20 = 0.05, so 0.04 is unreachable.
    assert np.isnan(selection_threshold(maxima[:19], 0.04))


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


def test_predictions_are_named_by_sample_in_the_datasets_order_whatever_the_slice_order():
    second = {
        "records": [{"signature": 4, "classifier": "svm", "auc": None, "error": "x"}],
        "scored_rows": [2, 0],
    }
    first = {
        "records": [
            {"signature": 3, "classifier": "svm", "auc": 1.0, "scores": [0.1, 0.2]},
            {"signature": 3, "classifier": "logistic", "auc": 1.0, "scores": [0.3, 0.4]},
        ],
        "scored_rows": [2, 0],  # a config's discovery rows, in its order
    }
    frame = predictions_from_results([second, first], ["s0", "s1", "s2"], ["A", "B", "A"])
    assert frame.to_dict(orient="list") == {
        "signature": [3, 3, 3, 3],
        "classifier": ["logistic", "logistic", "svm", "svm"],
        "sample": ["s0", "s2", "s0", "s2"],
        "phenotype": ["A", "A", "A", "A"],
        "score": [0.4, 0.3, 0.2, 0.1],
    }
