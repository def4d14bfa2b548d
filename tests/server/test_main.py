import os
import stat
import subprocess
import sys

import pytest

from server.__main__ import load_admin_token, public_url_for

from ..conftest import ROOT


def test_admin_token_generated_once_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv("SIGSEARCH_ADMIN_TOKEN", raising=False)
    path = tmp_path / "var" / "admin-token"
    token, source = load_admin_token(path)
    assert len(token) >= 32 and source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_admin_token(path)[0] == token
    monkeypatch.setenv("SIGSEARCH_ADMIN_TOKEN", "from-environment-0123456789")
    assert load_admin_token(path) == ("from-environment-0123456789",
                                      "environment variable SIGSEARCH_ADMIN_TOKEN")  # fmt: skip


def test_public_url():
    assert public_url_for("127.0.0.1", 5001, None) == "http://127.0.0.1:5001"
    assert public_url_for("0.0.0.0", 5001, "http://lab.example:8080/") == "http://lab.example:8080"
    assert public_url_for("::1", 5001, None) == "http://[::1]:5001"
    assert public_url_for("0.0.0.0", 5001, None).startswith("http://")


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o640, True), (0o604, True)])
def test_an_admin_token_file_open_to_others_is_warned_about(
    tmp_path, monkeypatch, caplog, mode, warned
):
    monkeypatch.delenv("SIGSEARCH_ADMIN_TOKEN", raising=False)
    path = tmp_path / "admin-token"
    path.write_text("t" * 43 + "\n")
    path.chmod(mode)
    with caplog.at_level("WARNING", logger="server"):
        assert load_admin_token(path) == ("t" * 43, str(path))
    assert ("open to group or others" in caplog.text) is warned
    assert "t" * 43 not in caplog.text


def test_a_short_admin_token_is_refused_in_one_line_with_exit_status_2(tmp_path):
    env = {**os.environ, "SIGSEARCH_ADMIN_TOKEN": "short"}
    command = [sys.executable, "-m", "server", "--data-dir", str(tmp_path / "d"),
               "--db", str(tmp_path / "db.sqlite3")]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("python -m server: error: the admin token must be at least 32")
    assert not (tmp_path / "db.sqlite3").exists()
