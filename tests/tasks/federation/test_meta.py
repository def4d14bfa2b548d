"""The federation's combinations, against independent computations on small data."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.metrics import roc_auc_score
from statsmodels.stats.meta_analysis import combine_effects

from tasks.federation.meta import (
    SiteResult,
    combine_genes,
    combine_signatures,
    combined_null_maxima,
    common_universe,
    hanley_mcneil_variance,
    with_selection_p,
)

CLASSIFIERS = ["logistic", "svm"]


def site(name, n_case, n_control, aucs, genes, null):
    """A SiteResult from plain arrays: aucs signatures x classifiers, genes probesets x 2."""
    ids = list(range(len(aucs)))
    signatures = pd.DataFrame(index=pd.Index(ids, name="signature"))
    for k, c in enumerate(CLASSIFIERS):
        signatures[f"auc_{c}"] = np.asarray(aucs, dtype=float)[:, k]
        signatures[f"accuracy_{c}"] = 0.5
    beta, se = np.asarray(genes, dtype=float).T
    gene_frame = pd.DataFrame(
        {"logFC": beta, "SE": se, "t": beta / se, "df.total": 10.0, "AveExpr": 1.0},
        index=pd.Index([f"p{i}" for i in range(len(beta))], name="probeset"),
    )
    null_frame = pd.DataFrame(np.asarray(null, dtype=float), index=[11, 12, 13], columns=ids)
    return SiteResult(name, n_case, n_control, signatures, gene_frame, null_frame)


@pytest.fixture
def sites():
    rng = np.random.default_rng(3)
    return [
        site(
            f"s{k}",
            3 + k,
            7 + 2 * k,
            rng.uniform(0.4, 1.0, (5, 2)),
            np.column_stack([rng.normal(0, 1, 8), rng.uniform(0.2, 0.6, 8)]),
            rng.uniform(0.3, 0.9, (3, 5)),
        )
        for k in range(3)
    ]


def test_gene_meta_analysis_is_statsmodels_fixed_effect(sites):
    table = combine_genes(sites).sort_index()
    for probeset, row in table.iterrows():
        effects = np.array([s.genes.loc[probeset, "logFC"] for s in sites])
        variances = np.array([s.genes.loc[probeset, "SE"] ** 2 for s in sites])
        ref = combine_effects(effects, variances, use_t=False)
        assert_allclose(row["logFC"], ref.mean_effect_fe, rtol=1e-12)
        assert_allclose(row["SE"], ref.sd_eff_w_fe, rtol=1e-12)
        assert_allclose(row["Q"], ref.q, rtol=1e-10)
        assert_allclose(row["I2"], max(ref.i2, 0.0), rtol=1e-10, atol=1e-12)
    assert list(table.loc["p0", ["logFC_s1", "t_s2"]]) == [
        sites[1].genes.loc["p0", "logFC"],
        sites[2].genes.loc["p0", "t"],
    ]


def test_genes_are_ordered_by_p():
    a = site("a", 3, 3, [[0.5, 0.5]], [[0.1, 1.0], [3.0, 0.5]], np.full((3, 1), 0.5))
    b = site("b", 3, 3, [[0.5, 0.5]], [[0.2, 1.0], [2.0, 0.5]], np.full((3, 1), 0.5))
    assert list(combine_genes([a, b]).index) == ["p1", "p0"]


def test_combined_auc_weights_sites_by_size(sites):
    table = combine_signatures(sites, CLASSIFIERS).set_index("signature")
    n = np.array([s.n for s in sites], dtype=float)
    for c in CLASSIFIERS:
        expected = sum(s.signatures[f"auc_{c}"] * s.n for s in sites) / n.sum()
        assert_allclose(table[f"auc_{c}"].sort_index(), expected, rtol=1e-12)
    assert_allclose(
        table["mean_auc"], table[[f"auc_{c}" for c in CLASSIFIERS]].mean(axis=1), rtol=1e-12
    )
    ranked = combine_signatures(sites, CLASSIFIERS)["mean_auc"]
    assert ranked.is_monotonic_decreasing


def test_combined_null_is_the_brute_force_maximum(sites):
    maxima = combined_null_maxima(sites)
    n = np.array([s.n for s in sites], dtype=float)
    for perm in maxima.index:
        by_signature = [
            sum(s.null.loc[perm, sig] * s.n for s in sites) / n.sum() for sig in range(5)
        ]
        assert_allclose(maxima[perm], max(by_signature), rtol=1e-12)
    ranked = with_selection_p(combine_signatures(sites, CLASSIFIERS), maxima)
    best = ranked["mean_auc"].iloc[0]
    assert ranked["selection_adjusted_p"].iloc[0] == (1 + (maxima >= best).sum()) / 4


def test_the_null_uses_only_permutations_every_site_ran(sites):
    short = SiteResult(**{**sites[0].__dict__, "null": sites[0].null.iloc[:2]})
    assert list(combined_null_maxima([short, *sites[1:]]).index) == [11, 12]


def test_hanley_mcneil_variance_is_the_bootstrap_variance_of_a_known_auc():
    rng = np.random.default_rng(0)
    n_case, n_control = 40, 60
    aucs = []
    for _ in range(1500):
        case, control = rng.normal(1.0, 1, n_case), rng.normal(0, 1, n_control)
        scores = np.concatenate([case, control])
        aucs.append(roc_auc_score(np.r_[np.ones(n_case), np.zeros(n_control)], scores))
    expected = hanley_mcneil_variance(np.array([np.mean(aucs)]), n_case, n_control)[0]
    # Hanley-McNeil's exponential approximation is within ~10% for binormal scores.
    assert_allclose(np.var(aucs), expected, rtol=0.15)


def test_the_universe_is_the_sorted_intersection_with_what_each_lacked():
    universe = common_universe({"a": ["x", "y", "z"], "b": ["z", "y"], "c": ["y", "z", "w"]})
    assert universe.probesets == ["y", "z"]
    assert universe.lacked == {"a": ["w"], "b": ["w", "x"], "c": ["x"]}
