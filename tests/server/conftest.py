import hashlib
import json

import pytest
import requests

from server import create_app
from server.embedded import EmbeddedServer

ADMIN = "admin-token-for-tests-0123456789"
RUN_TOKEN = "run-token-for-tests-0123456789"
DATASET = "phenotype\tg1\tg2\nA\t1.0\t2.0\nB\t3.0\t4.0\n"


def make_app(tmp_path, **overrides):
    """The app on a data directory holding `demo` (with its sha256) and a database in tmp_path."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "demo.tsv").write_text(DATASET)
    (data / "demo.tsv.sha256").write_text(hashlib.sha256(DATASET.encode()).hexdigest())
    config = {
        "DATA_DIR": data,
        "DATABASE": tmp_path / "db.sqlite3",
        "ADMIN_TOKEN": ADMIN,
        "MAX_CONTENT_LENGTH": 64 * 1024,
    }
    return create_app({**config, **overrides})


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(app):
    """The app on waitress on a real loopback socket."""
    server = EmbeddedServer(app, threads=16)
    yield server.url
    server.stop()


def register(base_url: str, run_id: str = "run1", expected=(1, 2, 3)) -> None:
    response = requests.post(
        f"{base_url}/runs",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
        json={"run_id": run_id, "dataset": "demo", "token": RUN_TOKEN, "expected": list(expected)},
    )
    assert response.status_code == 201, response.text


def result_content(element: int, value: float = 0.5) -> str:
    return json.dumps({"slice": element, "records": [{"signature": element, "auc": value}]})


def predictions(element: int = 1, records=None, scores=(0.25, 0.75), **changes) -> str:
    """A predictions slice's result (two samples), with `changes` to its fields."""
    record = {"signature": 1, "classifier": "svm", "auc": 1.0}
    if scores is not None:
        record["scores"] = list(scores)
    content = {"slice": element, "records": [record] if records is None else records}
    content["scored_rows"] = [3, 0]
    for key, value in changes.items():
        if value is None:
            content.pop(key)
        else:
            content[key] = value
    return json.dumps(content)
