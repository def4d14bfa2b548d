import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.__main__ import main
from flows.cli import UsageError, parse_parameters
from server import create_app
from server.embedded import EmbeddedServer
from tasks.execution.dcp import DcpOptions
from tasks.parameters import TEST_ONLY, SearchParameters

from ..conftest import GOLUB, ROOT


@pytest.fixture(scope="module")
def help_text() -> str:
    command = [sys.executable, "-m", "flows", "--help"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_lists_every_parameter_but_the_test_hooks(help_text):
    for name in SearchParameters.model_fields.keys() - TEST_ONLY - {"dcp", "input_path"}:
        assert "--" + name.replace("_", "-") + " " in help_text, name
    for name in DcpOptions.model_fields:
        assert "--dcp." + name.replace("_", "-") in help_text, name
    assert "--input TEXT" in help_text and "--faults" not in help_text


def test_help_is_grouped_shows_choices_and_each_default_once(help_text):
    for group in ("input", "search", "evidence", "execution", "files", "dcp"):
        assert f"\n{group} options:\n" in help_text
    assert "--backend {local,dcp}" in help_text
    assert (
        "of logistic, logistic_l1, bagging, random_forest, svm, decision_tree (default: all)"
        in (" ".join(help_text.split()))
    )
    entries = " ".join(help_text.split()).split(" --")
    assert not [entry for entry in entries if entry.count("(default:") > 1]
    assert help_text.startswith("usage: python -m flows [options]\n\n")  # not 21 lines


def test_options_become_typed_parameters():
    argv = ["--input", "x.tsv", "--n-signatures", "50", "--classifiers", "logistic,svm"]
    argv += ["--log2-transform", "--dcp.job-name", "weekly", "--no-dcp.remote-workers"]
    params = parse_parameters(argv + ["--dcp.slice-payment-offer", "0.5"])
    assert params.input_path == "x.tsv" and params.n_signatures == 50
    assert params.classifiers == ["logistic", "svm"] and params.log2_transform
    assert params.dcp.job_name == "weekly" and params.dcp.slice_payment_offer == 0.5
    assert params.dcp.remote_workers is False and params.faults == {}


def test_a_wrong_admin_token_is_one_line_before_prefect_starts(tmp_path, capsys, monkeypatch):
    (tmp_path / "data").mkdir()
    app = create_app(
        {"DATA_DIR": tmp_path / "data", "DATABASE": tmp_path / "db", "ADMIN_TOKEN": "right" * 8}
    )
    server = EmbeddedServer(app)
    monkeypatch.setenv("SIGSEARCH_ADMIN_TOKEN", "wrong" * 8)
    try:
        argv = ["--input", str(GOLUB), "--server-url", server.url]
        assert main([*argv, "--results-dir", str(tmp_path / "r")]) == 2
    finally:
        server.stop()
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert f"{server.url} refuses the admin token (HTTP 403)" in err and "wrong" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--n-signature", "100"], "unrecognized arguments: --n-signature 100"),
        (["--n-sig", "100"], "unrecognized arguments: --n-sig 100"),
        (["--faults", '{"fail": [1]}'], "unrecognized arguments: --faults"),
        (["--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
        (["--backend", "slurm"], "argument --backend: invalid choice: 'slurm'"),
        (["--classifiers", "logistic,knn"], "--classifiers: Input should be 'logistic'"),
        (["--n-signatures", "zero"], "--n-signatures: Input should be a valid integer"),
        (["--n-signatures", "0"], "--n-signatures: Input should be greater than or equal to 1"),
        (["--dcp.sdk-timeout", "-1"], "--dcp.sdk-timeout: Input should be greater than 0"),
        (["--min-len", "9", "--max-len", "5"], "min_len (9) must not exceed max_len (5)"),
        (["--case"], "argument --case: expected one argument"),
    ],
)
def test_bad_options_are_refused_in_one_line(argv, said):
    with pytest.raises(UsageError, match="^" + said.replace("(", r"\(").replace(")", r"\)")):
        parse_parameters(argv)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--input", "{tmp}/none.tsv"], "none.tsv: no such file (--input)"),
        (["--case", "CLL"], "case label 'CLL' not found; labels: ['ALL', 'AML']"),
        (["--classifiers", "knn"], "--classifiers: Input should be 'logistic'"),
        (["--input", "{tmp}/malformed.tsv"], "malformed.tsv"),
        (["--n-signature", "100"], "unrecognized arguments: --n-signature 100"),
        (["--sample-sheet", "{tmp}/none.tsv"], "none.tsv: no such file (--sample-sheet)"),
        (["--ca-bundle", "{tmp}/ca.pem"], "ca.pem: no such file (--ca-bundle)"),
        (["--server-url", "http://192.0.2.1:5001"], "SIGSEARCH_ADMIN_TOKEN is not set"),
        (["--validation-fraction", "0.3"], "discovery class 'AML' has 8 samples, fewer than"),
    ],
)
def test_ordinary_mistakes_print_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, said):
    monkeypatch.delenv("SIGSEARCH_ADMIN_TOKEN", raising=False)
    (tmp_path / "malformed.tsv").write_text("phenotype\tg1\tg2\nAML\t1.0\n")
    files = ["--results-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d")]
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    assert main(["--input", str(GOLUB), *argv, *files]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("python -m flows: error: ") and said in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_an_abbreviated_option_exits_2_with_one_line():
    command = [sys.executable, "-m", "flows", "--n-signature", "100"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "python -m flows: error: unrecognized arguments: --n-signature 100; "
        "did you mean --n-signatures?; see python -m flows --help"
    ]


def test_environment_variables_do_not_change_parameters(monkeypatch):
    monkeypatch.setenv("SEED", "99")
    monkeypatch.setenv("BACKEND", "dcp")
    params = parse_parameters([])
    assert params.seed == SearchParameters().seed and params.backend == "local"


def test_a_run_from_the_command_line_prints_the_report_without_telemetry_noise(tmp_path):
    argv = ["--n-signatures", "8", "--signatures-per-slice", "4", "--classifiers", "logistic"]
    argv += ["--cv-folds", "3", "--n-permutations", "0", "--workers", "1", "--roc-signatures", "0"]
    argv += ["--results-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d")]
    argv += ["--database", str(tmp_path / "db.sqlite3")]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)  # the temporary server, as `make demo` uses it
    command = [sys.executable, "-m", "flows", *argv]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.splitlines()[-1]  # users and tests parse the last line
    assert last.startswith("Report: ") and Path(last.removeprefix("Report: ")).is_file()
    assert done.stdout.startswith("Verdict (AML (case) vs ALL (control)):")
    assert "selection-adjusted p: not computed" in done.stdout  # --n-permutations 0
    assert "telemetry" not in done.stderr.lower() and "Traceback" not in done.stderr


def test_an_input_with_fewer_probesets_than_max_len_exits_2_before_prefect(tmp_path, capsys):
    source = tmp_path / "narrow.tsv"
    rows = [f"{'AML' if i % 2 else 'ALL'}\t{i}.0\t{i * i}.0\t{20 - i}.5\t7.0" for i in range(24)]
    source.write_text("\n".join(["phenotype\tg1\tg2\tg3\tflat", *rows]) + "\n")
    files = ["--results-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d")]
    argv = ["--input", str(source), "--min-len", "2", "--max-len", "4", *files]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert f"{source}: 3 probesets after preparation, fewer than --max-len 4" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def dcp_argv(tmp_path) -> list[str]:
    """--backend dcp with keystores that are not there, results and data in tmp_path."""
    argv = ["--input", str(GOLUB), "--backend", "dcp"]
    argv += ["--dcp.id-keystore", str(tmp_path / "none-id.keystore")]
    argv += ["--dcp.payment-keystore", str(tmp_path / "none-pay.keystore")]
    return argv + ["--results-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d")]


def test_a_dcp_configuration_problem_ends_in_one_line_with_exit_2_before_prefect(tmp_path):
    from tests.dcp_offline import CLOSED

    env = {**os.environ, "DCP_SCHEDULER_LOCATION": CLOSED, "PREFECT_HOME": str(tmp_path / "p")}
    env.pop("DCP_COMPUTE_GROUP", None)
    command = [sys.executable, "-m", "flows", *dcp_argv(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr
    assert line.startswith("python -m flows: error: DCP preflight failed: identity keystore")
    assert "payment keystore" in line and "no compute group" in line
    assert "is loopback" in line and f"scheduler {CLOSED} unreachable" in line
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists()


def test_malformed_compute_group_credentials_end_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DCP_COMPUTE_GROUP", "no-colon-here")
    assert main(dcp_argv(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert "DCP_COMPUTE_GROUP: compute group credentials must look like" in err
    assert "no-colon-here" not in err  # a secret is never echoed


def test_the_verdict_is_read_from_report_json_beside_the_report(tmp_path, capsys):
    from flows.__main__ import print_verdict

    record = {
        "summary": {"contrast": "AML (case) vs ALL (control)"},
        "top_signatures": [{"signature": 3, "mean_auc": 0.97, "probesets": "a_at (CST3), b_at"}],
        "selection_adjusted_p": 0.0244,
        "selection_adjusted_p_min": 0.0244,
        "null": {"n_permutations": 40},
    }
    (tmp_path / "report.json").write_text(json.dumps(record))
    print_verdict(tmp_path / "report.html")
    out = capsys.readouterr().out
    assert "best signature #3 (2 genes): CST3, b_at" in out
    assert "selection-adjusted p 0.0244 (smallest attainable 0.0244 with 40 permutations)" in out
    print_verdict(tmp_path / "elsewhere" / "report.html")  # no report.json: nothing, no error
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--n-signatres", "40"], "unrecognized arguments: --n-signatres 40; did you mean --n-signatures?"),
        (["--phenotype_field", "x"], "did you mean --phenotype-field?"),
        (["--case", "aml"], "labels are case-sensitive: did you mean AML?"),
        (["--control", "ALLL"], "control label 'ALLL' not found; labels: ['ALL', 'AML']; did you mean ALL?"),
    ],
)  # fmt: skip
def test_a_misspelt_flag_or_label_gets_the_nearest_match(tmp_path, capsys, argv, said):
    files = ["--results-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path / "d")]
    assert main(["--input", str(GOLUB), *argv, *files]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and said in err, err


def test_an_unknown_flag_with_nothing_near_gets_no_guess():
    with pytest.raises(UsageError) as info:
        parse_parameters(["--zzz"])
    assert "did you mean" not in str(info.value)
