import numpy as np
import pandas as pd
import pytest
from scipy import stats

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


def bh_as_first_written(p: np.ndarray) -> np.ndarray:
    """The hand-written BH this module had before scipy's false_discovery_control."""
    n = len(p)
    order = np.argsort(p)[::-1]
    adjusted = np.minimum(1.0, np.minimum.accumulate(p[order] * n / np.arange(n, 0, -1)))
    out = np.empty(n)
    out[order] = adjusted
    return out


def test_benjamini_hochberg_gives_the_hand_written_values():
    rng = np.random.default_rng(3)
    for p in (
        rng.uniform(size=2000),
        rng.uniform(size=500) ** 6,  # many small p
        np.round(rng.uniform(size=300), 2),  # ties
        np.array([0.0, 1.0, 1.0, 0.5, 0.0]),
        np.array([0.3]),
    ):
        # The same algorithm; m / i is multiplied in one step, so rounding may differ by an ulp.
        np.testing.assert_allclose(benjamini_hochberg(p), bh_as_first_written(p), rtol=1e-15)
    assert benjamini_hochberg(np.array([])).shape == (0,)


def test_benjamini_hochberg_keeps_missing_p_values_out_as_r_does():
    # p.adjust(c(0.01, NA, 0.04, 0.03), "BH") in R: NA stays, n counts the 3 others.
    got = benjamini_hochberg(np.array([0.01, np.nan, 0.04, 0.03]))
    np.testing.assert_allclose(got, [0.03, np.nan, 0.04, 0.04], rtol=1e-12)


def test_standard_errors_are_r_limma_s_logfc_over_t(reference):
    """limma's t is logFC / (stdev.unscaled * sqrt(s2.post)): its SE is R's logFC / t."""
    labels, matrix = read_prepared(GOLUB)
    table = differential_expression(matrix, labels, "AML", "ALL", standard_errors=True)
    got = table.loc[reference.index]
    np.testing.assert_allclose(got["SE"], reference["logFC"] / reference["t"], rtol=1e-6)
    # R's P.Value back from t on df.total: the degrees of freedom are limma's too.
    p = 2 * stats.t.sf(np.abs(reference["t"]), got["df.total"])
    np.testing.assert_allclose(p, reference["P.Value"], rtol=1e-5)
