"""Several contrasts in one run: a subflow each, a failure in one keeps the others' reports."""

import re
from pathlib import Path

import pytest

from flows.cli import check_inputs, parse_parameters
from flows.signature_search import signature_search
from tasks.science.dataset import DatasetError

from ..tasks.science.test_dataset_design import write_counts_study

CONTRASTS = (
    "id\tvariable\treference\ttarget\tcovariates\n"
    "trt_vs_ctrl\tphenotype\tctrl\ttrt\tbatch\n"
    "b3_vs_b1\tbatch\tb1\tb3\tbatch\n"  # batch as its own covariate: refused in its subflow
)


@pytest.fixture
def study(tmp_path) -> dict:
    """The counts reference (12 samples, 3 batches) with its sheet, and a contrasts file."""
    counts, sheet = write_counts_study(tmp_path)
    (tmp_path / "contrasts.tsv").write_text(CONTRASTS)
    return {
        "input_path": str(counts),
        "sample_sheet": str(sheet),
        "contrasts": str(tmp_path / "contrasts.tsv"),
        "counts": True,
        "n_signatures": 4,
        "signatures_per_slice": 2,
        "min_len": 2,
        "max_len": 3,
        "classifiers": ["logistic"],
        "cv_folds": 2,
        "n_permutations": 0,
        "roc_signatures": 0,
        "workers": 1,
        "results_dir": str(tmp_path / "results"),
        "data_dir": str(tmp_path / "data"),
        "database": str(tmp_path / "db.sqlite3"),
    }


def test_a_failing_contrast_keeps_the_others_and_the_index_says_why(study):
    state = signature_search(**study, return_state=True)
    assert state.is_failed()
    assert "contrasts b3_vs_b1 failed" in state.message
    index = next(Path(study["results_dir"]).glob("counts-contrasts-*/index.html"))
    html = index.read_text()
    assert "1 of 2 contrasts completed" in html
    assert "confounded with the phenotype" in html  # the failed subflow's reason
    link = re.search(r'href="([^"]*report\.html)"', html).group(1)
    report = (index.parent / link).resolve()
    assert report.name == "report.html" and report.is_file()
    assert "trt (case) vs ctrl (control)" in report.read_text()


def test_the_cli_refuses_a_bad_contrast_before_prefect_starts(study):
    argv = [
        "--input",
        study["input_path"],
        "--sample-sheet",
        study["sample_sheet"],
        "--contrasts",
        study["contrasts"],
        "--counts",
        "--cv-folds",
        "2",
    ]
    with pytest.raises(DatasetError, match="contrast 'b3_vs_b1': .*'batch' is confounded"):
        check_inputs(parse_parameters(argv))
    Path(study["contrasts"]).write_text(CONTRASTS.replace("\tb3\t", "\tb4\t"))
    with pytest.raises(DatasetError, match=r"target 'b4' is not a level of 'batch' \(b1, b2, b3\)"):
        check_inputs(parse_parameters(argv))
