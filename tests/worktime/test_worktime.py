"""DCP worktime conformance: the job as the SDK builds it, run as a DCP worker runs it.

`make test-dcp-worktime` runs these. Each slice goes through dcp-client's own Pyodide
worktime under real Pyodide in Node (`run-slice.js`), fetching the dataset from the real
server on loopback and posting to the real sink; see ../../README.md, "DCP worktime
conformance", and ../shared/DCP-WORKTIME.md.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path

import pytest
import requests

from server.embedded import EmbeddedServer
from tasks.execution import rounds
from tasks.execution.client import ServerClient
from tasks.execution.jobs import JobSpec, SliceEvent
from tasks.execution.rounds import JobContext
from tasks.io import read_input, save_prepared
from tasks.science.dataset import PrepareOptions, prepare_dataset
from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.tables import records_from_results
from tasks.science.work import evaluate_slice

from ..conftest import GOLUB
from ..dcp_offline import offline_sdk_env
from .harness import export_job, run_slice
from .pyodide_dist import pyodide_dir

pytestmark = pytest.mark.worktime
CLASSIFIERS = ["logistic", "logistic_l1", "bagging", "random_forest", "svm", "decision_tree"]
PROBE = """def probe(datum, dataset, config):
    import json
    import dcp
    dcp.progress()
    return json.dumps([type(v).__name__ for v in (datum, dataset, config)])
"""
SILENT = """def silent(datum, dataset, config):
    return "{}"
"""


@pytest.fixture(scope="module")
def pyodide(tmp_path_factory):
    return pyodide_dir()


@pytest.fixture(scope="module")
def offline_sdk(tmp_path_factory):
    return offline_sdk_env(tmp_path_factory.mktemp("dcp"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    opts = PrepareOptions(cv_folds=3)
    summary = save_prepared(prepare_dataset(read_input(GOLUB, opts), opts), root / "data", "golub")
    admin = secrets.token_urlsafe(24)
    embedded = EmbeddedServer.for_data(root / "data", root / "db.sqlite3", admin)
    yield ServerClient(embedded.url, admin), summary
    embedded.stop()


class Worker:
    """Builds jobs with the real SDK (offline) and runs their slices on the worktime harness."""

    def __init__(self, client, summary, offline_sdk, pyodide, tmp_path):
        self.client, self.summary = client, summary
        self.offline_sdk, self.pyodide, self.tmp = offline_sdk, pyodide, tmp_path

    def spec(self, run_id, slices, attempt=0, **config) -> JobSpec:
        token = secrets.token_urlsafe(24)
        if attempt == 0:
            self.client.register_run(run_id, "golub", token, [s["slice"] for s in slices])
            self.token = token
        config = {"case": "AML", "cv_folds": 3, "seed": 1, "classifiers": CLASSIFIERS, **config}
        config.setdefault("dataset_sha256", self.summary.sha256)
        return JobSpec(
            name=f"{run_id}#{attempt}",
            slices=tuple(json.dumps(s, sort_keys=True) for s in slices),
            work_source="",
            dataset_url=self.client.dataset_url("golub", self.token),
            config_json=json.dumps(config, sort_keys=True),
            result_url=self.client.sink_url(run_id, self.token),
            result_params={"elementType": "results", "attempt": str(attempt)},
        )

    def export(self, spec: JobSpec, work_function: str = "") -> Path:
        out = self.tmp / f"{spec.name.replace('#', '-')}.kvin"
        return export_job(spec, out, self.offline_sdk, work_function)

    def fetch_dataset(self) -> str:
        response = requests.get(self.client.dataset_url("golub", self.token), timeout=30)
        response.raise_for_status()
        return response.text

    def run(self, job_file: Path, element: int) -> dict:
        return run_slice(job_file, element, self.pyodide, self.client.base_url)


@pytest.fixture
def worker(server, offline_sdk, pyodide, tmp_path):
    client, summary = server
    return Worker(client, summary, offline_sdk, pyodide, tmp_path)


def golub_slices(n_signatures: int, per_slice: int, seed: int = 11) -> list[dict]:
    probesets = GOLUB.read_text().split("\n", 1)[0].split("\t")[1:]
    return pack_slices(plan_signatures(probesets, n_signatures, 5, 9, seed), per_slice)


def test_the_job_the_sdk_builds_asks_for_the_worktime_we_check(worker):
    job = worker.export(worker.spec("asks", golub_slices(1, 1)))
    report = worker.run(job, 1)
    assert report["worktime"]["requested"] == "pyodide ^0.28.0"


def test_the_work_function_receives_str_arguments(worker):
    job = worker.export(worker.spec("types", golub_slices(1, 1)), work_function=PROBE)
    report = worker.run(job, 1)
    assert report["verdict"] == "complete", report
    assert json.loads(report["result"]) == ["str", "str", "str"]


def test_a_slice_runs_as_on_cpython_and_reaches_the_sink_once_even_when_re_executed(worker):
    slices = golub_slices(3, 3)
    spec = worker.spec("golub", slices)
    job = worker.export(spec)
    first, again = worker.run(job, 1), worker.run(job, 1)
    assert first["verdict"] == again["verdict"] == "complete", first
    assert first["progressEvents"][-1] == 1 and len(first["progressEvents"]) >= 3 + 1
    assert first["receipt"]["recorded"] == "stored"
    assert again["receipt"]["recorded"] == "duplicate"  # other timings, same records
    on_pyodide = json.loads(first["result"])
    on_cpython = json.loads(
        evaluate_slice(spec.slices[0], worker.fetch_dataset(), spec.config_json)
    )
    assert on_pyodide["records"] == on_cpython["records"]
    assert on_pyodide["timings"]["cpu_seconds"] is None
    # The flow's own record fetch and aggregation accept what arrived.
    contents = [item["content"] for item in worker.client.iter_results("golub")]
    frame = records_from_results(contents)
    assert len(frame) == 3 * len(CLASSIFIERS) and frame["auc"].notna().all()


def test_a_slice_that_never_reports_progress_is_rejected_and_stores_nothing(worker):
    job = worker.export(worker.spec("silent", golub_slices(1, 1)), work_function=SILENT)
    report = worker.run(job, 1)
    assert report["verdict"] == "rejected" and report["error"]["errorCode"] == "ENOPROGRESS"
    assert worker.client.status("silent")["received"] == []


class WorktimeBackend:
    """Runs each job's slices on the worktime harness, one after the other.

    A first attempt is sent with a config naming another dataset, so its work function
    raises on the worker.
    """

    parallelism = 1

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def deploy(self, spec: JobSpec):
        if spec.attempt == 0:
            wrong = {**json.loads(spec.config_json), "dataset_sha256": "0" * 64}
            spec = dataclasses.replace(spec, config_json=json.dumps(wrong))
        job_file = self.worker.export(spec)
        events = [SliceEvent("accepted", message=spec.name)]
        for element in range(1, len(spec.slices) + 1):
            report = self.worker.run(job_file, element)
            if report["verdict"] == "complete":
                events.append(SliceEvent("result", element, report["seconds"]))
            else:  # the worker's `error` event carries the error's message
                message = (report.get("result") or report.get("error") or {}).get("message", "")
                events.append(SliceEvent("error", element, report["seconds"], message))
        return FinishedJob(spec.name, events + [SliceEvent("done", message=spec.name)])


class FinishedJob:
    def __init__(self, job_id: str, events: list[SliceEvent]) -> None:
        self.job_id, self._events = job_id, events

    def events(self, timeout: float) -> list[SliceEvent]:
        events, self._events = self._events, []
        return events

    def done(self) -> bool:
        return not self._events

    def cancel(self) -> None:
        self._events = []


def test_an_exception_on_a_worker_is_a_slice_error_that_the_flow_retries(worker):
    slices = golub_slices(2, 1)
    token = secrets.token_urlsafe(24)
    worker.client.register_run("retried", "golub", token, [s["slice"] for s in slices])
    config = {"case": "AML", "cv_folds": 3, "seed": 1, "classifiers": ["logistic"]}
    ctx = JobContext(
        backend=WorktimeBackend(worker),
        client=worker.client,
        token=token,
        dataset_name="golub",
        config={**config, "dataset_sha256": worker.summary.sha256},
        work_source="",
        max_retries=1,
        slice_timeout=300,
        deadline=time.monotonic() + 900,
        retry_backoff=0.0,
    )
    by_number = {s["slice"]: s for s in slices}
    outcome = rounds.run_slices(ctx, "retried", "retried", by_number, poll_interval=0.05)
    assert outcome.failed == {}
    assert [a.ended for a in outcome.attempts] == ["done", "done"]
    first = outcome.attempts[0].failed
    assert sorted(first) == [1, 2]
    assert all("ValueError: dataset sha256" in reason for reason in first.values()), first
    assert worker.client.status("retried")["complete"]
