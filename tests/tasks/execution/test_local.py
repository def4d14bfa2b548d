"""The local backend against a real server on loopback."""

import dataclasses
import http.server
import json
import secrets
import threading
import time

import pytest
import requests

from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient, retrying_session
from tasks.execution.jobs import JobSpec
from tasks.execution.local import (
    FaultPlan,
    JsStringObject,
    LocalBackend,
    OriginNotAllowed,
    check_origin,
    decode_fetched,
    post_envelope,
)
from tasks.io import read_input, save_prepared
from tasks.science.dataset import PrepareOptions, prepare_dataset
from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.work import (
    remote_work_stub,
    source_sha256,
    work_function_source,
    worker_source,
)

from ...conftest import GOLUB

CONFIG = {"case": "AML", "cv_folds": 3, "seed": 1, "classifiers": ["logistic"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    opts = PrepareOptions(cv_folds=3)
    summary = save_prepared(prepare_dataset(read_input(GOLUB, opts), opts), root / "data", "golub")
    admin = secrets.token_urlsafe(24)
    embedded = EmbeddedServer.for_data(root / "data", root / "db.sqlite3", admin)
    yield ServerClient(embedded.url, admin), summary
    embedded.stop()


def make_spec(
    client,
    summary,
    run_id,
    n_slices,
    work_source=None,
    remote_inputs=False,
    remote_work: bool | str = False,
):
    """A registered run's job; `remote_work`: the stub, the source on the server.

    `remote_work` may be the sha256 the config names instead of the source's.
    """
    token = secrets.token_urlsafe(24)
    probesets = [f for f in GOLUB.read_text().split("\n", 1)[0].split("\t")[1:]]
    slices = pack_slices(plan_signatures(probesets, n_slices, 3, 5, 11), 1)
    client.register_run(run_id, "golub", token, [s["slice"] for s in slices])
    data = {s["slice"]: json.dumps(s) for s in slices}
    config_fields = {**CONFIG, "dataset_sha256": summary.sha256}
    work_url = None
    if remote_work:
        named = remote_work if isinstance(remote_work, str) else source_sha256(worker_source())
        config_fields["worker_sha256"] = named
        client.register_inputs(run_id, None, {}, work=worker_source())
        work_url, work_source = client.work_url(run_id, token), remote_work_stub()
    config = json.dumps(config_fields)
    if remote_inputs:
        client.register_inputs(run_id, config, data)
        data = {k: client.slice_url(run_id, k, token) for k in data}
        config = client.config_url(run_id, token)
    return JobSpec(
        name=run_id,
        work_url=work_url,
        slices=tuple(data.values()),
        work_source=work_source or work_function_source(),
        dataset_url=client.dataset_url("golub", token),
        config_json=config,
        result_url=client.sink_url(run_id, token),
        result_params={"elementType": "results"},
        slice_numbers=tuple(data),
        remote_inputs=remote_inputs,
    )


def run_to_end(backend, spec, bound=300):
    job, events = backend.deploy(spec), []
    deadline = time.monotonic() + bound
    while not job.done() and time.monotonic() < deadline:
        events += job.events(timeout=0.5)
    events += job.events(timeout=0)
    assert job.done(), "job did not finish within its bound"
    return events


def stored(client, run_id):
    return {item["slice"]: item["content"]["records"] for item in client.iter_results(run_id)}


def test_40_slices_with_1_and_2_workers_give_identical_records(server):
    client, summary = server
    results = {}
    for workers in (1, 2):
        run_id = f"w{workers}"
        spec = make_spec(client, summary, run_id, 40)
        backend = LocalBackend(
            workers=workers, allowed_origins=(client.base_url,), slice_timeout=120
        )
        events = run_to_end(backend, spec)
        assert sorted(e.element for e in events if e.kind == "result") == list(range(1, 41))
        assert client.status(run_id)["complete"]
        results[workers] = stored(client, run_id)
    assert results[1] == results[2] and len(results[1]) == 40


def test_slices_fetched_by_url_give_the_records_of_slices_sent_inline(server):
    client, summary = server
    backend = LocalBackend(workers=2, allowed_origins=(client.base_url,), slice_timeout=120)
    for remote in (False, True):
        spec = make_spec(client, summary, f"remote-{remote}", 4, remote_inputs=remote)
        assert all(s.startswith(client.base_url) == remote for s in spec.slices)
        events = run_to_end(backend, spec)
        assert sorted(e.element for e in events if e.kind == "result") == [1, 2, 3, 4]
    assert stored(client, "remote-True") == stored(client, "remote-False")


def test_a_fetched_work_function_gives_the_records_of_the_shipped_one(server):
    client, summary = server
    backend = LocalBackend(workers=2, allowed_origins=(client.base_url,), slice_timeout=120)
    for remote in (False, True):
        spec = make_spec(
            client, summary, f"work-{remote}", 3, remote_inputs=True, remote_work=remote
        )
        assert (spec.work_url is not None) == remote
        assert ("def score_classifier" in spec.work_source) != remote
        events = run_to_end(backend, spec)
        assert sorted(e.element for e in events if e.kind == "result") == [1, 2, 3]
    assert stored(client, "work-True") == stored(client, "work-False")


def test_a_fetched_work_function_of_another_sha256_is_a_slice_error(server):
    client, summary = server
    spec = make_spec(client, summary, "work-sha", 1, remote_work="0" * 64)
    backend = LocalBackend(workers=1, allowed_origins=(client.base_url,), slice_timeout=60)
    events = run_to_end(backend, spec)
    assert [e.kind for e in events if e.element] == ["error"]
    [error] = client.status("work-sha")["errored"]
    actual = source_sha256(worker_source())
    assert (
        f"ValueError: work function from the job's work URL has sha256 {actual}" in error["error"]
    )
    assert "the config expects " + "0" * 64 in error["error"]


def test_slices_of_a_finished_run_cannot_be_fetched(server):
    client, summary = server
    spec = make_spec(client, summary, "finished-inputs", 1, remote_inputs=True)
    client.finish_run("finished-inputs")
    backend = LocalBackend(workers=1, allowed_origins=(client.base_url,), slice_timeout=60)
    [error] = [e for e in run_to_end(backend, spec) if e.kind == "error"]
    assert "410" in error.message and "token=***" in error.message


def test_injected_faults_are_reported_exactly(server):
    client, summary = server
    spec = make_spec(client, summary, "faults", 8)
    faults = FaultPlan.from_dict({"fail": [2], "kill": [3], "hang": [4]})
    # The hang is found by the slice timeout: long enough that no working slice on a
    # loaded machine (its first one imports scikit-learn) reaches it.
    backend = LocalBackend(
        workers=2, allowed_origins=(client.base_url,), slice_timeout=30, faults=faults
    )
    events = run_to_end(backend, spec, bound=300)
    by_kind = {
        k: sorted(e.element for e in events if e.kind == k) for k in ("result", "error", "lost")
    }
    assert by_kind == {"result": [1, 5, 6, 7, 8], "error": [2], "lost": [3, 4]}
    status = client.status("faults")
    assert status["received"] == [1, 5, 6, 7, 8]
    assert [e["slice"] for e in status["errored"]] == [2] and status["missing"] == [3, 4]
    lost = {e.element: e.message for e in events if e.kind == "lost"}
    assert lost == {3: "worker died", 4: "slice timed out"}


def test_origins_not_allowed_are_refused(server):
    client, summary = server
    spec = make_spec(client, summary, "origin", 2)
    backend = LocalBackend(workers=1, allowed_origins=("http://127.0.0.1:1",), slice_timeout=60)
    events = run_to_end(backend, spec)
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 2 and all("OriginNotAllowed" in e.message for e in errors)
    with pytest.raises(OriginNotAllowed):
        check_origin("http://example.org/x", ("http://127.0.0.1:5001",))
    check_origin("http://127.0.0.1:5001/datasets/x?token=t", ("http://127.0.0.1:5001",))


def test_unknown_fault_kind_is_refused():
    known = r"unknown fault kinds \['explode'\]; known: fail, kill, hang$"
    with pytest.raises(ValueError, match=known):
        FaultPlan.from_dict({"explode": [1], "fail": [2]})


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/plain; charset=utf-8", str),
        ("text/plain", str),
        ("text/tab-separated-values", JsStringObject),
        ("text/csv; charset=utf-8", JsStringObject),
        ("application/octet-stream", str),
    ],
)
def test_fetched_urls_are_decoded_as_a_dcp_worker_does(content_type, kind):
    value = decode_fetched("a\tb\n", content_type)
    assert type(value) is kind and str(value) == "a\tb\n"
    assert decode_fetched('{"a": 1}', "application/json") == {"a": 1}


SILENT = """def evaluate_slice(datum, dataset, config):
    import json
    return json.dumps({"slice": json.loads(datum)["slice"], "records": []})
"""
RAISING = """def evaluate_slice(datum, dataset, config):
    import dcp
    dcp.progress(0.5)
    raise ValueError("no such probeset in " + str(dataset)[:9])
"""


def test_a_slice_that_never_reports_progress_fails_and_stores_nothing(server):
    client, summary = server
    spec = make_spec(client, summary, "silent", 2, work_source=SILENT)
    backend = LocalBackend(workers=1, allowed_origins=(client.base_url,), slice_timeout=60)
    events = run_to_end(backend, spec)
    errors = [e for e in events if e.kind == "error"]
    assert [e.element for e in errors] == [1, 2]
    assert all(e.message.startswith("ENOPROGRESS") for e in errors)
    status = client.status("silent")
    assert status["received"] == [] and status["missing"] == [1, 2]


def test_an_exception_is_posted_as_the_result_and_recorded_as_a_slice_error(server):
    client, summary = server
    spec = make_spec(client, summary, "raising", 1, work_source=RAISING)
    backend = LocalBackend(workers=1, allowed_origins=(client.base_url,), slice_timeout=60)
    events = run_to_end(backend, spec)
    assert [e.kind for e in events if e.element] == ["error"]
    [error] = client.status("raising")["errored"]
    assert error["error"].startswith("PythonError [EUNCAUGHT]: ValueError: no such probeset")
    assert "phenotype" in error["error"]


class FlakySink(http.server.BaseHTTPRequestHandler):
    """Answers 503 twice, then 200; or always the status in the path."""

    calls: list[str] = []

    def do_POST(self):  # named by the stdlib
        self.calls.append(self.path)
        self.rfile.read(int(self.headers["Content-Length"]))
        flaky = self.path == "/flaky" and len(self.calls) <= 2
        status = 503 if flaky else int(self.path.strip("/")) if self.path != "/flaky" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("path", "calls", "ok"), [("/flaky", 3, True), ("/409", 1, False)])
def test_posts_retry_server_errors_with_backoff_but_not_refusals(path, calls, ok):
    FlakySink.calls = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakySink)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    try:
        if ok:
            post_envelope(retrying_session(allowed_methods=None), url, {"element": "1"}, (url,))
        else:
            with pytest.raises(requests.HTTPError):
                post_envelope(retrying_session(allowed_methods=None), url, {"element": "1"}, (url,))
    finally:
        httpd.shutdown()
    assert len(FlakySink.calls) == calls


def test_a_worker_that_cannot_fetch_reports_no_token(server):
    client, summary = server
    spec = make_spec(client, summary, "no-token-leak", 1)
    secret = spec.dataset_url.split("token=")[1]
    spec = dataclasses.replace(spec, dataset_url=spec.dataset_url + "x")  # a wrong token: 403
    backend = LocalBackend(workers=1, allowed_origins=(client.base_url,), slice_timeout=60)
    [error] = [e for e in run_to_end(backend, spec) if e.kind == "error"]
    assert "403" in error.message and "token=***" in error.message
    assert secret not in error.message
