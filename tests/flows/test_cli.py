import subprocess
import sys

import pytest

from flows.__main__ import parse_parameters
from flows.params import SearchParameters
from tasks.execution.dcp import DcpOptions

from ..conftest import ROOT


def test_help_lists_every_parameter():
    command = [sys.executable, "-m", "flows", "--help"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    for name in SearchParameters.model_fields:
        if name != "dcp":
            assert "--" + name.replace("_", "-") in out.stdout, name
    for name in DcpOptions.model_fields:
        assert "--dcp." + name.replace("_", "-") in out.stdout, name
    for option in ("--input", "--case", "--control", "--backend", "--server-url"):
        assert option in out.stdout


def test_options_become_typed_parameters():
    argv = ["--input", "x.tsv", "--n-signatures", "50", "--classifiers", "logistic,svm"]
    argv += ["--log2-transform", "--faults", '{"fail": [1]}', "--dcp.job-name", "weekly"]
    params = parse_parameters(argv + ["--dcp.slice-payment-offer", "0.5"])
    assert params.input_path == "x.tsv" and params.n_signatures == 50
    assert params.classifiers == ["logistic", "svm"] and params.log2_transform
    assert params.faults == {"fail": [1]}
    assert params.dcp.job_name == "weekly" and params.dcp.slice_payment_offer == 0.5


@pytest.mark.parametrize(
    "argv",
    [
        ["--backend", "slurm"],
        ["--min-len", "9", "--max-len", "5"],
        ["--n-signatures", "zero"],
        ["--classifiers", "knn"],
        ["--no-such-option", "1"],
    ],
)
def test_bad_options_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_parameters(argv)
    assert info.value.code == 2


def test_environment_variables_do_not_change_parameters(monkeypatch):
    monkeypatch.setenv("SEED", "99")
    monkeypatch.setenv("BACKEND", "dcp")
    params = parse_parameters([])
    assert params.seed == SearchParameters().seed and params.backend == "local"
