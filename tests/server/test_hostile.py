"""Hostile and malformed requests: every one gets a 4xx with a reason, never a 500."""

import json
import os
import socket
import sqlite3
import stat
import threading
import time

import pytest
import requests

from server import create_app
from tasks.redact import redact

from .conftest import ADMIN, DATASET, RUN_TOKEN, predictions, register, result_content

AUTH = {"Authorization": f"Bearer {ADMIN}"}
HUGE = str(2**70)


def sink(base, run="run1", token=RUN_TOKEN):
    return f"{base}/dcp-results/{run}?token={token}"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"element": "1", "attempt": HUGE, "content": "{}"}, "'attempt' is too large"),
        ({"element": HUGE, "content": "{}"}, "'element' is too large"),
        ({"element": " 5 ", "content": "{}"}, "ASCII digits"),
        ({"element": "+5", "content": "{}"}, "ASCII digits"),
        ({"element": "0_5", "content": "{}"}, "ASCII digits"),
        ({"element": "\u0665", "content": "{}"}, "ASCII digits"),
        ({"element": "1", "content": '{"slice": 1, "records": [], "x": "\\ud800"}'}, "surrogate"),
        ({"element": "1", "content": '{"slice": 1, "records": [{"auc": NaN}]}'}, "NaN"),
        ({"element": "1", "content": '{"slice": 1, "records": [{"auc": Infinity}]}'}, "NaN"),
    ],
)
def test_hostile_envelopes_get_400_with_a_reason(live_server, data, reason):
    register(live_server)
    response = requests.post(sink(live_server), data=data, timeout=5)
    assert response.status_code == 400, response.text
    assert reason in response.json()["reason"]
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert status["received"] == [] and status["errored"] == []


@pytest.mark.parametrize(
    "query", [f"cursor={HUGE}", "cursor=-1", "limit=\u00b2", f"limit={HUGE}", "cursor=1e3"]
)
def test_hostile_result_queries_get_400(client, query):
    client.post("/runs", headers=AUTH, json=registration())
    response = client.get(f"/runs/run1/results?{query}", headers=AUTH)
    assert response.status_code == 400 and response.json["reason"]


def registration(**changes):
    body = {"run_id": "run1", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2, 3]}
    return {**body, **changes}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/runs", registration(expected=[2**70]), 400),
        ("/runs", registration(dataset="no-such-dataset"), 404),
        ("/runs/run1/attempts", {"attempt": 2**70, "slices": [1]}, 400),
        ("/runs/run1/attempts", {"attempt": 1, "slices": [2**70]}, 400),
    ],
)
def test_hostile_admin_bodies_get_4xx(client, path, body, status):
    if path != "/runs":
        assert client.post("/runs", headers=AUTH, json=registration()).status_code == 201
    response = client.post(path, headers=AUTH, json=body)
    assert response.status_code == status and response.json["reason"]


def test_without_a_token_known_and_unknown_runs_and_datasets_look_the_same(live_server):
    register(live_server)
    answers = {
        requests.post(f"{live_server}/dcp-results/{run}", data={}, timeout=5).status_code
        for run in ("run1", "nope")
    }
    answers |= {
        requests.get(f"{live_server}/datasets/{name}", timeout=5).status_code
        for name in ("demo", "nope")
    }
    assert answers == {401}


def test_tokens_are_kept_out_of_stored_errors_and_encoded_logs(live_server, caplog):
    register(live_server)
    leak = f"GET {live_server}/datasets/demo?token={RUN_TOKEN} failed"
    requests.post(sink(live_server), data={"element": "2", "error": leak}, timeout=5)
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert RUN_TOKEN not in json.dumps(status)
    with caplog.at_level("INFO", logger="server.access"):
        requests.get(f"{live_server}/datasets/demo?%74oken={RUN_TOKEN}", timeout=5)
    assert RUN_TOKEN not in caplog.text


def test_tokens_are_kept_out_of_worker_exceptions_posted_as_results(live_server):
    # A work function that fails to fetch raises with the URL, so the token, in its message.
    register(live_server)
    url = f"{live_server}/datasets/demo?token={RUN_TOKEN}"
    exception = {
        "errorCode": "EUNCAUGHT",
        "name": "PythonError",
        "message": f"Traceback:\n  fetch({RUN_TOKEN!r})\nOSError: GET {url} failed\n",
        "stack": "PythonError: Traceback ...",
    }
    posted = requests.post(
        sink(live_server), data={"element": "2", "content": json.dumps(exception)}, timeout=5
    )
    assert posted.json()["recorded"] == "error"
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    [error] = status["errored"]
    assert RUN_TOKEN not in error["error"]
    assert error["error"].splitlines()[0] == (
        f"PythonError [EUNCAUGHT]: OSError: GET {live_server}/datasets/demo?token=*** failed"
    )


def test_database_files_are_private(app, client):
    assert client.post("/runs", headers=AUTH, json=registration()).status_code == 201
    database = str(app.config["DATABASE"])
    for path in (database, database + "-wal", database + "-shm"):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))


@pytest.mark.parametrize(
    ("text", "in_a_query"),
    [
        (f"GET http://h/datasets/demo?token={RUN_TOKEN} failed", True),
        (f"GET http://h/datasets/demo?%74oken={RUN_TOKEN}", True),
        (f"GET http://h/datasets/demo?TO%4BEN%3d{RUN_TOKEN}&x=1", True),
        (f"fetch('http://h/d?a=1&token={RUN_TOKEN}')", True),
        (f"the token was {RUN_TOKEN}", False),
    ],
)
def test_redact_hides_tokens_in_any_spelling(text, in_a_query):
    assert RUN_TOKEN not in redact(text, RUN_TOKEN)
    assert (RUN_TOKEN not in redact(text)) is in_a_query


def test_short_admin_tokens_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 32 characters"):
        create_app({"DATA_DIR": tmp_path, "DATABASE": tmp_path / "db", "ADMIN_TOKEN": "short"})


def test_a_write_locked_database_answers_503_with_retry_after_quickly(app, live_server):
    register(live_server)
    holder = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        data = {"element": "1", "content": result_content(1)}
        response = requests.post(sink(live_server), data=data, timeout=60)
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert time.monotonic() - started < 10
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    again = requests.post(sink(live_server), data=data, timeout=10)
    assert again.status_code == 200  # nothing half-written; the retry is stored


def test_a_huge_body_is_refused_before_it_is_read(live_server):
    host, port = live_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        head = (
            f"POST /dcp-results/run1?token={RUN_TOKEN} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
        )
        conn.sendall(head.encode() + b"a" * 1024)
        answer = conn.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_idle_connections_do_not_starve_the_server(live_server):
    host, port = live_server.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(150)]
    try:
        started = time.monotonic()
        assert requests.get(f"{live_server}/health", timeout=10).status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for conn in idle:
            conn.close()


def test_readiness_is_about_the_next_run(app, live_server):
    register(live_server)
    (app.config["DATA_DIR"] / "demo.tsv").unlink()  # an old run's dataset, deleted
    assert requests.get(f"{live_server}/ready", timeout=5).status_code == 200
    finished = requests.post(f"{live_server}/runs/run1/finish", headers=AUTH, timeout=5)
    assert finished.status_code == 200
    data = {"element": "1", "content": result_content(1)}
    assert requests.post(sink(live_server), data=data, timeout=5).status_code == 409
    assert DATASET  # the fixture's dataset text, for readers of this test


def test_concurrent_hostile_requests_never_500(live_server):
    register(live_server)
    bodies = [
        {"element": "1", "attempt": HUGE, "content": "{}"},
        {"element": "\u0665", "content": "{}"},
        {"element": "1", "content": '{"x": "\\ud800"}'},
    ] * 10
    codes = []

    def post(body):
        codes.append(requests.post(sink(live_server), data=body, timeout=10).status_code)

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(codes) == {400}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2]", "not a JSON object with a 'records' list"),
        ('{"slice": 1}', "not a JSON object with a 'records' list"),
        ('{"slice": 99, "records": []}', "it says slice 99, posted as slice 1"),
        (predictions(scored_rows=None), "records carry 'scores' but it has no 'scored_rows'"),
        (predictions(scored_rows=[0, 0]), "not a list of distinct row numbers"),
        (predictions(scored_rows=[0, -1]), "not a list of distinct row numbers"),
        (predictions(scored_rows=[0, True]), "not a list of distinct row numbers"),
        (predictions(scored_rows="0,1"), "not a list of distinct row numbers"),
        (predictions(scores=[0.5]), "record 0 has no list of 2 scores"),
        (predictions(scores=None), "record 0 has no list of 2 scores"),
        (predictions(scores=[0.5, 1.5]), "record 0 has a score that is not a number in [0, 1]"),
        (predictions(scores=[0.5, "0.1"]), "record 0 has a score that is not a number in [0, 1]"),
        (predictions(scores=[0.5, False]), "record 0 has a score that is not a number in [0, 1]"),
        (predictions(records=[7]), "record 0 is not an object"),
    ],
)
def test_a_result_that_is_not_a_slices_records_is_kept_as_its_error(client, content, reason):
    client.post("/runs", headers=AUTH, json=registration())
    posted = client.post(
        f"/dcp-results/run1?token={RUN_TOKEN}", data={"element": "1", "content": content}
    )
    assert posted.status_code == 200
    status = client.get("/runs/run1/status", headers=AUTH).json
    assert status["received"] == [] and reason in status["errored"][0]["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (registration(expected=[1, 1]), "distinct"),
        ("[" * 20_000, "JSON object"),
    ],
)
def test_bad_registrations_get_400(client, body, reason):
    if isinstance(body, str):
        response = client.post(
            "/runs", headers={**AUTH, "Content-Type": "application/json"}, data=body
        )
    else:
        response = client.post("/runs", headers=AUTH, json=body)
    assert response.status_code == 400 and reason in response.json["reason"]


def test_a_suspended_run_refuses_its_old_token_until_it_is_registered_again(client):
    client.post("/runs", headers=AUTH, json=registration())
    assert client.post("/runs/run1/suspend", headers=AUTH).status_code == 200
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}").status_code == 403
    sink = client.post(
        f"/dcp-results/run1?token={RUN_TOKEN}", data={"element": "1", "content": "{}"}
    )
    assert sink.status_code == 403
    resumed = registration(token=RUN_TOKEN + "-resumed")
    assert client.post("/runs", headers=AUTH, json=resumed).status_code == 201
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}-resumed").status_code == 200
