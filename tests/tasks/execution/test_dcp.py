"""The dcp backend without a network: the real SDK builds the job offline."""

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from tasks.execution.dcp import (
    ComputeGroup,
    DcpError,
    DcpOptions,
    compute_group_from,
    preflight,
    pyodide_packages,
    requested_worktime,
    slice_number_of,
    stop_reasons,
    supervise,
)
from tasks.science.work import WORK_MODULES, work_function_source

from ...conftest import ROOT
from ...dcp_offline import CLOSED, offline_sdk_env

BUILD = """
import json, sys, dcp
dcp.init()
from tasks.execution.dcp import DcpOptions
from tasks.execution.dcp import ComputeGroup, build_job, describe_job
from tasks.execution.jobs import JobSpec
spec = JobSpec(**json.loads(sys.argv[1]))
job = build_job(dcp, spec, DcpOptions(slice_payment_offer=0.25, job_name="golub search"),
                ComputeGroup("group-key", "group-secret"))
print(json.dumps(describe_job(job)))
"""


@pytest.fixture
def offline_env(tmp_path):
    return {**os.environ, **offline_sdk_env(tmp_path)}


def built_job(spec: dict, env: dict) -> dict:
    """What `build_job` makes of a JobSpec with the real SDK offline (`describe_job`)."""
    out = subprocess.run(
        [sys.executable, "-c", BUILD, json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    job = built_job(spec, offline_env)
    assert job["work_function"].strip() == work_function_source().strip()
    assert job["slices"] == spec["slices"] and job["remote_inputs"] is False
    assert job["arguments"] == [spec["dataset_url"], spec["config_json"]]
    assert job["result_storage"] == spec["result_url"]
    assert job["result_params"] == spec["result_params"]
    assert job["modules"] == list(WORK_MODULES)
    assert job["compute_groups"] == [{"joinKey": "group-key", "joinSecret": "group-secret"}]
    assert job["public"]["name"] == "golub search"
    assert job["slice_payment_offer"] == 0.25


def test_built_job_with_remote_inputs_has_a_remote_input_set_and_a_config_url(offline_env):
    urls = [f"http://10.1.2.3:5001/inputs/run/slices/{k}?token=t0k3n" for k in (1, 2)]
    spec = {
        "name": "run-main#0",
        "slices": urls,
        "work_source": "",
        "dataset_url": "http://10.1.2.3:5001/datasets/golub?token=t0k3n",
        "config_json": "http://10.1.2.3:5001/inputs/run/config?token=t0k3n",
        "result_url": "http://10.1.2.3:5001/dcp-results/run?token=t0k3n",
        "remote_inputs": True,
    }
    job = built_job(spec, offline_env)
    assert job["remote_inputs"] is True and job["slices"] == urls
    assert job["arguments"] == [spec["dataset_url"], spec["config_json"]]


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
    from tasks.execution.dcp import DcpJob
    from tasks.execution.jobs import JobSpec

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


def test_the_package_list_is_the_one_of_the_worktime_jobs_request():
    worktime = requested_worktime()
    assert worktime.startswith("0.28.")
    packages = pyodide_packages(worktime)
    assert {m: packages[m] for m in WORK_MODULES} == {
        "numpy": "2.2.5",
        "scikit-learn": "1.7.0",
        "scipy": "1.14.1",
    }
    with pytest.raises(DcpError, match="Pyodide 0.31.0, for which no package list"):
        pyodide_packages("0.31.0")


@pytest.mark.parametrize(
    ("event", "number"),
    [({"sliceNumber": 3, "message": "x"}, 3), ({"message": "no slice"}, None), ("text", None)],
)
def test_error_events_without_a_slice_number_do_not_raise(event, number):
    assert slice_number_of(event) == number


class FakeJob:
    """The SDK job as `supervise` uses it; the scheduler is the one thing no test can reach."""

    def __init__(self, completes=False, cancel_hangs=False):
        self.cancelled, self.aio, self.js_ref = [], self, self
        self._completes, self._cancel_hangs = completes, cancel_hangs

    async def exec(self, offer):
        return "job-123"

    def wait(self):
        done = asyncio.get_running_loop().create_future()
        if self._completes:
            asyncio.get_running_loop().call_later(0.2, done.set_result, [])
        return done

    async def cancel(self, reason):
        if self._cancel_hangs:
            await asyncio.sleep(60)
        self.cancelled.append(reason)


def supervised(job, reasons, cancel_timeout=5.0):
    events, pending = [], list(reasons)

    def stop_reason():
        return pending.pop(0) if pending else None

    emit = lambda kind, element=None, message="": events.append((kind, message))  # noqa: E731
    asyncio.run(supervise(job, 0.1, stop_reason, emit, cancel_timeout))
    return events


def test_a_job_whose_round_ended_is_cancelled_on_dcp():
    job = FakeJob()
    events = supervised(job, [None, "the round ended"])
    assert job.cancelled == ["the round ended"]
    assert events == [("accepted", "job-123"), ("cancelled", "job-123: the round ended")]


def test_a_completed_job_is_not_cancelled():
    job = FakeJob(completes=True)
    assert supervised(job, []) == [("accepted", "job-123"), ("done", "job-123")]
    assert job.cancelled == []


def test_a_cancel_that_hangs_is_bounded_and_reported():
    started = time.monotonic()
    events = supervised(FakeJob(cancel_hangs=True), ["the flow process ended"], cancel_timeout=1)
    assert time.monotonic() - started < 5
    assert events[-1][0] == "cancel_failed" and "TimeoutError" in events[-1][1]


def test_the_client_ends_its_job_on_request_on_sigterm_and_when_the_flow_is_gone():
    parent, child = multiprocessing.Pipe()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        reason = stop_reasons(child, os.getppid())
        assert reason() is None
        parent.send("the round ended")
        assert reason() == "the round ended"
        os.kill(os.getpid(), signal.SIGTERM)
        assert reason() == "the DCP client was terminated"
        assert stop_reasons(child, -1)() == "the flow process ended"
    finally:
        signal.signal(signal.SIGTERM, previous)
