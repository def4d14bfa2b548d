import numpy as np
import pandas as pd
import pytest

from tasks.io import read_prepared
from tasks.science.destats import benjamini_hochberg, differential_expression

from ...conftest import GOLUB, ROOT

LOCAL_REFERENCE = ROOT / "tests" / "tasks" / "science" / "golub_all_aml.limma.tsv"


@pytest.fixture(scope="module")
def de():
    labels, matrix = read_prepared(GOLUB)
    return differential_expression(matrix, labels, "AML", "ALL")


@pytest.fixture(scope="module")
def reference():
    return pd.read_csv(LOCAL_REFERENCE, sep="\t", index_col="probeset")


@pytest.mark.parametrize(
    ("column", "rtol"),
    [
        ("logFC", 1e-6),
        ("t", 1e-6),
        ("P.Value", 1e-5),
        ("adj.P.Val", 1e-5),
        ("AveExpr", 1e-6),
        ("B", 1e-6),
    ],
)
def test_agrees_with_r_limma(de, reference, column, rtol):
    got = de.loc[reference.index, column].to_numpy()
    np.testing.assert_allclose(got, reference[column].to_numpy(), rtol=rtol, atol=1e-12)


def test_top_genes_are_the_known_ones(de):
    top = de.reindex(de["t"].abs().sort_values(ascending=False).index).head(10).index
    for probeset in ("M27891_at", "X95735_at", "M84526_at", "M27783_s_at"):
        assert probeset in top
    assert int((de["adj.P.Val"] < 0.05).sum()) == 691


def test_benjamini_hochberg_matches_r():
    # p.adjust(c(0.01, 0.04, 0.03, 0.2, 0.5), "BH") in R
    got = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2, 0.5]))
    np.testing.assert_allclose(got, [0.05, 0.0666667, 0.0666667, 0.25, 0.5], rtol=1e-5)
