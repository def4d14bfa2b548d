"""ServerClient against the real server on loopback."""

import pytest
import requests

from server import create_app
from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient

ADMIN = "admin-token-for-client-tests-0123456789"
RUN_TOKEN = "run-token-for-client-tests-0123456789"


@pytest.fixture
def client(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "demo.tsv").write_text("phenotype\tg1\nA\t1.0\nB\t2.0\n")
    app = create_app(
        {"DATA_DIR": tmp_path / "data", "DATABASE": tmp_path / "db.sqlite3", "ADMIN_TOKEN": ADMIN}
    )
    server = EmbeddedServer(app)
    yield ServerClient(server.url, ADMIN, timeout=10)
    server.stop()


def test_finish_run_closes_the_sink(client):
    client.register_run("run1", "demo", RUN_TOKEN, [1, 2])
    post = {"element": "1", "content": '{"slice": 1, "records": []}'}
    assert requests.post(client.sink_url("run1", RUN_TOKEN), data=post, timeout=10).ok
    client.finish_run("run1")
    client.finish_run("run1")  # a repeat (a retried request) is fine
    assert client.status("run1")["finished"] is True
    post = {"element": "2", "content": '{"slice": 2, "records": []}'}
    refused = requests.post(client.sink_url("run1", RUN_TOKEN), data=post, timeout=10)
    assert refused.status_code == 409


def test_finishing_an_unknown_run_raises(client):
    with pytest.raises(RuntimeError, match="HTTP 404"):
        client.finish_run("nope")


def test_a_dataset_fetch_that_cannot_connect_says_so_without_the_token():
    secret = "s3cr3t-run-token-0123456789"
    client = ServerClient("http://127.0.0.1:9", "a" * 40, timeout=2)
    with pytest.raises(ConnectionError) as raised:
        client.served_sha256("dataset-x", secret)
    assert "dataset-x" in str(raised.value) and secret not in str(raised.value)
    assert secret not in repr(raised.value.__cause__) and raised.value.__suppress_context__
