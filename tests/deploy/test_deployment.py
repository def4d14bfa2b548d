"""The used-by path for real: Prefect server, work pool, deploy, deployment run, worker."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from server.embedded import free_loopback_port

from ..conftest import ROOT

PREFECT = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "prefect")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_loopback_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(env["PREFECT_API_URL"] + "/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.skip(f"prefect server did not start: {(home / 'server.log').read_text()[-500:]}")
    yield env
    server.terminate()
    server.wait(30)


def run_logs(env, flow_run_id: str) -> str:
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC"}
    logs = requests.post(f"{env['PREFECT_API_URL']}/logs/filter", json=body, timeout=10).json()
    return "\n".join(entry["message"] for entry in logs)


def prefect(env, *args, timeout=300, cwd=ROOT):
    done = subprocess.run(
        [PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """The three deployments of prefect.yaml on a process work pool."""
    prefect(prefect_server, "work-pool", "create", "signature-search", "--type", "process")
    prefect(prefect_server, "--no-prompt", "deploy", "--all")
    return prefect_server


def api(env, method: str, path: str, body: dict | None = None):
    response = requests.request(method, env["PREFECT_API_URL"] + path, json=body, timeout=10)
    response.raise_for_status()
    return response.json() if response.content else None


def test_deployment_run_completes_and_writes_its_report(deployed, tmp_path):
    env = deployed
    params = {
        "n_signatures": 12,
        "signatures_per_slice": 4,
        "classifiers": ["logistic"],
        "cv_folds": 3,
        # No permutation job: it runs as the main job does, and test_flow's reference has one.
        "n_permutations": 0,
        "roc_signatures": 0,
        "results_dir": str(tmp_path / "results"),
        "data_dir": str(tmp_path / "data"),
        "database": str(tmp_path / "db.sqlite3"),
        "workers": 1,
    }
    out = prefect(
        env, "deployment", "run", "signature-search/local", "--params", json.dumps(params)
    )
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    # The worker starts elsewhere: the pull step must still find the project.
    prefect(env, "worker", "start", "--pool", "signature-search", "--run-once", cwd=tmp_path)
    run = api(env, "GET", f"/flow_runs/{flow_run_id}")
    assert run["state"]["type"] == "COMPLETED", run_logs(env, flow_run_id)[-3000:]
    assert run["parameters"]["input_path"] == "input/golub_all_aml.tsv"  # the deployment's
    assert re.fullmatch(r"golub_all_aml-AML-vs-ALL-12sig-\d{8}-\d{6}-[0-9a-f]{6}", run["name"])
    reports = list((tmp_path / "results").glob("*/report.html"))
    assert len(reports) == 1
    deployments = api(env, "POST", "/deployments/filter", {})
    by_name = {d["name"]: d for d in deployments}
    assert set(by_name) == {"local", "nightly", "dcp"}
    assert by_name["nightly"]["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    assert by_name["nightly"]["parameters"]["extend_search"] is True


def test_a_run_s_parameters_merge_with_the_deployment_s(deployed):
    out = prefect(
        deployed, "deployment", "run", "signature-search/dcp", "--params", '{"n_signatures": 12}'
    )
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    parameters = api(deployed, "GET", f"/flow_runs/{flow_run_id}")["parameters"]
    api(deployed, "DELETE", f"/flow_runs/{flow_run_id}")  # no worker may pick it up
    assert parameters["n_signatures"] == 12
    assert parameters["backend"] == "dcp" and parameters["dcp"]["target_slice_seconds"] == 250
    assert parameters["server_url"] == "http://192.0.2.10:5001"
    assert parameters["dcp"]["compute_group_block"] == "dcp-compute-group"


@pytest.mark.parametrize(
    "params",
    [
        {"case": "", "sample_sheet": "", "ca_bundle": ""},  # what the form sends left empty
        {"dcp": {"slice_payment_offer": None}},  # a nested optional: null or not sent
    ],
)
def test_the_deployment_takes_an_optional_field_empty_or_null(deployed, params):
    command = ["deployment", "run", "signature-search/local", "--params", json.dumps(params)]
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", prefect(deployed, *command)).group(1)
    parameters = api(deployed, "GET", f"/flow_runs/{flow_run_id}")["parameters"]
    api(deployed, "DELETE", f"/flow_runs/{flow_run_id}")  # no worker may pick it up
    assert {k: parameters[k] for k in params} == params


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"classifiers": ["knn"]}, "Validation failed for field 'classifiers[0]'"),
        ({"backend": "slurm"}, "'slurm' is not one of ['local', 'dcp']"),
        ({"n_signatures": 0}, "0 is less than the minimum of 1"),
        ({"case": None}, "None is not of type 'string'"),  # an optional text is unset by ""
        ({"faults": {"fail": [1]}}, "specified but not found on the deployment: 'faults'"),
    ],
)
def test_the_deployment_refuses_what_the_form_would(deployed, params, said):
    command = [PREFECT, "deployment", "run", "signature-search/local", "--params"]
    done = subprocess.run(
        [*command, json.dumps(params)],
        env=deployed,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "UUID:" not in done.stdout
    assert said in " ".join(done.stdout.split()), done.stdout
