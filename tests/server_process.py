"""Start `python -m server` as a user would, for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from .conftest import ROOT


def start_server_process(workdir: Path, port: int, admin_token: str) -> subprocess.Popen:
    """The standalone server on loopback with its data and database under `workdir`."""
    env = {**os.environ, "SIGSEARCH_ADMIN_TOKEN": admin_token}
    cmd = [sys.executable, "-m", "server", "--port", str(port), "--data-dir",
           str(workdir / "data"), "--db", str(workdir / "db.sqlite3")]  # fmt: skip
    process = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start within 30 s")
