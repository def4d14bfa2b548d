"""The dcp backend without a network: the real SDK builds the job offline."""

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.execution.dcp import (
    ComputeGroup,
    DcpError,
    DcpJob,
    DcpOptions,
    compute_group_from,
    job_failure_reason,
    preflight,
    pyodide_packages,
    requested_worktime,
    slice_number_of,
    stop_reasons,
    supervise,
)
from tasks.execution.jobs import JobSpec
from tasks.science.work import WORK_MODULES, remote_work_stub, work_function_source

from ...conftest import ROOT
from ...dcp_offline import CLOSED, offline_sdk_env
from . import dcp_standin as standin

BUILD = """
import json, sys, dcp
dcp.init()
from tasks.execution.dcp import DcpOptions
from tasks.execution.dcp import ComputeGroup, build_job
from tests.dcp_offline import describe_job
from tasks.execution.jobs import JobSpec
spec = JobSpec(**json.loads(sys.argv[1]))
job = build_job(dcp, spec, DcpOptions(slice_payment_offer=0.25, job_name="golub search"),
                ComputeGroup("group-key", "group-secret"))
print(json.dumps(describe_job(job)))
"""


@pytest.fixture
def offline_env(tmp_path):
    return {**os.environ, **offline_sdk_env(tmp_path)}


def built_job(spec: dict, env: dict, script: str | None = None) -> dict:
    """What `build_job` makes of a JobSpec with the real SDK offline (`describe_job`)."""
    out = subprocess.run(
        [sys.executable, "-c", script or BUILD, json.dumps(spec)],
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
        "work_source": work_function_source(),
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
        "work_source": work_function_source(),
        "dataset_url": "http://10.1.2.3:5001/datasets/golub?token=t0k3n",
        "config_json": "http://10.1.2.3:5001/inputs/run/config?token=t0k3n",
        "result_url": "http://10.1.2.3:5001/dcp-results/run?token=t0k3n",
        "remote_inputs": True,
    }
    job = built_job(spec, offline_env)
    assert job["remote_inputs"] is True and job["slices"] == urls
    assert job["arguments"] == [spec["dataset_url"], spec["config_json"]]


ARGUMENTS = """
import json, sys, dcp
dcp.init()
import pythonmonkey as pm
from tasks.execution.dcp import DcpOptions, build_job
from tasks.execution.jobs import JobSpec
job = build_job(dcp, JobSpec(**json.loads(sys.argv[1])), DcpOptions(), None)
describe = pm.eval("(a) => Array.from(a, (v) => v instanceof URL ? {url: v.href} : v)")
print(json.dumps({"arguments": [dict(a) if not isinstance(a, str) else a
                                for a in describe(job.js_ref.jobArguments)],
                  "work_function": job._get_raw_work_function()}))
"""


def test_built_job_with_a_remote_work_function_carries_the_stub_and_the_work_url(offline_env):
    work_url = "http://10.1.2.3:5001/inputs/run/work?token=t0k3n"
    spec = {
        "name": "run-main#0",
        "slices": ["http://10.1.2.3:5001/inputs/run/slices/1?token=t0k3n"],
        "work_source": remote_work_stub(),
        "dataset_url": "http://10.1.2.3:5001/datasets/golub?token=t0k3n",
        "config_json": "http://10.1.2.3:5001/inputs/run/config?token=t0k3n",
        "result_url": "http://10.1.2.3:5001/dcp-results/run?token=t0k3n",
        "remote_inputs": True,
        "work_url": work_url,
    }
    job = built_job(spec, offline_env, ARGUMENTS)
    # URL objects, as the dataset's: the worker fetches each before the first slice.
    assert job["arguments"] == [
        {"url": spec["dataset_url"]},
        {"url": spec["config_json"]},
        {"url": work_url},
    ]
    assert job["work_function"].strip() == remote_work_stub().strip()
    assert "def score_classifier" not in job["work_function"]


def test_remote_work_function_is_on_by_default_and_can_be_turned_off():
    assert DcpOptions().remote_work_function is True
    assert DcpOptions(remote_work_function=False).remote_work_function is False


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
    job = DcpJob(spec, opts, ComputeGroup("k", "s"))
    events = follow(job)
    job.cancel()
    assert job.done()
    failures = [e.message for e in events if e.kind == "failed"]
    assert len(failures) == 1 and "identity keystore" in failures[0], events


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


# --- The client's lifecycle: a stand-in for the SDK part, the real child session and parent ---

SPEC = JobSpec(
    "lifecycle#0",
    tuple(f'{{"slice": {k}}}' for k in (1, 2, 3)),
    "",
    "http://192.0.2.10:5001/datasets/golub?token=s3cr3t",
    "{}",
    "http://192.0.2.10:5001/dcp-results/run?token=s3cr3t",
)
BOUND = 180  # seconds: a bound against hangs, never a speed expectation


def standin_job(tmp_path, stage: str, cancel_timeout: float = 3.0):
    """A DcpJob whose child runs the stand-in client at `stage`; its log of deploys and cancels."""
    log = tmp_path / "standin.log"
    opts = DcpOptions(sdk_timeout=600, cancel_timeout=cancel_timeout)
    job = DcpJob(SPEC, opts, None, standin.client(log, stage), standin.canceller(log))
    return job, log


def follow(job, until=lambda events: False) -> list:
    """The job's events until it is done or `until(events)`."""
    events, started = [], time.monotonic()
    while not job.done() and time.monotonic() - started < BOUND:
        events += job.events(timeout=0.5)
        if until(events):
            break
    return events


def seen(kind):
    return lambda events: kind in [e.kind for e in events]


def cancels(log) -> list[str]:
    return [line for line in standin.lines(log) if line.split()[0] in ("cancel", "byid")]


def deploys(log) -> list[str]:
    return [line for line in standin.lines(log) if line.startswith("deploy ")]


@pytest.mark.parametrize("stage", ["after_id", "after_accepted", "results_then_die"])
def test_a_client_killed_after_its_job_id_existed_gets_the_job_cancelled_once_by_id(
    tmp_path, stage
):
    job, log = standin_job(tmp_path, stage)
    events = follow(job)
    assert job.done(), events
    # done() is True only once the cancel by id returned: the next round cannot come first.
    assert cancels(log) == [f"byid {standin.JOB_ID}"] and len(deploys(log)) == 1
    assert job.job_id == standin.JOB_ID
    failed = [e.message for e in events if e.kind == "failed"]
    assert len(failed) == 1 and "the DCP client ended before the job did" in failed[0]
    job.cancel()  # what a round does in its finally: nothing more is cancelled
    assert len(cancels(log)) == 1


def test_a_client_killed_before_deploying_leaves_nothing_to_cancel(tmp_path):
    job, log = standin_job(tmp_path, "before_deploy")
    events = follow(job)
    assert job.done() and cancels(log) == [] and deploys(log) == []
    assert job.job_id.startswith("dcp-pending-")
    assert [e.kind for e in events].count("failed") == 1


def test_a_job_the_flow_cancels_is_cancelled_once_by_its_client(tmp_path):
    job, log = standin_job(tmp_path, "results")
    follow(job, until=seen("result"))
    job.cancel("the round ended")
    events = job.events(timeout=0)
    assert cancels(log) == [f"cancel {standin.JOB_ID}"]
    assert [e.kind for e in events if e.kind in ("cancelled", "failed")] == ["cancelled"]
    assert job.done()


@pytest.mark.parametrize("stage", ["cancel_dies", "cancel_hangs"])
def test_a_client_that_dies_or_hangs_while_cancelling_gets_its_job_cancelled_by_id(tmp_path, stage):
    job, log = standin_job(tmp_path, stage)
    follow(job, until=seen("accepted"))
    job.cancel("the flow run was cancelled")
    assert cancels(log) == [f"byid {standin.JOB_ID}"]
    kinds = [e.kind for e in job.events(timeout=0)]
    assert kinds[-1] == "cancelled" and "failed" not in kinds and job.done()


def test_a_client_stuck_before_accepted_is_stopped_and_its_job_cancelled_by_id(tmp_path):
    job, log = standin_job(tmp_path, "hangs_deploying", cancel_timeout=1.0)
    started = time.monotonic()
    while "hanging" not in standin.lines(log) and time.monotonic() - started < BOUND:
        time.sleep(0.2)
    job.cancel()
    assert cancels(log) == [f"byid {standin.JOB_ID}"]
    assert "cancelled" in [e.kind for e in job.events(timeout=0)] and job.done()


def test_a_completed_job_is_not_cancelled(tmp_path):
    job, log = standin_job(tmp_path, "done")
    events = follow(job)
    assert job.done() and cancels(log) == []
    assert "done" in [e.kind for e in events] and "failed" not in [e.kind for e in events]


@pytest.mark.parametrize(
    ("stage", "said"),
    [
        ("nofunds", "the payment account has no funds: add compute credits to it"),
        ("eperm", "workers could not reach http://192.0.2.10:5001: add it to their allowed"),
        ("rejected", "the payment account has no funds to deploy the job"),
    ],
)
def test_a_job_level_failure_ends_the_job_at_once_with_one_reason(tmp_path, stage, said):
    job, log = standin_job(tmp_path, stage)
    events = follow(job)
    assert job.done(), events  # without a cancel() from the round
    failed = [e.message for e in events if e.kind == "failed"]
    assert len(failed) == 1 and said in failed[0] and "s3cr3t" not in failed[0]
    assert len(cancels(log)) == 1 and len(deploys(log)) == 1
    assert "cancelled" not in [e.kind for e in events]  # the failure is how the round ended


FLOW = """
import sys, time
from pathlib import Path
from tasks.execution.dcp import DcpJob, DcpOptions
from tests.tasks.execution import dcp_standin as standin
from tests.tasks.execution.test_dcp import SPEC
log = Path(sys.argv[1])
job = DcpJob(SPEC, DcpOptions(cancel_timeout=5), None, standin.client(log, "results"),
             standin.canceller(log))
while "result" not in [e.kind for e in job.events(timeout=0.5)]:
    pass
print(job._process.pid, flush=True)
time.sleep(3600)
"""


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


def test_a_flow_process_killed_mid_job_has_its_client_cancel_the_job_once(tmp_path):
    log = tmp_path / "standin.log"
    command = [sys.executable, "-c", FLOW, str(log)]
    flow = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        client_pid = int(flow.stdout.readline())
    finally:
        flow.kill()
        flow.wait(timeout=60)
    started = time.monotonic()
    while not gone(client_pid) and time.monotonic() - started < BOUND:
        time.sleep(0.2)
    assert gone(client_pid)
    assert cancels(log) == [f"cancel {standin.JOB_ID}"] and len(deploys(log)) == 1


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


def test_a_stop_before_the_id_was_reported_needs_no_cancel():
    events = []

    class Session:
        job_id = None
        emit = staticmethod(lambda kind, element=None, message="": events.append(kind))
        stop_reason = staticmethod(lambda: "the round ended")

    async def never(reason):
        raise AssertionError("nothing was submitted, so nothing is cancelled")

    async def run():
        await supervise(asyncio.get_running_loop().create_future(), never, Session(), 1.0)

    asyncio.run(run())
    assert events == ["stopped"]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ("DCPError: Access Denied::Failed to add job (DCPL-1100)", "check the join key"),
        ("Error: ENOPROGRESS slice never reported", "a slice reported no progress"),
        ("something\nnew  happened", "DCP refused or ended the job: something new happened"),
    ],
)
def test_job_failures_are_said_in_one_line_with_what_to_do(error, said):
    reason = job_failure_reason(RuntimeError(error))
    assert said in reason and "\n" not in reason
