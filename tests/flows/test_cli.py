import subprocess
import sys

import pytest

from flows.__main__ import parse_parameters
from flows.params import SearchParameters

from ..conftest import ROOT


def test_help_lists_every_parameter():
    out = subprocess.run([sys.executable, "-m", "flows", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout  # fmt: skip
    for name in SearchParameters.model_fields:
        if name != "dcp":
            assert "--" + name.replace("_", "-") in out, name
    for option in ("--input", "--case", "--control", "--backend", "--server-url", "--dcp-job-name"):
        assert option in out


def test_options_become_typed_parameters():
    params = parse_parameters(
        ["--input", "x.tsv", "--n-signatures", "50", "--classifiers", "logistic,svm",
         "--log2-transform", "--faults", '{"fail": [1]}', "--dcp-job-name", "weekly",
         "--dcp-slice-payment-offer", "0.5"]
    )  # fmt: skip
    assert params.input_path == "x.tsv" and params.n_signatures == 50
    assert params.classifiers == ["logistic", "svm"] and params.log2_transform
    assert params.faults == {"fail": [1]}
    assert params.dcp.job_name == "weekly" and params.dcp.slice_payment_offer == 0.5


@pytest.mark.parametrize(
    "argv",
    [["--backend", "slurm"], ["--min-len", "9", "--max-len", "5"], ["--n-signatures", "zero"],
     ["--classifiers", "knn"]],
)  # fmt: skip
def test_bad_options_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_parameters(argv)
    assert info.value.code == 2
