import numpy as np
import pandas as pd
import pytest

from tasks.io import save_tsv
from tasks.science.plan import Signature
from tasks.science.tables import (
    gene_evidence,
    permutation_baseline,
    records_from_results,
    signature_table,
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


@pytest.mark.parametrize(("perm", "p"), [([0.5, 0.6, 0.7], 0.25), ([0.95, 0.5, 0.99], 0.75)])
def test_permutation_p_value(perm, p):
    observed = pd.DataFrame({"signature": [7], "mean_auc": [0.9]})
    permuted = pd.DataFrame(
        {"signature": [7] * 3, "permutation": [1, 2, 3], "auc": perm, "classifier": ["x"] * 3}
    )
    out = permutation_baseline(observed, permuted)
    np.testing.assert_allclose(out["empirical_p"].item(), p)
    assert out["n_permutations"].item() == 3


def test_permutation_candidates_follow_the_report_ranking():
    from tasks.report.build import top_for_permutation

    records = records_from_results(contents())
    top = top_for_permutation(records, SIGNATURES, CLASSIFIERS, 2)
    assert top == [{"id": 3, "probesets": ["c", "d"]}, {"id": 0, "probesets": ["a", "b"]}]
    assert top_for_permutation(records, SIGNATURES, CLASSIFIERS, 0) == []
