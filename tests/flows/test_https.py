"""The flow against a standalone server over HTTPS, its certificate checked with --ca-bundle."""

from pathlib import Path

import pytest

from flows.signature_search import signature_search
from tasks.execution.client import CA_BUNDLE_VARIABLE, ServerCertificateRefused

from ..server.certs import issue
from ..server.conftest import ADMIN
from ..server.test_tls import start_https_server, stop
from .test_flow import params


def small_run(tmp_path: Path, server_url: str, **extra) -> dict:
    """The small search against a running server, its data dir the server's."""
    arguments = params(tmp_path, server_url=server_url, workers=2, **extra)
    return {**arguments, "data_dir": str(tmp_path / "data")}


def test_a_run_over_https_gives_the_tables_of_a_plain_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSEARCH_ADMIN_TOKEN", ADMIN)
    monkeypatch.delenv(CA_BUNDLE_VARIABLE, raising=False)
    certs = issue(tmp_path / "certs", "lab")
    server = start_https_server(tmp_path, certs)
    try:
        result = signature_search(**small_run(tmp_path, server.url, ca_bundle=str(certs.ca)))
        stranger = issue(tmp_path / "stranger", "stranger")
        with pytest.raises(ServerCertificateRefused):
            signature_search(
                **small_run(tmp_path / "again", server.url, ca_bundle=str(stranger.ca))
            )
    finally:
        log = stop(server)
    plain = signature_search(**params(tmp_path / "plain", workers=2))
    for name in ("signatures.tsv", "genes.tsv"):
        assert (Path(result["run_dir"]) / name).read_bytes() == (
            Path(plain["run_dir"]) / name
        ).read_bytes()
    assert "POST /dcp-results/" in log  # workers posted over TLS
