"""The consortium's command line: its mistakes end in one line, exit 2, before any run."""

import os
import subprocess
import sys

from ..conftest import ROOT


def federated(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m flows.federated ...` with the given environment."""
    return subprocess.run(
        [sys.executable, "-m", "flows.federated", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_federated_run_needs_a_prefect_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = federated(env, "run", "--sites", str(tmp_path / "sites.yaml"))
    assert done.returncode == 2
    assert "needs a Prefect server: set PREFECT_API_URL" in done.stderr


def test_a_bad_sites_file_is_named_in_one_line(tmp_path):
    bad = tmp_path / "sites.yaml"
    bad.write_text("federation: Golub\n")
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # never reached
    done = federated(env, "deploy", "--sites", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m flows.federated: error: {bad}: federation 'Golub' must be lowercase "
        "letters, digits and dashes (1-41)"
    ]


def test_a_missing_sites_file_is_named(tmp_path):
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = federated(env, "run", "--sites", str(tmp_path / "none.yaml"), "--n-signatures", "5")
    assert done.returncode == 2
    assert f"{tmp_path / 'none.yaml'}: file not found" in done.stderr


def test_a_misspelt_option_gets_the_nearest_one(tmp_path):
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = federated(env, "run", "--sites", str(tmp_path / "s.yaml"), "--n-signatres", "5")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m flows.federated: error: unrecognized arguments: --n-signatres 5; "
        "did you mean --n-signatures?"
    ]
