"""Drive the worktime harness: export a job with the real SDK, run one of its slices on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tasks.execution.jobs import JobSpec

from ..conftest import ROOT

HERE = Path(__file__).parent


def dcp_client_dir() -> Path:
    """The dcp-client shipped inside the installed `dcp` package."""
    import dcp

    return Path(dcp.__file__).parent / "js" / "node_modules" / "dcp-client"


def export_job(spec: JobSpec, out: Path, offline_env: dict, work_function: str = "") -> Path:
    """Build the job as the `dcp` backend does (SDK offline) and write what a worker gets."""
    args = [sys.executable, "-m", "tests.worktime.export_job", json.dumps(spec.__dict__), out]
    env = {**os.environ, **offline_env, "SIGSEARCH_EXPORT_WORK_FUNCTION": work_function}
    subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=True, timeout=120)
    return out


def run_slice(
    job_file: Path, element: int | str, pyodide: Path, allowed_origin: str, timeout: float = 300
) -> dict:
    """Run one slice through dcp-client's Pyodide worktime in Node; return its report.

    `element` may be slice numbers joined by commas: they run one after the other in the
    same sandbox, and the report lists them all under `slices`.
    """
    env = {
        **os.environ,
        "DCP_CLIENT_DIR": str(dcp_client_dir()),
        "DCP_CONFIG_LOCATION": "",  # dcp-client offline: no remote configuration
        "DCP_SCHEDULER_LOCATION": "http://127.0.0.1:9",
    }
    args = ["node", HERE / "run-slice.js", job_file, element, pyodide, allowed_origin]
    out = subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"run-slice.js failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
