"""ServerClient against the real server on loopback."""

import socket
import threading
import time

import pytest
import requests

from server import create_app
from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient, redact_tokens

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


def test_a_wrong_admin_token_is_found_with_one_request(client):
    assert client.admin_token_refused() == ""  # the right token: the probe run is unknown (404)
    wrong = ServerClient(client.base_url, "not-the-admin-token", timeout=10)
    assert wrong.admin_token_refused() == f"{client.base_url} refuses the admin token (HTTP 403)"
    assert ServerClient("http://127.0.0.1:9", ADMIN).admin_token_refused() == ""  # not reachable


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


@pytest.mark.parametrize("spelling", ["token=", "TOKEN=", "Token%3D", "%74oken=", "%54OKEN%3d"])
def test_the_flow_hides_run_tokens_in_any_spelling_as_the_server_does(spelling):
    text = f"GET http://h/datasets/demo?{spelling}{RUN_TOKEN}&x=1 failed"
    assert redact_tokens(text) == f"GET http://h/datasets/demo?{spelling}***&x=1 failed"


def test_inputs_stream_in_batches_as_they_come(client):
    client.register_run("run2", "demo", RUN_TOKEN, list(range(1, 8)))
    pulled = []

    def inputs():
        for number in range(1, 8):
            pulled.append(number)
            yield number, f'{{"slice": {number}}}'

    progress = client.register_input_batches("run2", '{"c": 1}', inputs(), batch=3)
    assert next(progress) == 3 and pulled == [1, 2, 3]  # one request's slices read, no more
    assert requests.get(client.slice_url("run2", 3, RUN_TOKEN), timeout=10).text == '{"slice": 3}'
    assert requests.get(client.slice_url("run2", 4, RUN_TOKEN), timeout=10).status_code == 404
    assert requests.get(client.config_url("run2", RUN_TOKEN), timeout=10).text == '{"c": 1}'
    assert list(progress) == [6, 7] and pulled == list(range(1, 8))
    for number in range(1, 8):
        served = requests.get(client.slice_url("run2", number, RUN_TOKEN), timeout=10)
        assert served.text == f'{{"slice": {number}}}'


def test_register_inputs_takes_a_mapping_or_pairs_and_counts_them(client):
    client.register_run("run3", "demo", RUN_TOKEN, [1, 2, 3, 4])
    data = {4: '"d"', 1: '"a"', 2: '"b"'}
    assert client.register_inputs("run3", "{}", data, batch=2) == 3
    assert client.register_inputs("run3", "{}", iter(sorted(data.items())), batch=500) == 3
    assert client.register_inputs("run3", "{}", iter([(3, '"c"')])) == 1  # a repeat is fine
    assert requests.get(client.slice_url("run3", 4, RUN_TOKEN), timeout=10).text == '"d"'
    with pytest.raises(RuntimeError, match="HTTP 409"):
        client.register_inputs("run3", "{}", iter([(3, '"other"')]))
    with pytest.raises(ValueError, match="batch"):
        client.register_inputs("run3", "{}", {}, batch=0)


def test_without_slices_the_config_is_registered_alone(client):
    client.register_run("run4", "demo", RUN_TOKEN, [1])
    assert list(client.register_input_batches("run4", '{"only": "config"}', iter([]))) == [0]
    assert (
        requests.get(client.config_url("run4", RUN_TOKEN), timeout=10).text == '{"only": "config"}'
    )


def test_the_work_source_goes_once_with_the_first_request_and_is_served_as_is(client, monkeypatch):
    client.register_run("run6", "demo", RUN_TOKEN, [1, 2, 3])
    work = "def evaluate_slice(datum, dataset, config):\n    return '{}'\n"
    calls = []
    real_call = client._call
    monkeypatch.setattr(
        client, "_call", lambda *a, **k: calls.append(k["json"]) or real_call(*a, **k)
    )
    pairs = iter([(n, str(n)) for n in range(1, 4)])
    assert client.register_inputs("run6", None, pairs, batch=2, work=work) == 3
    assert [set(body) for body in calls] == [{"slices", "work"}, {"slices"}]  # no config
    served = requests.get(client.work_url("run6", RUN_TOKEN), timeout=10)
    assert served.text == work and served.headers["Content-Type"].startswith("text/plain")
    assert requests.get(client.config_url("run6", RUN_TOKEN), timeout=10).status_code == 404
    # A retried flow run registers the same work again; other work is refused.
    assert client.register_inputs("run6", None, {}, work=work) == 0
    with pytest.raises(RuntimeError, match="HTTP 409"):
        client.register_inputs("run6", None, {}, work=work + "#")


def test_exactly_full_batches_send_no_empty_request(client, monkeypatch):
    client.register_run("run5", "demo", RUN_TOKEN, [1, 2, 3, 4])
    calls = []
    real_call = client._call
    monkeypatch.setattr(client, "_call", lambda *a, **k: calls.append(a) or real_call(*a, **k))
    pairs = iter([(n, str(n)) for n in range(1, 5)])
    assert list(client.register_input_batches("run5", "{}", pairs, batch=2)) == [2, 4]
    assert len(calls) == 2


def test_a_server_that_goes_away_mid_answer_is_waited_for_like_one_that_is_down():
    # The first answer is cut off after its headers (as when the server is killed while it
    # writes), the second is whole: the client waits it out and records the outage.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    whole = b'{"expected": 1, "received": [1]}'

    def serve() -> None:
        for answer in (b"x" * 10, whole):
            conn, _ = listener.accept()
            conn.recv(65536)
            length = len(whole) if answer is whole else 1000
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            conn.sendall(head.encode() + answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ServerClient(
        f"http://127.0.0.1:{port}", "a" * 32, ride_out_until=time.monotonic() + 120
    )
    client._session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    assert client.status("run-x") == {"expected": 1, "received": [1]}
    assert len(client.outages) == 1 and "ChunkedEncodingError" in client.outages[0].problem
    thread.join(timeout=30)
    listener.close()
