import gzip
import hashlib
import json
import logging

import pytest
import requests

from .conftest import ADMIN, DATASET, RUN_TOKEN, predictions, register, result_content

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def sink(base, run="run1", token=RUN_TOKEN):
    return f"{base}/dcp-results/{run}" + (f"?token={token}" if token else "")


def test_health_and_ready(live_server):
    assert requests.get(f"{live_server}/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{live_server}/ready", timeout=5).status_code == 200


def test_ready_reports_a_tampered_dataset(app, live_server):
    (app.config["DATA_DIR"] / "demo.tsv").write_text(DATASET + "C\t5\t6\n")
    response = requests.get(f"{live_server}/ready", timeout=5)
    assert response.status_code == 503
    assert "does not match its recorded sha256" in response.json()["reasons"][0]


def test_dataset_served_with_etag_and_gzip(live_server):
    register(live_server)
    url = f"{live_server}/datasets/demo?token={RUN_TOKEN}"
    response = requests.get(url, timeout=5)  # requests asks for gzip and decodes it
    assert response.text == DATASET
    assert response.headers["Content-Encoding"] == "gzip"
    sha = hashlib.sha256(DATASET.encode()).hexdigest()
    assert response.headers["ETag"] == f'"{sha}"'
    # A DCP worker passes any other text/* to Python as a JS String object, not a str.
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    raw = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=5)
    assert "Content-Encoding" not in raw.headers and raw.content == DATASET.encode()
    assert gzip.decompress(requests.get(url, stream=True, timeout=5).raw.read()) == DATASET.encode()
    cached = requests.get(url, headers={"If-None-Match": f'"{sha}"'}, timeout=5)
    assert cached.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "..%2Fdb.sqlite3",
        "%2Fetc%2Fpasswd",
        "../data/demo",
        "demo.tsv.sha256/..",
        ".demo",
        "..",
        "demo%00",
    ],
)
def test_unknown_datasets_and_traversal_get_404(live_server, path):
    register(live_server)
    response = requests.get(f"{live_server}/datasets/{path}?token={RUN_TOKEN}", timeout=5)
    assert response.status_code == 404


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong-token-xxxxxxxxxx", 403)])
def test_dataset_needs_the_run_token(live_server, token, status):
    register(live_server)
    suffix = f"?token={token}" if token else ""
    assert requests.get(f"{live_server}/datasets/demo{suffix}", timeout=5).status_code == status


def test_sink_stores_once_and_refuses_different_content(live_server):
    register(live_server)
    body = {"elementType": "results", "element": "1", "content": result_content(1)}
    first = requests.post(sink(live_server), data=body, timeout=5)
    again = requests.post(sink(live_server), data=body, timeout=5)
    assert first.json()["recorded"] == "stored" and again.json()["recorded"] == "duplicate"
    other = requests.post(
        sink(live_server), data={**body, "content": result_content(1, 0.9)}, timeout=5
    )
    assert other.status_code == 409
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert status["received"] == [1] and status["missing"] == [2, 3]


def timed_content(element: int, seconds: float, auc: float = 0.5) -> str:
    body = json.loads(result_content(element, auc))
    body["timings"] = {"total_seconds": seconds}
    body["versions"] = {"numpy": "2.2.5" if seconds > 1 else "2.3.0"}
    return json.dumps(body)


def test_a_re_executed_slice_is_acknowledged_and_a_different_one_counted(live_server):
    register(live_server)
    posted = [
        requests.post(sink(live_server), data={"element": "1", "content": c}, timeout=5)
        for c in (timed_content(1, 0.8), timed_content(1, 2.5), timed_content(1, 0.7, auc=0.9))
    ]
    assert [p.status_code for p in posted] == [200, 200, 409]
    assert posted[1].json()["recorded"] == "duplicate"
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert status["received"] == [1] and status["conflicts"] == [{"slice": 1, "attempt": 0}]
    stored = requests.get(f"{live_server}/runs/run1/results", headers=AUTH, timeout=5).json()
    assert stored["results"][0]["content"]["timings"] == {"total_seconds": 0.8}


WORKER_EXCEPTION = {
    "errorCode": "EUNCAUGHT",
    "name": "PythonError",
    "message": 'Traceback (most recent call last):\n  File "<exec>", line 3\nValueError: boom\n',
    "stack": "PythonError: Traceback ...",
}


@pytest.mark.parametrize(
    "content",
    [
        json.dumps(WORKER_EXCEPTION),
        json.dumps(json.dumps(WORKER_EXCEPTION)),
        json.dumps({k: v for k, v in WORKER_EXCEPTION.items() if k != "errorCode"}),
    ],
)
def test_a_worker_exception_posted_as_the_result_is_a_slice_error(live_server, content):
    register(live_server)
    posted = requests.post(sink(live_server), data={"element": "2", "content": content}, timeout=5)
    assert posted.status_code == 200 and posted.json()["recorded"] == "error"
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert status["received"] == [] and status["missing"] == [1, 3]
    [error] = status["errored"]
    assert error["slice"] == 2 and error["error"].startswith("PythonError")
    assert "ValueError: boom" in error["error"].splitlines()[0]


def test_errors_status_and_paged_results(live_server):
    register(live_server)
    requests.post(sink(live_server), data={"element": "2", "error": "ValueError: boom"}, timeout=5)
    for element in (1, 3):
        requests.post(
            sink(live_server),
            data={"element": str(element), "content": result_content(element)},
            timeout=5,
        )
    status = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert status["errored"] == [{"slice": 2, "attempt": 0, "error": "ValueError: boom"}]
    page = requests.get(f"{live_server}/runs/run1/results?limit=1", headers=AUTH, timeout=5).json()
    assert [r["slice"] for r in page["results"]] == [1]
    rest = requests.get(
        f"{live_server}/runs/run1/results?cursor={page['cursor']}", headers=AUTH, timeout=5
    ).json()
    assert [r["slice"] for r in rest["results"]] == [3]
    assert rest["results"][0]["content"]["records"][0]["auc"] == 0.5


def test_a_predictions_result_is_stored_with_its_scores_and_a_failed_fit_without(live_server):
    register(live_server)
    failed = {"signature": 1, "classifier": "svm", "auc": None, "error": "ValueError: x"}
    fitted = json.loads(predictions())["records"][0]
    content = predictions(records=[fitted, failed])
    posted = requests.post(sink(live_server), data={"element": "1", "content": content}, timeout=5)
    assert posted.json()["recorded"] == "stored"
    results = requests.get(f"{live_server}/runs/run1/results", headers=AUTH, timeout=5).json()
    [stored] = results["results"]
    assert stored["content"]["scored_rows"] == [3, 0]
    assert stored["content"]["records"][0]["scores"] == [0.25, 0.75]


def test_retry_attempt_maps_elements_to_plan_slices(live_server):
    register(live_server)
    response = requests.post(
        f"{live_server}/runs/run1/attempts",
        headers=AUTH,
        timeout=5,
        json={"attempt": 1, "slices": [3]},
    )
    assert response.status_code == 201
    posted = requests.post(
        sink(live_server),
        data={"element": "1", "attempt": "1", "content": result_content(3)},
        timeout=5,
    )
    assert posted.json()["slice"] == 3


def test_json_string_content_is_unwrapped(live_server):
    register(live_server)
    body = {"element": "1", "content": json.dumps(result_content(1))}
    assert requests.post(sink(live_server), data=body, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        ({"content": "{}"}, 400, "missing 'element'"),
        ({"element": "x", "content": "{}"}, 400, "not an integer"),
        ({"element": "1", "content": "{not json"}, 400, "not JSON"),
        ({"element": "1", "content": "{}", "error": "e"}, 400, "exactly one"),
        ({"element": "1"}, 400, "exactly one"),
        ({"element": "9", "content": "{}"}, 400, "not expected"),
        ({"element": "1", "attempt": "4", "content": "{}"}, 400, "unknown attempt"),
        ({"element": "1", "content": "x" * 70_000}, 413, "exceeds the capacity limit"),
    ],
)
def test_bad_envelopes(live_server, data, status, reason):
    register(live_server)
    response = requests.post(sink(live_server), data=data, timeout=5)
    assert response.status_code == status
    assert reason in response.json()["reason"]
    got = requests.get(f"{live_server}/runs/run1/status", headers=AUTH, timeout=5).json()
    assert got["received"] == [] and got["errored"] == []


@pytest.mark.parametrize(
    ("run", "token", "status"),
    [("run1", None, 401), ("run1", "bad-token-xxxxxxxxx", 403), ("nope", RUN_TOKEN, 404)],
)
def test_sink_auth_and_unknown_run(live_server, run, token, status):
    register(live_server)
    data = {"element": "1", "content": result_content(1)}
    assert requests.post(sink(live_server, run, token), data=data, timeout=5).status_code == status


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic x"}, 401)],
)
def test_run_endpoints_need_admin_token(client, headers, status):
    assert client.get("/runs/run1/status", headers=headers).status_code == status
    assert client.post("/runs", json={}, headers=headers).status_code == status


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"run_id": "../x", "dataset": "demo", "token": RUN_TOKEN, "expected": [1]},
        {"run_id": "r", "dataset": "demo", "token": "short", "expected": [1]},
        {"run_id": "r", "dataset": "demo", "token": RUN_TOKEN, "expected": []},
    ],
)
def test_bad_run_registration(client, body):
    assert client.post("/runs", json=body, headers=AUTH).status_code == 400


def test_unknown_run_status_is_404_and_errors_are_json(client):
    response = client.get("/runs/nope/status", headers=AUTH)
    assert response.status_code == 404 and response.json["reason"] == "unknown run"
    assert client.get("/no/such/page").json["error"] == "Not Found"


def test_cors_allows_configured_origins_only(client):
    ok = client.get("/health", headers={"Origin": "https://dcp.work"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://dcp.work"
    evil = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_logs_contain_no_token(live_server, caplog):
    # This test's own HTTP client logs the URLs it requests at DEBUG: not the server's logs.
    caplog.set_level(logging.WARNING, logger="urllib3")
    caplog.set_level(logging.DEBUG)
    register(live_server)
    requests.get(f"{live_server}/datasets/demo?token={RUN_TOKEN}", timeout=5)
    requests.post(sink(live_server), data={"element": "1", "content": result_content(1)}, timeout=5)
    requests.post(
        sink(live_server), data={"element": "1", "content": result_content(1, 0.1)}, timeout=5
    )
    assert "token=***" in caplog.text
    assert RUN_TOKEN not in caplog.text and ADMIN not in caplog.text


def test_registration_is_idempotent_and_conflicts_are_refused(app, client):
    (app.config["DATA_DIR"] / "other.tsv").write_text(DATASET)
    body = {"run_id": "r", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2]}
    assert client.post("/runs", json=body, headers=AUTH).status_code == 201
    assert client.post("/runs", json=body, headers=AUTH).status_code == 201
    for change in ({"expected": [1]}, {"dataset": "other"}):
        assert client.post("/runs", json={**body, **change}, headers=AUTH).status_code == 409


def test_registering_an_unfinished_run_again_rotates_its_token(client):
    body = {"run_id": "r", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2]}
    assert client.post("/runs", json=body, headers=AUTH).status_code == 201
    new_token = RUN_TOKEN + "-resumed"
    assert client.post("/runs", json={**body, "token": new_token}, headers=AUTH).status_code == 201
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}").status_code == 403
    assert client.get(f"/datasets/demo?token={new_token}").status_code == 200
    client.post("/runs/r/finish", headers=AUTH)
    again = client.post("/runs", json={**body, "token": RUN_TOKEN}, headers=AUTH)
    assert again.status_code == 409  # a finished run keeps its token and takes no more


def test_status_gives_the_next_free_attempt_number(client):
    body = {"run_id": "r", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2, 3]}
    client.post("/runs", json=body, headers=AUTH)
    assert client.get("/runs/r/status", headers=AUTH).json["next_attempt"] == 1
    client.post("/runs/r/attempts", json={"attempt": 2, "slices": [3]}, headers=AUTH)
    assert client.get("/runs/r/status", headers=AUTH).json["next_attempt"] == 3
