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
from tasks.science.work import (
    remote_work_stub,
    source_sha256,
    work_function_source,
    worker_source,
)
from tasks.science.worker import CLASSIFIERS, evaluate_slice

from ..conftest import GOLUB
from ..dcp_offline import offline_sdk_env
from .harness import export_job, run_slice
from .pyodide_dist import pyodide_dir

# Each test boots Pyodide in Node: beside `make test` on 2 cores one took over 300 s (CI,
# 2026-12-02), so the bound is against a hang only.
pytestmark = [pytest.mark.worktime, pytest.mark.timeout(1200)]
PROBE = """def probe(datum, dataset, config, *work):
    import json
    import dcp
    dcp.progress()
    return json.dumps([type(v).__name__ for v in (datum, dataset, config, *work)])
"""
SILENT = """def silent(datum, *arguments):
    return "{}"
"""
# What the work function's source holds and a remote stub's job must not: the method.
METHOD = ["def score_classifier", "RandomForestClassifier", "StratifiedKFold", *CLASSIFIERS]


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

    def context(self, backend, token: str, remote_work: bool = True, **config) -> JobContext:
        """What a run's jobs share, as the flow makes it (the remote stub unless told)."""
        defaults = {"case": "AML", "cv_folds": 3, "seed": 1, "classifiers": CLASSIFIERS}
        return JobContext(
            backend=backend,
            client=self.client,
            token=token,
            dataset_name="golub",
            config={**defaults, "dataset_sha256": self.summary.sha256, **config},
            work_source=remote_work_stub() if remote_work else work_function_source(),
            max_retries=1,
            slice_timeout=300,
            deadline=time.monotonic() + 900,
            retry_backoff=0.0,
            work_text=worker_source() if remote_work else "",
        )

    def spec(
        self,
        run_id: str,
        slices: list[dict],
        remote_inputs: bool = True,
        remote_work: bool = True,
        served_work: str | None = None,
    ) -> JobSpec:
        """A registered run's first job, built and registered as `rounds.run_slices` does.

        With `served_work` the server serves that text as the work source (a tampered one)
        while the config names the real source's sha256.
        """
        token = secrets.token_urlsafe(24)
        self.client.register_run(run_id, "golub", token, [s["slice"] for s in slices])
        ctx = self.context(Unused(remote_inputs), token, remote_work)
        listed = rounds.ListedSlices({s["slice"]: s for s in slices})
        if served_work is not None:
            config = rounds.config_text(ctx)
            self.client.register_inputs(run_id, config, listed.texts(), work=served_work)
        elif rounds.needs_registration(ctx):
            rounds.register_inputs(ctx, run_id, listed)
        return rounds.job_spec(ctx, run_id, run_id, listed, 0, listed.numbers())

    def export(self, spec: JobSpec, work_function: str = "") -> Path:
        out = self.tmp / f"{spec.name.replace('#', '-')}.kvin"
        return export_job(spec, out, self.offline_sdk, work_function)

    def fetch(self, url: str) -> str:
        response = requests.get(url, timeout=30)
        response.raise_for_status()
        return response.text

    def run(self, job_file: Path, element: int) -> dict:
        return run_slice(job_file, element, self.pyodide, self.client.base_url)


@dataclasses.dataclass
class Unused:
    """The backend of a job that is exported, never deployed."""

    remote_inputs: bool
    parallelism: int = 1


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


@pytest.mark.parametrize("remote_inputs", [True, False])
def test_the_work_function_receives_str_arguments(worker, remote_inputs):
    spec = worker.spec(f"types-{remote_inputs}", golub_slices(1, 1), remote_inputs)
    report = worker.run(worker.export(spec, work_function=PROBE), 1)
    assert report["verdict"] == "complete", report
    # datum, dataset, config and the work function's source, fetched like the dataset
    assert json.loads(report["result"]) == ["str", "str", "str", "str"]


@pytest.mark.parametrize("remote_inputs", [True, False])
def test_with_remote_inputs_the_job_the_sdk_builds_names_no_probeset_label_or_dataset(
    worker, remote_inputs
):
    slices = golub_slices(4, 2)
    spec = worker.spec(f"hidden-{remote_inputs}", slices, remote_inputs)
    exported = worker.export(spec).read_text()
    shipped = exported.replace(spec.result_url.split("token=")[1], "<token>")  # random text
    probesets = {p for s in slices for sig in s["signatures"] for p in sig["probesets"]}
    secrets_of_the_study = [*probesets, "AML", worker.summary.sha256]
    found = [text for text in secrets_of_the_study if text in shipped]
    if remote_inputs:
        assert found == []
        assert spec.slices[0] in exported and spec.config_json in exported  # URLs, as such
    else:  # the contrast: the same check finds them in a job that carries its data
        assert set(found) == set(secrets_of_the_study)


def test_with_a_remote_work_function_the_job_carries_neither_the_method_nor_classifiers(worker):
    slices = golub_slices(2, 1)
    spec = worker.spec("stub-job", slices)
    remote = worker.export(spec).read_text()
    inline = worker.export(worker.spec("inline-job", slices, remote_work=False)).read_text()
    assert [text for text in METHOD if text in remote] == []
    assert spec.work_url in remote  # the source's URL, as such
    # The contrast: the same check finds all of it in a job that ships the source.
    assert [text for text in METHOD if text in inline] == METHOD
    sizes = {"remote_stub": len(remote.encode()), "inline_source": len(inline.encode())}
    print(f"exported job bytes: {sizes}")
    assert sizes["remote_stub"] < sizes["inline_source"] / 2, sizes


def test_a_work_source_of_another_sha256_ends_as_a_slice_error_that_says_so(worker):
    tampered = worker_source() + "\n# changed on the server\n"
    spec = worker.spec("tampered", golub_slices(1, 1), served_work=tampered)
    assert worker.fetch(spec.work_url) == tampered
    report = worker.run(worker.export(spec), 1)
    assert report["verdict"] == "workError", report
    message = (
        f"ValueError: work function from the job's work URL has sha256 {source_sha256(tampered)}, "
        f"the config expects {source_sha256(worker_source())}"
    )
    assert message in report["result"]["message"]
    [error] = worker.client.status("tampered")["errored"]
    assert message in error["error"]  # the sink's slice error, which the flow retries


def test_a_slice_runs_as_on_cpython_and_reaches_the_sink_once_even_when_re_executed(worker):
    # 10 signatures x 6 classifiers: a result POST of 60 records through the worker's code.
    slices = golub_slices(10, 10)
    spec = worker.spec("golub", slices)
    job = worker.export(spec)
    first, again = worker.run(job, 1), worker.run(job, 1)
    assert first["verdict"] == again["verdict"] == "complete", first
    assert first["progressEvents"][-1] == 1 and len(first["progressEvents"]) >= 10 + 1
    assert first["receipt"]["recorded"] == "stored"
    assert again["receipt"]["recorded"] == "duplicate"  # other timings, same records
    # The worker fetched its datum, the config, the dataset and the work source from the server.
    assert spec.remote_inputs and spec.work_url
    datum, config = worker.fetch(spec.slices[0]), worker.fetch(spec.config_json)
    assert json.loads(datum) == slices[0] and json.loads(config)["case"] == "AML"
    assert worker.fetch(spec.work_url) == worker_source()
    on_pyodide = json.loads(first["result"])
    on_cpython = json.loads(evaluate_slice(datum, worker.fetch(spec.dataset_url), config))
    assert on_pyodide["records"] == on_cpython["records"]
    assert on_pyodide["timings"]["cpu_seconds"] is None
    # The flow's own record fetch and aggregation accept what arrived.
    contents = [item["content"] for item in worker.client.iter_results("golub")]
    frame = records_from_results(contents)
    assert len(frame) == 10 * len(CLASSIFIERS) and frame["auc"].notna().all()


def test_a_slice_that_never_reports_progress_is_rejected_and_stores_nothing(worker):
    job = worker.export(worker.spec("silent", golub_slices(1, 1)), work_function=SILENT)
    report = worker.run(job, 1)
    assert report["verdict"] == "rejected" and report["error"]["errorCode"] == "ENOPROGRESS"
    assert worker.client.status("silent")["received"] == []


class WorktimeBackend:
    """Runs each job's slices on the worktime harness, one after the other.

    A first attempt is sent with the config URL of a run on another dataset, so its work
    function raises on the worker.
    """

    parallelism = 1
    remote_inputs = True

    def __init__(self, worker: Worker, wrong_config_url: str) -> None:
        self.worker, self.wrong_config_url = worker, wrong_config_url

    def deploy(self, spec: JobSpec):
        if spec.attempt == 0:
            spec = dataclasses.replace(spec, config_json=self.wrong_config_url)
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
    for run_id in ("retried", "wrong-dataset"):
        worker.client.register_run(run_id, "golub", token, [s["slice"] for s in slices])
    config = {"case": "AML", "cv_folds": 3, "classifiers": ["logistic"], "dataset_sha256": "0" * 64}
    config["worker_sha256"] = source_sha256(worker_source())  # the work source is not at fault
    worker.client.register_inputs("wrong-dataset", json.dumps(config), {})
    backend = WorktimeBackend(worker, worker.client.config_url("wrong-dataset", token))
    ctx = worker.context(backend, token, classifiers=["logistic"])
    by_number = {s["slice"]: s for s in slices}
    outcome = rounds.run_slices(ctx, "retried", "retried", by_number, poll_interval=0.05)
    assert outcome.failed == {}
    assert [a.ended for a in outcome.rounds] == ["done", "done"]
    first = outcome.rounds[0].failed
    assert sorted(first) == [1, 2]
    assert all("ValueError: dataset sha256" in reason for reason in first.values()), first
    assert worker.client.status("retried")["complete"]
