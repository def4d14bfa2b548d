"""Slice inputs and run configs: registered with the admin token, served with the run token."""

import json
import logging

import pytest

from .conftest import ADMIN, RUN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN}"}
REGISTRATION = {"run_id": "run1", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2, 3]}
CONFIG = json.dumps({"case": "AML", "cv_folds": 3, "seed": 7})
DATUM = {
    k: json.dumps({"slice": k, "signatures": [{"id": k, "probesets": ["g1", "g2"]}]})
    for k in (1, 2, 3)
}
INPUTS = {"config": CONFIG, "slices": [{"slice": k, "datum": d} for k, d in DATUM.items()]}


@pytest.fixture
def registered(client):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    response = client.post("/inputs/run1", headers=AUTH, json=INPUTS)
    assert response.status_code == 201 and response.json["registered"] == 4
    return client


@pytest.mark.parametrize(
    ("path", "text"), [("config", CONFIG), *((f"slices/{k}", DATUM[k]) for k in (1, 3))]
)
def test_a_run_token_fetches_its_inputs_as_plain_text(registered, path, text):
    response = registered.get(f"/inputs/run1/{path}?token={RUN_TOKEN}")
    assert response.status_code == 200 and response.get_data(as_text=True) == text
    # text/plain reaches a DCP work function as a str (any other text/* as a JS String object)
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("run", ["run1", "unknown"])
@pytest.mark.parametrize("path", ["config", "slices/1", "slices/x"])
def test_without_a_token_known_and_unknown_runs_look_alike(registered, run, path):
    response = registered.get(f"/inputs/{run}/{path}")
    assert response.status_code == 401 and response.json["reason"] == "missing token"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/inputs/run1/config?token={RUN_TOKEN}x", 403),
        (f"/inputs/run1/slices/1?token={RUN_TOKEN}x", 403),
        (f"/inputs/unknown/slices/1?token={RUN_TOKEN}", 404),
        (f"/inputs/run1/slices/4?token={RUN_TOKEN}", 404),
        (f"/inputs/run1/slices/-1?token={RUN_TOKEN}", 400),
        (f"/inputs/run1/slices/99999999999999999999?token={RUN_TOKEN}", 400),
    ],
)
def test_wrong_tokens_and_unknown_inputs_are_refused(registered, path, status):
    assert registered.get(path).status_code == status


def test_inputs_of_a_registered_run_not_yet_given_are_not_found(client):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    assert client.get(f"/inputs/run1/config?token={RUN_TOKEN}").status_code == 404
    assert client.get(f"/inputs/run1/slices/1?token={RUN_TOKEN}").status_code == 404


def test_a_finished_run_serves_no_inputs_and_takes_none(registered):
    assert registered.post("/runs/run1/finish", headers=AUTH).status_code == 200
    for path in ("config", "slices/1"):
        response = registered.get(f"/inputs/run1/{path}?token={RUN_TOKEN}")
        assert response.status_code == 410 and "finished" in response.json["reason"]
    assert registered.post("/inputs/run1", headers=AUTH, json=INPUTS).status_code == 409


def test_registration_is_idempotent_in_parts_and_refuses_other_content(registered):
    again = {"slices": INPUTS["slices"][:1]}
    assert registered.post("/inputs/run1", headers=AUTH, json=again).status_code == 201
    changed = {
        "config": CONFIG,
        "slices": [{"slice": 2, "datum": DATUM[1]}, {"slice": 3, "datum": DATUM[3]}],
    }
    response = registered.post("/inputs/run1", headers=AUTH, json=changed)
    assert response.status_code == 409 and response.json["reason"].startswith("slice 2 already")
    other_config = registered.post("/inputs/run1", headers=AUTH, json={"config": "{}"})
    assert other_config.status_code == 409 and other_config.json["reason"].startswith("config")
    assert (
        registered.get(f"/inputs/run1/slices/2?token={RUN_TOKEN}").get_data(as_text=True)
        == DATUM[2]
    )


def test_a_conflicting_request_stores_none_of_its_inputs(client):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    assert client.post("/inputs/run1", headers=AUTH, json={"config": CONFIG}).status_code == 201
    body = {"config": "{}", "slices": [{"slice": 1, "datum": DATUM[1]}]}
    assert client.post("/inputs/run1", headers=AUTH, json=body).status_code == 409
    assert client.get(f"/inputs/run1/slices/1?token={RUN_TOKEN}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"slices": [{"slice": 9, "datum": "{}"}]}, 400, "slices [9] are not expected"),
        ({"slices": [{"slice": "1", "datum": "{}"}]}, 400, "'slices.0.slice'"),
        ({"slices": [{"slice": 1, "datum": "{not json"}]}, 400, "'slices.0.datum': must be JSON"),
        ({"slices": [{"slice": 1, "datum": '"\\ud800"'}]}, 201, None),
        ({"slices": [{"slice": 1, "datum": '"\ud800"'}]}, 400, "'slices.0.datum': must be JSON"),
        ({"config": {"case": "AML"}}, 400, "'config'"),
        ({}, 400, "nothing to register"),
        ([INPUTS], 400, "body must be a JSON object"),
    ],
)
def test_bad_registrations_get_4xx_naming_the_problem(client, body, status, reason):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    response = client.post("/inputs/run1", headers=AUTH, json=body)
    assert response.status_code == status
    if reason:
        assert reason in response.json["reason"]


@pytest.mark.parametrize(
    ("headers", "run", "status"),
    [({}, "run1", 401), ({"Authorization": "Bearer x"}, "run1", 403), (AUTH, "nope", 404)],
)
def test_registration_needs_the_admin_token_and_a_registered_run(registered, headers, run, status):
    assert registered.post(f"/inputs/{run}", headers=headers, json=INPUTS).status_code == status


def test_no_token_reaches_the_logs(registered, caplog):
    with caplog.at_level(logging.DEBUG):
        for path in ("config", "slices/1", "slices/9"):
            registered.get(f"/inputs/run1/{path}?token={RUN_TOKEN}")
        registered.get(f"/inputs/run1/config?token={RUN_TOKEN}x")
    assert caplog.records and RUN_TOKEN not in caplog.text and ADMIN not in caplog.text


WORK = 'def evaluate_slice(datum, dataset, config):\n    return "{é}"  # not JSON\n'


def test_the_work_function_is_served_as_plain_text_to_the_run_token(registered):
    body = {"work": WORK}
    assert registered.post("/inputs/run1", headers=AUTH, json=body).status_code == 201
    response = registered.get(f"/inputs/run1/work?token={RUN_TOKEN}")
    assert response.status_code == 200 and response.get_data(as_text=True) == WORK
    # text/plain: a DCP worker hands it to Python as a str, as it does the dataset
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert registered.get("/inputs/run1/work").status_code == 401
    assert registered.get(f"/inputs/run1/work?token={RUN_TOKEN}x").status_code == 403


def test_the_work_function_registers_once_with_the_config_and_refuses_other_text(client):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    assert client.get(f"/inputs/run1/work?token={RUN_TOKEN}").status_code == 404
    body = {**INPUTS, "work": WORK}
    response = client.post("/inputs/run1", headers=AUTH, json=body)
    assert response.status_code == 201 and response.json["registered"] == 5
    # A retried flow run registers the same text again: fine.
    assert client.post("/inputs/run1", headers=AUTH, json=body).status_code == 201
    other = client.post("/inputs/run1", headers=AUTH, json={"work": WORK + "# changed\n"})
    assert other.status_code == 409 and other.json["reason"].startswith("work already")
    assert client.get(f"/inputs/run1/work?token={RUN_TOKEN}").get_data(as_text=True) == WORK


@pytest.mark.parametrize(
    ("work", "reason"),
    [("", "'work': must be the work function's source text"), (7, "'work'")],
)
def test_bad_work_texts_are_refused(client, work, reason):
    assert client.post("/runs", headers=AUTH, json=REGISTRATION).status_code == 201
    response = client.post("/inputs/run1", headers=AUTH, json={"work": work})
    assert response.status_code == 400 and reason in response.json["reason"]
    assert client.get(f"/inputs/run1/work?token={RUN_TOKEN}").status_code == 404


def test_a_finished_run_serves_no_work_function(registered):
    assert registered.post("/inputs/run1", headers=AUTH, json={"work": WORK}).status_code == 201
    assert registered.post("/runs/run1/finish", headers=AUTH).status_code == 200
    assert registered.get(f"/inputs/run1/work?token={RUN_TOKEN}").status_code == 410
