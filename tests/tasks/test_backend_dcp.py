"""The dcp backend without a network: the real SDK builds the job offline."""

import json
import os
import subprocess
import sys
import time

import pytest

from flows.params import DcpOptions
from tasks.backend_dcp import ComputeGroup, DcpError, compute_group_from, preflight
from tasks.work import WORK_MODULES, work_function_source

from ..conftest import ROOT

CLOSED = "http://127.0.0.1:9"
OFFLINE_CONFIG = """({
  scheduler: {
    location: new URL('%(s)s/'), configLocation: false,
    services: {
      eventRouter: { location: new URL('%(s)s/') }, jobSubmit: { location: new URL('%(s)s/') },
      taskDistributor: { location: new URL('%(s)s/') }, resultSubmitter: { location: new URL('%(s)s/') },
      computeGroups: { location: new URL('%(s)s/') }, pheme: { location: new URL('%(s)s/') },
    },
  },
  bank: { location: new URL('%(s)s/'), services: { bankTeller: { location: new URL('%(s)s/') } } },
  packageManager: { location: new URL('%(s)s/') },
  dcp: { connectionOptions: { default: { connectTimeout: 2, lingerTimeout: 1 } } },
})"""
BUILD = """
import json, sys, dcp
dcp.init()
from flows.params import DcpOptions
from tasks.backend_dcp import ComputeGroup, build_job, describe_job
from tasks.jobs import JobSpec
spec = JobSpec(**json.loads(sys.argv[1]))
job = build_job(dcp, spec, DcpOptions(slice_payment_offer=0.25, job_name="golub search"),
                ComputeGroup("group-key", "group-secret"))
print(json.dumps(describe_job(job)))
"""


@pytest.fixture
def offline_env(tmp_path):
    config = tmp_path / "dcp-config.js"
    config.write_text(OFFLINE_CONFIG % {"s": CLOSED})
    return {**os.environ, "DCP_CONFIG_LOCATION": config.as_uri(), "DCP_SCHEDULER_LOCATION": CLOSED}


def test_built_job_carries_what_the_local_backend_runs(offline_env):
    spec = {
        "name": "run-main#0",
        "slices": ['{"slice": 1}', '{"slice": 2}'],
        "work_source": "",
        "dataset_url": "http://10.1.2.3:5001/datasets/golub?token=t0k3n",
        "config_json": '{"case": "AML"}',
        "result_url": "http://10.1.2.3:5001/dcp-results/run?token=t0k3n",
        "result_params": {"elementType": "results", "attempt": "0"},
    }
    out = subprocess.run(
        [sys.executable, "-c", BUILD, json.dumps(spec)],
        cwd=ROOT,
        env=offline_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    job = json.loads(out.stdout.strip().splitlines()[-1])
    assert job["work_function"].strip() == work_function_source().strip()
    assert job["slices"] == spec["slices"]
    assert job["arguments"] == [spec["dataset_url"], spec["config_json"]]
    assert job["result_storage"] == spec["result_url"]
    assert job["result_params"] == spec["result_params"]
    assert job["modules"] == list(WORK_MODULES)
    assert job["compute_groups"] == [{"joinKey": "group-key", "joinSecret": "group-secret"}]
    assert job["public"]["name"] == "golub search"
    assert job["slice_payment_offer"] == 0.25


def test_preflight_names_every_problem_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("DCP_SCHEDULER_LOCATION", CLOSED)
    opts = DcpOptions(
        id_keystore=str(tmp_path / "id.keystore"),
        payment_keystore=str(tmp_path / "default.keystore"),
    )
    started = time.monotonic()
    with pytest.raises(DcpError) as info:
        preflight(opts, "http://127.0.0.1:5001", None, timeout=2)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "identity keystore" in message and "payment keystore" in message
    assert "no compute group" in message and "is loopback" in message
    assert f"scheduler {CLOSED} unreachable" in message


def test_preflight_passes_when_all_is_there(tmp_path, monkeypatch):
    listener = __import__("socket").create_server(("127.0.0.1", 0))
    monkeypatch.setenv("DCP_SCHEDULER_LOCATION", f"http://127.0.0.1:{listener.getsockname()[1]}")
    for name in ("id.keystore", "default.keystore"):
        (tmp_path / name).write_text("{}")
    opts = DcpOptions(
        id_keystore=str(tmp_path / "id.keystore"),
        payment_keystore=str(tmp_path / "default.keystore"),
    )
    preflight(opts, "http://192.0.2.10:5001", ComputeGroup("k", "s"), timeout=2)
    listener.close()


@pytest.mark.parametrize(("value", "ok"), [("key:secret", True), ("nocolon", False), (":s", False)])
def test_compute_group_from_environment(monkeypatch, value, ok):
    monkeypatch.setenv("DCP_COMPUTE_GROUP", value)
    if ok:
        group = compute_group_from("")
        assert group.join_key == "key" and "secret" not in repr(group)
    else:
        with pytest.raises(DcpError, match="joinKey:joinSecret"):
            compute_group_from("")


def test_sdk_job_without_keystores_fails_within_its_timeout(offline_env, tmp_path, monkeypatch):
    from tasks.backend_dcp import DcpJob
    from tasks.jobs import JobSpec

    for key in ("DCP_CONFIG_LOCATION", "DCP_SCHEDULER_LOCATION"):
        monkeypatch.setenv(key, offline_env[key])  # the SDK child inherits them
    spec = JobSpec(
        "t",
        ('{"slice": 1}',),
        "",
        "http://10.1.2.3:1/d?token=x",
        "{}",
        "http://10.1.2.3:1/r?token=x",
    )
    opts = DcpOptions(
        id_keystore=str(tmp_path / "none.keystore"),
        payment_keystore=str(tmp_path / "none2.keystore"),
        sdk_timeout=15,
    )
    started = time.monotonic()
    job = DcpJob(spec, opts, ComputeGroup("k", "s"))
    events = []
    while not job.done() and time.monotonic() - started < 60:
        events += job.events(timeout=0.5)
    job.cancel()
    assert job.done() and time.monotonic() - started < 30
    failures = [e.message for e in events if e.kind == "failed"]
    assert failures, events
    print(failures)
