"""The README's worker command line, checked by the npm `dcp-worker` program's own parser.

No scheduler is contacted: the worker prints its applied configuration and exits before it
starts (see dcp_worker.py). A README that drifts from the worker's options fails here.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from ..conftest import ROOT
from .dcp_worker import applied, fill, readme_command, worker_config
from .pyodide_dist import cache_root

pytestmark = pytest.mark.worktime
ORIGIN = "http://192.0.2.10:5001"
VALUES = {
    "account": "0x" + "12" * 20,
    "key": "group-key",
    "secret": "group-secret",
    "lan-address": "192.0.2.10",
}
OLD_SPELLING = [
    "--earnings-account=<account>",
    "--no-global",
    "--join",
    "<key>,<secret>",
    "--allow-origin",
    "http://<lan-address>:5001",
]


def test_the_readme_npm_worker_command_allows_the_server_joins_the_group_and_leaves_public(
    tmp_path,
):
    command = readme_command(ROOT / "README.md")
    assert command[0] == "dcp-worker"
    done = worker_config(fill(command[1:], VALUES), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = applied(done)
    assert ORIGIN in config["any"]
    assert {"joinKey": "group-key", "joinSecret": "group-secret"} in config["groups"]
    assert config["leave"] is True
    assert config["payment"].lower() == VALUES["account"]


def test_the_old_tutorial_spelling_is_refused_by_the_worker(tmp_path):
    done = worker_config(fill(OLD_SPELLING, VALUES), tmp_path)
    assert done.returncode != 0
    assert "Unknown arguments: earnings-account" in done.stderr + done.stdout


def test_the_readme_config_file_form_is_what_the_worker_reads():
    # dcp-client ignores no config file: it refuses one with a world-writeable directory in
    # its path (such as /tmp), so this home lives in the download cache.
    home = Path(tempfile.mkdtemp(dir=cache_root()))
    config_dir = home / ".dcp" / "dcp-worker"
    config_dir.mkdir(parents=True)
    (config_dir / "dcp-config.js").write_text(
        "({ worker: { leavePublicGroup: true, computeGroups: "
        "[{ joinKey: 'group-key', joinSecret: 'group-secret' }], "
        f"allowOrigins: {{ any: ['{ORIGIN}'] }} }} }})"
    )
    readme = (ROOT / "README.md").read_text()
    assert "~/.dcp/dcp-worker/dcp-config.js" in readme
    try:
        done = worker_config([f"--payment-address={VALUES['account']}"], home)
    finally:
        shutil.rmtree(home)
    assert done.returncode == 0, done.stderr[-3000:]
    config = applied(done)
    assert ORIGIN in config["any"] and config["leave"] is True
    assert {"joinKey": "group-key", "joinSecret": "group-secret"} in config["groups"]
