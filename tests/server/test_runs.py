"""Run registration bodies, ending runs, and the state each app keeps to itself."""

import pytest

from server import create_app

from .conftest import ADMIN, DATASET, RUN_TOKEN, result_content

AUTH = {"Authorization": f"Bearer {ADMIN}"}
REGISTRATION = {"run_id": "run1", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2, 3]}


def sink(run="run1"):
    return f"/dcp-results/{run}?token={RUN_TOKEN}"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/runs", {**REGISTRATION, "run_id": "../x"}, "'run_id': must be a plain name"),
        ("/runs", {**REGISTRATION, "dataset": "a b"}, "'dataset': must be a plain name"),
        ("/runs", {**REGISTRATION, "token": "short"}, "'token'"),
        ("/runs", {**REGISTRATION, "expected": [1, True]}, "'expected.1'"),
        ("/runs", {**REGISTRATION, "expected": [1, "2"]}, "'expected.1'"),
        ("/runs", {**REGISTRATION, "expected": [-1]}, "'expected.0'"),
        ("/runs", {**REGISTRATION, "expected": []}, "'expected'"),
        ("/runs", {k: v for k, v in REGISTRATION.items() if k != "token"}, "'token'"),
        ("/runs/run1/attempts", {"attempt": 0, "slices": [1]}, "'attempt'"),
        ("/runs/run1/attempts", {"attempt": "1", "slices": [1]}, "'attempt'"),
        ("/runs/run1/attempts", {"attempt": 1, "slices": [1.0]}, "'slices.0'"),
        ("/runs/run1/attempts", [1], "body must be a JSON object"),
    ],
)
def test_bad_bodies_get_400_naming_the_field(client, path, body, field):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    response = client.post(path, headers=AUTH, json=body)
    assert response.status_code == 400 and field in response.json["reason"]


def test_a_finished_run_takes_no_results_attempts_or_dataset_fetches(client):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}").status_code == 200
    assert (
        client.post(sink(), data={"element": "1", "content": result_content(1)}).status_code == 200
    )
    for _ in range(2):  # idempotent
        finished = client.post("/runs/run1/finish", headers=AUTH)
        assert finished.status_code == 200 and finished.json["finished"] is True
    status = client.get("/runs/run1/status", headers=AUTH).json
    assert status["finished"] is True and status["received"] == [1]
    refused = client.post(sink(), data={"element": "2", "content": result_content(2)})
    assert refused.status_code == 409 and "finished" in refused.json["reason"]
    attempt = client.post("/runs/run1/attempts", headers=AUTH, json={"attempt": 1, "slices": [2]})
    assert attempt.status_code == 409
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 409
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}").status_code == 403
    assert client.get("/runs/run1/results", headers=AUTH).json["results"][0]["slice"] == 1


@pytest.mark.parametrize(("headers", "run", "status"), [({}, "run1", 401), (AUTH, "nope", 404)])
def test_finishing_needs_the_admin_token_and_a_known_run(client, headers, run, status):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    assert client.post(f"/runs/{run}/finish", headers=headers).status_code == status


def test_each_app_keeps_its_own_state(tmp_path):
    clients = []
    for name, expected in (("a", [1]), ("b", [2])):
        data = tmp_path / name
        data.mkdir()
        (data / "demo.tsv").write_text(DATASET)
        app = create_app(
            {"DATA_DIR": data, "DATABASE": tmp_path / f"{name}.sqlite3", "ADMIN_TOKEN": ADMIN}
        )
        client = app.test_client()
        body = {**REGISTRATION, "expected": expected}
        assert client.post("/runs", headers=AUTH, json=body).status_code == 201
        clients.append(client)
    # The same run id in two databases: neither app may answer from the other's cache.
    for client, slice_no in zip(clients, (1, 2)):
        for element, status in ((slice_no, 200), (3 - slice_no, 400)):
            data = {"element": str(element), "content": result_content(element)}
            assert client.post(sink(), data=data).status_code == status
