"""The contrasts file: parsed as nf-core writes it, and refused in one line when wrong."""

from pathlib import Path

import pandas as pd
import pytest

from tasks.science.contrasts import Contrast, check_contrasts, parse_contrasts
from tasks.science.dataset import DatasetError

PATH = Path("contrasts.tsv")
GOOD = "id\tvariable\treference\ttarget\tcovariates\nt_vs_c\tphenotype\tc\tt\tbatch\nb\tbatch\tb1\tb2\t\n"


def test_rows_become_contrasts():
    assert parse_contrasts(GOOD, PATH) == [
        Contrast("t_vs_c", "phenotype", "c", "t", "batch"),
        Contrast("b", "batch", "b1", "b2", ""),
    ]
    assert (
        parse_contrasts("id\tvariable\treference\ttarget\nx\tv\ta\tb\n", PATH)[0].covariates is None
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the contrasts file is empty"),
        ("id\tvariable\treference\ttarget\tblocking\n", "unknown column 'blocking'"),
        ("id\tvariable\treference\nx\tv\ta\n", "no column 'target'"),
        ("id\tvariable\treference\ttarget\n", "no contrasts below the header"),
        ("id\tvariable\treference\ttarget\nx\tv\ta\n", "line 2 has 3 fields, the header 4"),
        ("id\tvariable\treference\ttarget\nx\t\ta\tb\n", "line 2: empty variable"),
        ("id\tvariable\treference\ttarget\na/b\tv\ta\tb\n", "id 'a/b' must be letters"),
        ("id\tvariable\treference\ttarget\nx\tv\ta\ta\n", "reference and target are both 'a'"),
        ("id\tvariable\treference\ttarget\nx\tv\ta\tb\nx\tv\tb\ta\n", "id 'x' is used twice"),
    ],
)
def test_bad_files_fail_in_one_line_naming_the_file(text, message):
    with pytest.raises(DatasetError) as info:
        parse_contrasts(text, PATH)
    assert str(info.value).startswith("contrasts.tsv: ") and message in str(info.value)
    assert "\n" not in str(info.value)


SAMPLES = pd.DataFrame({"batch": ["b1", "b2", "b1", "b2"]}, index=list("abcd"))
LABELS = ["t", "t", "c", "c"]


@pytest.mark.parametrize(
    ("contrast", "message"),
    [
        (Contrast("x", "bacth", "b1", "b2"), "no variable 'bacth' among the sample columns"),
        (Contrast("x", "batch", "b1", "b3"), "target 'b3' is not a level of 'batch' (b1, b2)"),
        (Contrast("x", "phenotype", "C", "t"), "reference 'C' is not a level of 'phenotype'"),
    ],
)
def test_variables_and_levels_are_checked(contrast, message):
    with pytest.raises(DatasetError, match="contrast 'x'") as info:
        check_contrasts([contrast], SAMPLES, LABELS, PATH)
    assert message in str(info.value)


def test_known_variables_and_levels_pass():
    check_contrasts(parse_contrasts(GOOD, PATH), SAMPLES, LABELS, PATH)
