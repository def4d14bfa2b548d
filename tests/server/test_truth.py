"""The server's answers are true: a 503 stored nothing, a closed intake takes nothing, /ready
means writes work, the dataset is ready before the first fetch."""

import gzip
import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from server import db, state
from server.embedded import EmbeddedServer

from .conftest import ADMIN, DATASET, RUN_TOKEN, make_app, register, result_content

AUTH = {"Authorization": f"Bearer {ADMIN}"}
SINK = f"/dcp-results/run1?token={RUN_TOKEN}"


def registration(**changes):
    body = {"run_id": "run1", "dataset": "demo", "token": RUN_TOKEN, "expected": [1, 2, 3]}
    return {**body, **changes}


def post_result(client, element, token=RUN_TOKEN):
    data = {"element": str(element), "content": result_content(element)}
    return client.post(f"/dcp-results/run1?token={token}", data=data)


class HeldWriter:
    """The app's group writer kept busy by a write that waits until released."""

    def __init__(self, store: db.Store) -> None:
        self.store, self.entered, self.release = store, threading.Event(), threading.Event()

    def hold(self, conn) -> None:
        self.entered.set()
        self.release.wait(60)

    def __enter__(self) -> "HeldWriter":
        threading.Thread(target=self.store.writer.submit, args=(self.hold, 120)).start()
        assert self.entered.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        # The queue is first in, first out: once this empty write is done, every write
        # queued before it has been committed or dropped.
        self.store.writer.submit(lambda conn: None, timeout=60)


@pytest.fixture
def short_wait(tmp_path):
    """An app whose requests wait 0.2 s for their queued write, on a real socket."""
    app = make_app(tmp_path, WRITE_WAIT_SECONDS=0.2)
    server = EmbeddedServer(app)
    yield app, server.url
    server.stop()


@pytest.mark.parametrize("what", ["result", "inputs"])
def test_a_503_after_the_write_wait_means_nothing_was_stored(short_wait, what):
    app, base = short_wait
    register(base)
    store = app.extensions[state.EXTENSION].store
    with HeldWriter(store):
        if what == "result":
            data = {"element": "1", "content": result_content(1)}
            answer = requests.post(f"{base}{SINK}", data=data, timeout=60)
        else:
            body = {"config": "{}", "slices": [{"slice": 1, "datum": "[1]"}]}
            answer = requests.post(f"{base}/inputs/run1", json=body, headers=AUTH, timeout=60)
        assert answer.status_code == 503, answer.text
        assert "nothing was stored" in answer.json()["reason"]
    with sqlite3.connect(app.config["DATABASE"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM run_inputs").fetchone()[0] == 0


class _Signal(logging.Handler):
    """Sets an event when a record matching `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.seen = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_a_write_started_before_the_wait_ends_is_answered_with_its_outcome(tmp_path):
    store = db.Store(tmp_path / "db.sqlite3")
    signal = _Signal("waiting for it")
    logging.getLogger(db.__name__).addHandler(signal)
    logging.getLogger(db.__name__).setLevel(logging.INFO)

    def write(conn):
        # Started by the writer; done only once its caller's wait is over.
        signal.seen.wait(30)
        conn.execute(
            "INSERT INTO runs (run_id, dataset, token_sha256, expected, created_at)"
            " VALUES ('r', 'd', 't', '[1]', 0)"
        )
        return "committed"

    try:
        # Not TimeoutError (DatabaseBusy, "nothing was stored") for a write that committed.
        assert store.writer.submit(write, timeout=3.0) == "committed"
    finally:
        logging.getLogger(db.__name__).removeHandler(signal)
    assert signal.seen.is_set()


def test_a_closed_intake_takes_nothing_and_reopens_when_registered_again(client):
    assert client.post("/runs", headers=AUTH, json=registration()).status_code == 201
    assert post_result(client, 1).status_code == 200
    closed = client.post("/runs/run1/close", headers=AUTH)
    assert closed.status_code == 200 and closed.json["closed"] is True
    assert client.post("/runs/run1/close", headers=AUTH).status_code == 200  # idempotent
    refused = post_result(client, 2)
    assert refused.status_code == 409 and "closed its intake" in refused.json["reason"]
    error = client.post(SINK, data={"element": "3", "error": "worker failed"})
    assert error.status_code == 409
    status = client.get("/runs/run1/status", headers=AUTH).json
    assert status["closed"] is True and status["finished"] is False
    assert status["received"] == [1] and status["errored"] == []
    page = client.get("/runs/run1/results?limit=1", headers=AUTH).json
    assert [r["slice"] for r in page["results"]] == [1]
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}").status_code == 200
    resumed = registration(token=RUN_TOKEN + "-resumed")
    assert client.post("/runs", headers=AUTH, json=resumed).status_code == 201
    assert client.get("/runs/run1/status", headers=AUTH).json["closed"] is False
    assert post_result(client, 2, RUN_TOKEN).status_code == 403  # the old token, rotated
    assert post_result(client, 2, RUN_TOKEN + "-resumed").status_code == 200


@pytest.mark.parametrize("end", ["finish", "suspend"])
def test_a_closed_run_can_still_be_finished_or_suspended(client, end):
    assert client.post("/runs", headers=AUTH, json=registration()).status_code == 201
    assert client.post("/runs/run1/close", headers=AUTH).status_code == 200
    assert client.post(f"/runs/run1/{end}", headers=AUTH).status_code == 200
    assert client.get(f"/datasets/demo?token={RUN_TOKEN}").status_code in (403, 404)
    assert client.get("/runs/run1/status", headers=AUTH).json["closed"] is True


def test_closing_an_unknown_run_or_without_the_admin_token_is_refused(client):
    assert client.post("/runs/nope/close", headers=AUTH).status_code == 404
    assert client.post("/runs", headers=AUTH, json=registration()).status_code == 201
    assert client.post("/runs/run1/close").status_code == 401


def test_what_the_final_fetch_after_a_close_sees_is_all_that_was_stored(app, live_server):
    n = 400
    register(live_server, expected=range(1, n + 1))
    url = f"{live_server}{SINK}"
    answers: dict[int, int] = {}
    closing = threading.Event()

    def post(element: int) -> None:
        if element == n // 4:
            closing.set()  # close while the rest are posted
        data = {"element": str(element), "content": result_content(element)}
        answers[element] = requests.post(url, data=data, timeout=60).status_code

    with ThreadPoolExecutor(8) as pool:
        pool.map(post, range(1, n + 1))
        assert closing.wait(60)
        closed = requests.post(f"{live_server}/runs/run1/close", headers=AUTH, timeout=60)
        assert closed.status_code == 200
        final = requests.get(
            f"{live_server}/runs/run1/results?limit=5000", headers=AUTH, timeout=60
        ).json()
    fetched = {r["slice"] for r in final["results"]}
    assert set(answers.values()) <= {200, 409}
    assert fetched == {e for e, code in answers.items() if code == 200}
    with sqlite3.connect(app.config["DATABASE"]) as conn:
        stored = {r[0] for r in conn.execute("SELECT slice FROM results")}
    assert stored == fetched


def test_ready_is_503_while_another_process_holds_the_write_lock(app, live_server):
    holder = sqlite3.connect(app.config["DATABASE"], isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = requests.get(f"{live_server}/ready", timeout=60)
        assert response.status_code == 503
        assert "not writable" in " ".join(response.json()["reasons"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert requests.get(f"{live_server}/ready", timeout=60).status_code == 200


@pytest.mark.parametrize("field", ["datum", "config"])
def test_deeply_nested_inputs_get_400(client, field):
    assert client.post("/runs", headers=AUTH, json=registration()).status_code == 201
    deep = "[" * 5000 + "]" * 5000
    body = {"config": deep} if field == "config" else {"slices": [{"slice": 1, "datum": deep}]}
    response = client.post("/inputs/run1", headers=AUTH, json=body)
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json["reason"]


def test_the_dataset_is_hashed_and_compressed_at_registration_once(monkeypatch, live_server):
    compressions = []
    compress = gzip.compress
    monkeypatch.setattr(
        gzip, "compress", lambda *a, **k: compressions.append(1) or compress(*a, **k)
    )
    register(live_server)
    assert len(compressions) == 1  # before any fetch
    url = f"{live_server}/datasets/demo?token={RUN_TOKEN}"
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: requests.get(url, timeout=30), range(8)))
    assert all(b.headers["Content-Encoding"] == "gzip" and b.text == DATASET for b in bodies)
    register(live_server, run_id="run2")  # another run on the same dataset
    assert len(compressions) == 1
