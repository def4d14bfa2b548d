"""`python -m server --certfile --keyfile`: HTTPS on loopback with a throwaway CA, real clients."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from server.embedded import free_loopback_port
from tasks.execution.client import (
    ServerCertificateRefused,
    ServerClient,
    ca_verify,
)

from ..conftest import ROOT
from .certs import Issued, issue
from .conftest import ADMIN, DATASET, RUN_TOKEN, result_content

ALLOWED = "https://dcp.work"


@dataclass
class RunningServer:
    url: str
    port: int
    certs: Issued
    process: subprocess.Popen
    stdout_lines: list[str]


def _data_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "demo.tsv").write_text(DATASET)
    (path / "demo.tsv.sha256").write_text(hashlib.sha256(DATASET.encode()).hexdigest())
    return path


def _command(tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "server", "--data-dir", str(tmp / "data"),
            "--db", str(tmp / "db.sqlite3"), *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "SIGSEARCH_ADMIN_TOKEN": ADMIN}


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Issued:
    return issue(tmp_path_factory.mktemp("certs"), "trusted")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory) -> Issued:
    """Another CA, which signed none of the server's certificates."""
    return issue(tmp_path_factory.mktemp("stranger"), "stranger")


def start_https_server(
    tmp: Path, certs: Issued, host: str = "127.0.0.1", env: dict[str, str] | None = None
) -> RunningServer:
    """The real `python -m server` over HTTPS on a free loopback port, in a subprocess."""
    _data_dir(tmp / "data")
    port = free_loopback_port()
    command = _command(tmp, "--host", host, "--port", str(port), "--certfile", str(certs.cert),
                       "--keyfile", str(certs.key))  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env={**_env(), **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    # The server prints its URLs once it listens; "Listening" is the last of them.
    for line in process.stdout:
        lines.append(line)
        if "Listening on" in line:
            return RunningServer(f"https://{host}:{port}", port, certs, process, lines)
    _, stderr = process.communicate(timeout=60)
    pytest.fail(f"server ended: {stderr}")


def stop(server: RunningServer) -> str:
    """Stop the server; what it wrote on stderr (its log)."""
    server.process.terminate()
    return server.process.communicate(timeout=60)[1]


@pytest.fixture(scope="module")
def https_server(tmp_path_factory, certs) -> Iterator[RunningServer]:
    server = start_https_server(tmp_path_factory.mktemp("https-server"), certs)
    yield server
    stop(server)


def test_prints_the_https_urls_workers_need(https_server):
    printed = "".join(https_server.stdout_lines)
    url = https_server.url
    assert f" * Serving data on: {url}/datasets/<name>?token=<run token>" in printed
    assert f" * DCP results endpoint: {url}/dcp-results/<run_id>?token=<run token>" in printed
    assert "http://" not in printed.replace("relayed to waitress", "")


def test_handshake_verifies_against_the_ca_and_names_loopback(https_server):
    context = ssl.create_default_context(cafile=str(https_server.certs.ca))
    with (
        socket.create_connection(("127.0.0.1", https_server.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer


def test_flow_client_and_a_worker_do_a_sink_round_trip_over_https(https_server):
    client = ServerClient(https_server.url, ADMIN, timeout=30, ca_bundle=str(https_server.certs.ca))
    client.wait_ready(timeout=120)
    sha = hashlib.sha256(DATASET.encode()).hexdigest()
    client.register_run("tls-run", "demo", RUN_TOKEN, [1, 2])
    assert client.serving_problem("demo", RUN_TOKEN, sha) == ""
    # What a worker does: fetch the dataset, post a result envelope form-encoded.
    dataset = requests.get(
        client.dataset_url("demo", RUN_TOKEN), timeout=30, verify=str(https_server.certs.ca)
    )
    assert dataset.status_code == 200 and dataset.text == DATASET
    posted = requests.post(
        client.sink_url("tls-run", RUN_TOKEN),
        data={"element": "1", "contentType": "application/json", "content": result_content(1)},
        timeout=30,
        verify=str(https_server.certs.ca),
    )
    assert posted.status_code == 200 and posted.json()["ok"] is True, posted.text
    status = client.status("tls-run")
    assert status["received"] == [1] and status["missing"] == [2]
    assert [r["slice"] for r in client.iter_results("tls-run")] == [1]


def test_the_ca_bundle_can_come_from_the_environment(https_server, monkeypatch):
    monkeypatch.setenv("SIGSEARCH_CA_BUNDLE", str(https_server.certs.ca))
    assert ServerClient(https_server.url, ADMIN, timeout=30).find_run("no-such-run") is None


def test_a_certificate_from_an_untrusted_ca_is_refused(https_server, stranger, monkeypatch):
    monkeypatch.delenv("SIGSEARCH_CA_BUNDLE", raising=False)
    for bundle in (str(stranger.ca), None):  # another CA; the system's CAs
        client = ServerClient(https_server.url, ADMIN, timeout=30, ca_bundle=bundle)
        with pytest.raises(ServerCertificateRefused, match="SIGSEARCH_CA_BUNDLE"):
            client.find_run("x")
        with pytest.raises(ServerCertificateRefused):
            client.wait_ready(timeout=600)  # at once: waiting would not mend a certificate
        assert "CERTIFICATE_VERIFY_FAILED" in client.serving_problem("demo", RUN_TOKEN, "0")


def test_a_missing_ca_bundle_is_named_at_once(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"CA bundle .*nope\.pem \(ca_bundle\)"):
        ServerClient("https://127.0.0.1:9", ADMIN, ca_bundle=str(tmp_path / "nope.pem"))
    monkeypatch.setenv("SIGSEARCH_CA_BUNDLE", str(tmp_path / "gone.pem"))
    with pytest.raises(ValueError, match=r"gone\.pem \(SIGSEARCH_CA_BUNDLE\)"):
        ca_verify()


def _options(server: RunningServer, headers: dict[str, str]) -> requests.Response:
    return requests.options(
        f"{server.url}/datasets/demo?token={RUN_TOKEN}",
        headers=headers,
        timeout=30,
        verify=str(server.certs.ca),
    )


def _preflight(server: RunningServer, origin: str, method: str, **asked: str):
    """A CORS preflight from `origin` for `method`, with more Access-Control-Request-* headers."""
    headers = {f"Access-Control-Request-{k.replace('_', '-').title()}": v for k, v in asked.items()}
    return _options(server, {"Origin": origin, "Access-Control-Request-Method": method, **headers})


def test_preflight_for_an_allowed_origin(https_server):
    response = _preflight(https_server, ALLOWED, "GET", headers="content-type")
    assert response.status_code == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")} >= {
        "GET",
        "POST",
    }
    assert "content-type" in headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Private-Network" not in headers
    assert "Origin" in headers["Vary"]


def test_preflight_asking_for_the_private_network(https_server):
    response = _preflight(https_server, ALLOWED, "POST", private_network="true")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"


def test_preflight_from_another_origin_is_refused_without_cors_headers(https_server):
    response = _preflight(https_server, "https://evil.example", "GET", private_network="true")
    assert response.status_code == 403
    assert "evil.example" in response.json()["reason"]
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_a_plain_options_request_is_not_a_preflight(https_server):
    response = _options(https_server, {})
    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response.headers


def test_plain_http_on_the_https_port_gets_no_answer(https_server):
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{https_server.port}/health", timeout=30)


def test_idle_connections_do_not_stall_handshakes_or_requests(https_server):
    # cheroot stalled every client for its socket timeout behind one silent TCP connection.
    context = ssl.create_default_context(cafile=str(https_server.certs.ca))
    address = ("127.0.0.1", https_server.port)
    silent = [socket.create_connection(address, timeout=30) for _ in range(100)]
    handshaken = [
        context.wrap_socket(socket.create_connection(address, timeout=30),
                            server_hostname="127.0.0.1")
        for _ in range(50)
    ]  # fmt: skip
    try:
        response = requests.get(
            f"{https_server.url}/health", timeout=30, verify=str(https_server.certs.ca)
        )
        assert response.status_code == 200
    finally:
        for conn in silent + handshaken:
            conn.close()


def test_a_huge_body_is_refused_before_it_is_read_over_tls(https_server):
    context = ssl.create_default_context(cafile=str(https_server.certs.ca))
    with (
        socket.create_connection(("127.0.0.1", https_server.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            b"POST /dcp-results/run1?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        assert tls.recv(65536).startswith(b"HTTP/1.1 413")


def test_the_access_log_names_the_client_not_the_tls_front(tmp_path, certs):
    server = start_https_server(tmp_path, certs)
    try:
        context = ssl.create_default_context(cafile=str(certs.ca))
        raw = socket.create_connection(
            ("127.0.0.1", server.port), timeout=30, source_address=("127.0.0.2", 0)
        )
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /health?from=second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while tls.recv(65536):
                pass
    finally:
        stderr = stop(server)
    assert "127.0.0.2 GET /health?from=second 200" in stderr, stderr[-2000:]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--certfile", "{cert}"], "{cert}"),
        (["--keyfile", "{key}"], "{key}"),
        (["--certfile", "{tmp}/missing.pem", "--keyfile", "{key}"], "{tmp}/missing.pem"),
        (["--certfile", "{cert}", "--keyfile", "{tmp}/missing-key.pem"], "{tmp}/missing-key.pem"),
        (["--certfile", "{cert}", "--keyfile", "{other_key}"], "{other_key}"),
        (["--certfile", "{key}", "--keyfile", "{key}"], "{key}"),
        (
            ["--certfile", "{cert}", "--keyfile", "{key}", "--public-url", "http://x:1"],
            "http://x:1",
        ),
    ],
)
def test_unusable_tls_settings_are_refused_in_one_line(tmp_path, certs, stranger, extra, named):
    names = {"cert": certs.cert, "key": certs.key, "other_key": stranger.key, "tmp": tmp_path}
    args = [a.format(**names) for a in extra]
    done = subprocess.run(
        _command(tmp_path, "--port", str(free_loopback_port()), *args),
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("python -m server: error: ")
    assert named.format(**names) in done.stderr
    assert not (tmp_path / "db.sqlite3").exists()


def test_an_unreadable_certificate_is_named(tmp_path, certs):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    cert = tmp_path / "cert.pem"
    cert.write_bytes(certs.cert.read_bytes())
    cert.chmod(0)
    done = subprocess.run(
        _command(tmp_path, "--certfile", str(cert), "--keyfile", str(certs.key)),
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and f"certificate file {cert}: not readable" in done.stderr
