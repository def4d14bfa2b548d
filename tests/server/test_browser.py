"""Headless Chromium on a page from an https:// origin fetching from the server (skipped without it)."""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certs import Issued, issue
from .conftest import ADMIN, DATASET, RUN_TOKEN, result_content
from .test_tls import start_https_server, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# Each check fetches from the data server and writes what came back into the page.
SCRIPT = """
const server = %(server)s;
const checks = {
  dataset: () => fetch(server + "/datasets/demo?token=%(token)s").then(r => r.text()),
  sink: () => fetch(server + "/dcp-results/browser-run?token=%(token)s", {method: "POST",
    body: new URLSearchParams({element: "1", contentType: "application/json",
                               content: %(content)s})}).then(r => r.json()).then(j => j.ok),
  // A header outside the CORS safelist: the browser asks with a preflight first.
  preflighted: () => fetch(server + "/health", {headers: {"Content-Type": "application/json"}})
    .then(r => r.json()).then(j => j.status),
};
Promise.all(Object.entries(checks).map(([name, check]) =>
  check().then(v => [name, "ok: " + v], e => [name, "failed: " + e])))
  .then(pairs => { document.getElementById("out").textContent =
    JSON.stringify(Object.fromEntries(pairs)); });
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Issued:
    return issue(tmp_path_factory.mktemp("browser-certs"), "browser")


class Page(http.server.BaseHTTPRequestHandler):
    """Serves the page's one HTML document, set once the data server's URL is known."""

    body = b"pending"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def page(certs) -> Iterator[type[Page]]:
    """An HTTPS origin on 127.0.0.1 (a port of its own) whose page is set by the test."""
    handler = type("ThisPage", (Page,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    handler.origin = f"https://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield handler
    httpd.shutdown()


def spki_pin(certs: Issued) -> str:
    """What --ignore-certificate-errors-spki-list takes: this one certificate is trusted."""
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chromium_results(url: str, certs: Issued, profile: Path) -> dict[str, str]:
    """Load `url` in headless Chromium; the checks' outcomes the page wrote."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={profile}",
               f"--ignore-certificate-errors-spki-list={spki_pin(certs)}",
               # Load, then let the page's fetches finish (virtual time: not a wall clock).
               "--virtual-time-budget=20000", "--dump-dom", url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    marker = '<pre id="out">'
    start = done.stdout.index(marker) + len(marker)
    out = html.unescape(done.stdout[start : done.stdout.index("</pre>", start)])
    assert out != "pending", done.stderr[-2000:]
    return json.loads(out)


def _browse(tmp_path: Path, certs: Issued, page: type[Page], allowed: str) -> tuple[dict, str]:
    """The page's outcomes and the data server's log, the server on 127.0.0.2 allowing `allowed`."""
    server = start_https_server(
        tmp_path / "server", certs, host="127.0.0.2", env={"SIGSEARCH_ALLOWED_ORIGINS": allowed}
    )
    try:
        registered = requests.post(
            f"{server.url}/runs",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={"run_id": "browser-run", "dataset": "demo", "token": RUN_TOKEN, "expected": [1]},
            timeout=30,
            verify=str(certs.ca),
        )
        assert registered.status_code == 201, registered.text
        script = SCRIPT % {"server": json.dumps(server.url), "token": RUN_TOKEN,
                           "content": json.dumps(result_content(1))}  # fmt: skip
        page.body = f'<!doctype html><pre id="out">pending</pre><script>{script}</script>'.encode()
        outcomes = chromium_results(page.origin + "/", certs, tmp_path / "profile")  # type: ignore[attr-defined]
    finally:
        log = stop(server)
    return outcomes, log


def test_a_page_of_an_allowed_https_origin_fetches_posts_and_passes_preflight(
    tmp_path, certs, page
):
    outcomes, log = _browse(tmp_path, certs, page, allowed=page.origin)
    assert outcomes == {
        "dataset": f"ok: {DATASET}",
        "sink": "ok: true",
        "preflighted": "ok: ok",
    }, log[-3000:]
    assert "OPTIONS /health 204" in log


def test_a_page_of_another_origin_gets_nothing(tmp_path, certs, page):
    outcomes, log = _browse(tmp_path, certs, page, allowed="https://dcp.work")
    assert all(v.startswith("failed: TypeError") for v in outcomes.values()), outcomes
    # The preflight is refused, so the request it asked for is never sent.
    assert "OPTIONS /health 403" in log and "GET /health 200" not in log.split("OPTIONS /health")[1]
