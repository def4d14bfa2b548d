import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tasks.report.roc import area, mean_roc, roc_curves


def test_two_classifiers_average_vertically_at_each_false_positive_rate():
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.4, 0.6, 0.1])  # AUC 0.75: a step at each rate
    b = np.array([0.9, 0.8, 0.1, 0.2])  # AUC 1.0
    fpr, tpr = mean_roc(y, [a, b])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1, 1], atol=1e-15)
    np.testing.assert_allclose(tpr, [0, 0.75, 0.75, 1, 1, 1], atol=1e-15)
    assert area(fpr, tpr) == pytest.approx(0.875, abs=1e-15)


def test_a_tie_of_cases_and_controls_is_a_diagonal_and_counts_half():
    y = np.array([1, 0, 1, 0])
    scores = np.array([0.5, 0.5, 0.9, 0.1])  # one case and one control tied
    fpr, tpr = mean_roc(y, [scores])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1, 1], atol=1e-15)
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1, 1, 1], atol=1e-15)
    assert area(fpr, tpr) == pytest.approx(roc_auc_score(y, scores), abs=1e-15) == 0.875


@pytest.mark.parametrize("seed", range(5))
def test_the_averaged_curves_area_is_the_mean_of_the_classifiers_aucs(seed):
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], [11, 27])
    scores = [np.round(rng.uniform(0, 1, 38) * 0.7 + 0.3 * y, 1) for _ in range(6)]  # many ties
    fpr, tpr = mean_roc(y, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= -1e-12).all()
    expected = np.mean([roc_auc_score(y, s) for s in scores])
    np.testing.assert_allclose(area(fpr, tpr), expected, rtol=0, atol=1e-12)


def test_roc_curves_follow_the_tables_ranks_and_carry_its_mean_auc():
    y = ["A", "A", "B", "B"]
    predictions = pd.DataFrame(
        [
            (sig, clf, f"s{i}", y[i], score)
            for sig, scores in ((7, [0.9, 0.4, 0.6, 0.1]), (3, [0.9, 0.8, 0.1, 0.2]))
            for clf in ("logistic", "svm")
            for i, score in enumerate(scores)
        ],
        columns=["signature", "classifier", "sample", "phenotype", "score"],
    )
    table = pd.DataFrame(
        {"signature": [3, 7], "rank": [1, 2], "mean_auc": [1.0, 0.75], "probesets": ["p,q", "r"]}
    )
    curves = roc_curves(predictions, table, "A")
    assert [(c.signature, c.rank, c.probesets) for c in curves] == [
        (3, 1, ["p", "q"]),
        (7, 2, ["r"]),
    ]
    assert [c.auc for c in curves] == pytest.approx([1.0, 0.75], abs=1e-15)
    assert [c.mean_auc for c in curves] == [1.0, 0.75] and curves[0].n_classifiers == 2
