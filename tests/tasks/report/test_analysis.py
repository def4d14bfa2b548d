import dataclasses

import numpy as np
import pandas as pd
from numpy.testing import assert_allclose

from tasks.report.analysis import (
    heatmap_data,
    null_evidence,
    sample_view,
    with_selection_p,
    with_symbols,
)
from tasks.science.screen import NullDesign
from tasks.science.tables import null_means, signature_table, top_signatures

from .conftest import CLASSIFIERS, synthetic_records


def top_frame(*signatures: tuple[int, str]) -> pd.DataFrame:
    return pd.DataFrame(signatures, columns=["signature", "probesets"])


def test_heatmap_samples_sorted_by_group_with_the_boundary_after_the_cases():
    labels = ["ALL", "AML", "ALL", "AML", "ALL", "ALL", "AML"]
    matrix = pd.DataFrame({"p1": np.arange(7.0), "p2": np.arange(7.0) ** 2})
    data = heatmap_data(matrix, labels, "AML", "ALL", top_frame((5, "p1,p2")), {})
    assert data.boundary == 3
    assert data.sample_labels == ["AML"] * 3 + ["ALL"] * 4
    # Columns follow the sorted samples: AML ones (rows 1, 3, 6) first, in their order.
    order = [1, 3, 6, 0, 2, 4, 5]
    expected = (matrix["p1"] - matrix["p1"].mean()) / matrix["p1"].std(ddof=0)
    assert_allclose(data.z[0], expected.to_numpy()[order], rtol=0, atol=1e-12)


def test_heatmap_boundary_on_the_bundled_dataset(report_inputs):
    from tasks.io import read_prepared

    labels, matrix = read_prepared(report_inputs.dataset_path)
    top = top_frame((1, matrix.columns[0]))
    data = heatmap_data(matrix, labels, "AML", "ALL", top, {})
    assert data.boundary == 11 and data.sample_labels[10:12] == ["AML", "ALL"]


def test_heatmap_z_scores_are_the_hand_written_ones_and_zero_for_a_constant_row():
    rng = np.random.default_rng(1)
    matrix = pd.DataFrame(rng.lognormal(5, 2, size=(38, 6)), columns=list("abcdef"))
    matrix["f"] = 7.25  # constant over these samples
    labels = ["x", "y"] * 19
    data = heatmap_data(matrix, labels, "x", "y", top_frame((1, "a,b,c"), (2, "d,e,f")), {})
    order = np.argsort([0 if lab == "x" else 1 for lab in labels], kind="stable")
    rows = matrix[list("abcdef")].to_numpy().T[:, order]
    sd = rows.std(axis=1, keepdims=True)
    as_first_written = (rows - rows.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1)
    assert_allclose(data.z, as_first_written, rtol=1e-12, atol=1e-12)
    assert (data.z[5] == 0).all()


def test_heatmap_rows_grouped_by_signature_in_rank_order():
    matrix = pd.DataFrame(np.random.default_rng(0).normal(size=(4, 4)), columns=list("abcd"))
    top = top_frame((7, "a,b"), (2, "b,c,d"))
    data = heatmap_data(matrix, ["x", "y", "x", "y"], "x", "y", top, {"b": "GENEB"})
    assert data.row_signatures == [7, 7, 2, 2, 2]
    assert data.row_labels == ["a", "GENEB", "GENEB", "c", "d"]  # by symbol, else probeset


def test_symbols_stand_beside_their_probesets_in_a_list():
    assert with_symbols("p1,p2", {"p2": "ABC1"}) == "p1, p2 (ABC1)"


def test_the_null_counts_only_ranked_signatures_as_searched(report_inputs):
    # Two signatures whose slice failed: 38 of 40 searched, and the null says so.
    ids = [s.id for s in report_inputs.search.signatures]
    failed = {ids[5], ids[6]}
    records = report_inputs.search.records[~report_inputs.search.records["signature"].isin(failed)]
    table = signature_table(report_inputs.search.signatures, records, CLASSIFIERS, failed)
    top = top_signatures(table, 0.1)
    ranked = [i for i in ids if i not in failed]
    real = table.set_index("signature")["mean_auc"]
    perms = [11, 12, 13, 14, 15]
    # Each permutation's candidates (2 of them), the panel (ids 0-2) on permutations 11, 12.
    candidates = {p: [ids[(3 * p + k) % 40] for k in (0, 7)] for p in perms}
    candidates[None] = [ids[9], ids[5]]  # 5 failed: the real statistic is 9's
    rows = [
        synthetic_records(candidates[p] + (ids[:3] if p < 13 else []), [p], seed=p) for p in perms
    ]
    screened = NullDesign(
        frozenset(ids[:3]), frozenset({11, 12}), {k: frozenset(v) for k, v in candidates.items()}
    )
    cases = ((pd.concat(rows), screened), (synthetic_records(ranked, perms, seed=2), None))
    for permuted, design in cases:
        search = dataclasses.replace(
            report_inputs.search, permutation_records=permuted, null_design=design
        )
        null = null_evidence(table, search, top)
        assert null.n_searched == 38 and null.exact is (design is None)
        means = null_means(permuted)
        if design is None:
            chosen, maxima = ranked, means.groupby("permutation")["mean_auc"].max().to_numpy()
            panel = set(ranked)
        else:  # a permutation's best among its own candidates only, not the panel's
            chosen, panel = [ids[9]], set(ids[:3])
            maxima = [means[(means.permutation == p) & means.signature.isin(candidates[p])]
                      .mean_auc.max() for p in perms]  # fmt: skip
        assert_allclose(null.maxima, maxima, rtol=1e-12)
        assert null.statistic == real[chosen].max()
        expected = [
            (1 + np.sum(np.array(maxima) >= min(v, null.statistic))) / (len(maxima) + 1)
            for v in top["mean_auc"]
        ]
        assert_allclose(null.top["selection_adjusted_p"], expected, rtol=1e-12)
        assert set(null.panel_means["signature"]) == panel
        shown = with_selection_p(table, null)["selection_adjusted_p"]
        assert shown.notna().sum() == 38 and shown[table["signature"].isin(failed)].isna().all()


def test_the_sample_pca_is_scikit_learns_on_the_most_variable_probesets():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    matrix = pd.DataFrame(rng.normal(size=(12, 800)) * rng.uniform(0.5, 2, size=800))
    labels = ["a", "b"] * 6
    view = sample_view(matrix, labels)
    top = np.argsort(-matrix.to_numpy().var(axis=0), kind="stable")[:500]
    reference = PCA(n_components=2).fit(matrix.to_numpy()[:, top])
    scores = reference.transform(matrix.to_numpy()[:, top])
    assert_allclose(view.explained, reference.explained_variance_ratio_, rtol=1e-10)
    assert_allclose(np.abs(view.components), np.abs(scores), rtol=1e-8, atol=1e-10)
    assert view.n_genes == 500 and view.labels == labels
    assert_allclose(view.spread[3], np.percentile(matrix.iloc[3], [5, 25, 50, 75, 95]))
