"""Designs beyond `~ group` against R limma 3.54.1 (tables from design_reference.R)."""

import numpy as np
import pandas as pd
import pytest

from tasks.io import read_prepared
from tasks.science.design import DesignError, Term, build_design, parse_terms, remove_covariates
from tasks.science.destats import ebayes, limma_table, lm_fit

from ...conftest import GOLUB, ROOT

REFERENCE = ROOT / "tests" / "tasks" / "science" / "design"
COLUMNS = ("logFC", "AveExpr", "t", "P.Value", "adj.P.Val", "B")


def read_reference(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"{name}.limma.tsv", sep="\t", index_col="probeset")


def priors() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "priors.tsv", sep="\t", index_col="case")


def golub(sheet_name: str = "golub_sheet.tsv") -> tuple[pd.DataFrame, pd.DataFrame]:
    _, matrix = read_prepared(GOLUB)
    sheet = pd.read_csv(REFERENCE / sheet_name, sep="\t", dtype=str, index_col="sample")
    return matrix, sheet


def wide(name: str, sheet_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A probesets x samples reference input as samples x probesets, with its sheet."""
    matrix = pd.read_csv(REFERENCE / name, sep="\t", index_col="probeset").T
    return matrix, pd.read_csv(REFERENCE / sheet_name, sep="\t", dtype=str, index_col="sample")


def noise() -> tuple[pd.DataFrame, np.ndarray]:
    matrix = pd.read_csv(REFERENCE / "noise.tsv", sep="\t", index_col="probeset").T
    return matrix, np.repeat([0.0, 1.0], 20)


def case_of(name: str):
    """(matrix, design) of a reference case, built by build_design as the flow builds it."""
    if name.startswith("golub_batch"):
        matrix, sheet = golub()
        terms = [Term("batch"), *([Term("age")] if name == "golub_batch_age" else [])]
        return matrix, build_design(sheet, terms, None, sheet["phenotype"] == "AML", "sheet")
    if name == "paired":
        matrix, sheet = wide("paired.tsv", "paired_sheet.tsv")
        is_case = sheet["treatment"] == "after"
        return matrix, build_design(sheet, [], "patient", is_case, "sheet")
    if name == "golub_permuted":
        matrix, sheet = golub("golub_permuted_sheet.tsv")
        return matrix, build_design(sheet, [], None, sheet["phenotype"] == "AML", "sheet")
    matrix, is_case = noise()
    return matrix, build_design(None, [], None, is_case, "noise")


# noise: fitFDist's df.prior = Inf branch; golub_permuted: tmixture clips 13 of its 16 v0
# estimates (clipping each gives var.prior 0.0614, clipping their mean 0.0457).
CASES = ["golub_batch_age", "golub_batch", "paired", "noise", "golub_permuted"]


@pytest.mark.parametrize("name", CASES)
def test_agrees_with_r_limma(name):
    matrix, design = case_of(name)
    got = limma_table(matrix.to_numpy(), design.matrix, design.group_column)
    reference = read_reference(name)
    rows = matrix.columns.get_indexer(reference.index)
    for column in COLUMNS:
        np.testing.assert_allclose(
            got[column][rows], reference[column].to_numpy(), rtol=1e-6, atol=1e-12, err_msg=column
        )


@pytest.mark.parametrize("name", CASES)
def test_prior_agrees_with_r(name):
    matrix, design = case_of(name)
    mod = ebayes(lm_fit(matrix.to_numpy(), design.matrix))
    expected = priors().loc[name]
    np.testing.assert_allclose(mod.s2_prior, expected["s2_prior"], rtol=1e-9)
    np.testing.assert_allclose(mod.df_prior, float(expected["df_prior"]), rtol=1e-6)


def test_noise_finds_no_prior_spread_as_limma_does():
    # The branch where fitFDist returns df.prior = Inf and the pooled variance as its scale.
    matrix, design = case_of("noise")
    mod = ebayes(lm_fit(matrix.to_numpy(), design.matrix))
    assert np.isinf(mod.df_prior)
    s2 = lm_fit(matrix.to_numpy(), design.matrix).sigma ** 2
    np.testing.assert_allclose(mod.s2_prior, s2.mean(), rtol=1e-12)


def test_formula_names_covariates_then_group():
    matrix, design = case_of("golub_batch_age")
    assert design.formula == "~ batch + age + group"
    assert design.columns == ["(Intercept)", "batchb2", "batchb3", "age", "group"]
    assert design.kinds == {"batch": "factor", "age": "numeric"}
    _, paired = case_of("paired")
    assert paired.formula == "~ patient + group"


def test_remove_covariates_agrees_with_r_remove_batch_effect():
    matrix, sheet = golub()
    design = build_design(
        sheet, [Term("batch"), Term("age")], None, sheet["phenotype"] == "AML", "s"
    )
    got = remove_covariates(matrix.to_numpy(), design)
    reference = pd.read_csv(REFERENCE / "golub_batch_age.adjusted.tsv", sep="\t", index_col=0)
    rows = matrix.columns.get_indexer(reference.index)
    np.testing.assert_allclose(got[:, rows], reference.T.to_numpy(), rtol=1e-9, atol=1e-12)


def test_remove_covariates_does_not_look_at_the_phenotype():
    matrix, sheet = golub()
    terms = [Term("batch"), Term("age")]
    one = build_design(sheet, terms, None, sheet["phenotype"] == "AML", "s")
    other = build_design(sheet, terms, None, sheet["phenotype"] != "AML", "s")
    np.testing.assert_array_equal(
        remove_covariates(matrix.to_numpy(), one), remove_covariates(matrix.to_numpy(), other)
    )


def sheet_of(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame(columns, index=[f"s{i}" for i in range(n)], dtype=str)


GROUP = np.array([0, 0, 0, 1, 1, 1], dtype=float)


@pytest.mark.parametrize(
    ("columns", "terms", "pair", "message"),
    [
        ({"batch": list("aaaaaa")}, "batch", None, "covariate 'batch' has one value ('a')"),
        ({"batch": list("aaabbb")}, "batch", None, "covariate 'batch' is confounded with the"),
        ({"batch": ["a", "", "b", "a", "b", ""]}, "batch", None, "missing for 2 samples (s1, s5)"),
        ({"x": list("abcabc")}, "batch", None, "no column 'batch' for a covariate"),
        ({"age": ["1", "2", "x", "4", "5", "6"]}, "age:numeric", None, "numeric but has value 'x'"),
        (
            {"a": list("ababab"), "b": list("ababab")},
            "a,b",
            None,
            "covariates 'a' and 'b' are redundant",
        ),
        (
            {"p": ["1", "1", "2", "2", "3", "3"]},
            "",
            "p",
            "pair '1' of column 'p' has samples in one",
        ),
        ({"b": list("abcdef")}, "b", None, "confounded with the phenotype"),
        ({"a": list("abcabc"), "p": list("xyzxyz")}, "a", "p", "redundant"),
        ({"b": list("abab"), "c": ["1", "2", "3", "5"]}, "b,c", None, "no residual degrees"),
        (
            {"b": list("abab"), "c": ["1", "2", "3", "4"]},
            "b,c",
            None,
            "covariates 'b' and 'c' together",
        ),
    ],
)
def test_bad_designs_fail_in_one_line_naming_the_column(columns, terms, pair, message):
    sheet = sheet_of(**columns)
    group = GROUP[: len(sheet)] if len(sheet) == 6 else np.array([0, 0, 1, 1], dtype=float)
    with pytest.raises(DesignError) as info:
        build_design(sheet, parse_terms(terms), pair, group, "sheet.tsv")
    assert message in str(info.value)
    assert str(info.value).startswith("sheet.tsv: ") and "\n" not in str(info.value)


def test_covariates_need_a_sheet():
    with pytest.raises(DesignError, match="come from a sample sheet"):
        build_design(None, [Term("batch")], None, GROUP, "input.tsv")


def test_parse_terms():
    assert parse_terms("batch, age:numeric,,lane:factor") == [
        Term("batch"),
        Term("age", "numeric"),
        Term("lane", "factor"),
    ]
    assert parse_terms(None) == []
    with pytest.raises(DesignError, match="factor or numeric"):
        parse_terms("age:integer")
    with pytest.raises(DesignError, match="named twice"):
        parse_terms("a,a:factor")


def test_warnings_name_coded_numbers_and_associated_covariates():
    sheet = sheet_of(lane=["1", "2", "1", "2", "1", "2"] * 2, site=list("aaaaabbbbbba"))
    group = np.repeat([0.0, 1.0], 6)
    design = build_design(sheet, parse_terms("lane,site"), None, group, "s")
    assert any("'lane' has 2 integer values" in w and "lane:factor" in w for w in design.warnings)
    assert any("'site' is associated with the phenotype" in w for w in design.warnings)
    quiet = build_design(sheet, parse_terms("lane:factor"), None, group, "s")
    assert quiet.warnings == []
