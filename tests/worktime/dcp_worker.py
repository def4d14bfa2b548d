"""The npm `dcp-worker` program, installed into the download cache, asked what a command line means.

The worker's own `bin/dcp-worker` parses its options (yargs, strict: unknown options stop it)
and applies them to its configuration; `--showConfig EXPR` prints `dcpConfig.EXPR` after that
and exits before any worker starts. With `DCP_CONFIG_LOCATION=''` dcp-client fetches no remote
configuration, so no scheduler is contacted. A throwaway `--identityKey` stands in for the
identity keystore a real worker has.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
from pathlib import Path

from .pyodide_dist import cache_root

WORKER_VERSION = "3.3.19"
START, END = "<!-- npm-worker-command -->", "<!-- /npm-worker-command -->"
# What the test asks of the worker's configuration once the options are applied.
SHOW = (
    "worker && JSON.stringify({any: dcpConfig.worker.allowOrigins.any, "
    "groups: dcpConfig.worker.computeGroups, leave: dcpConfig.worker.leavePublicGroup, "
    "payment: String(dcpConfig.worker.paymentAddress)})"
)


def worker_bin() -> Path:
    """bin/dcp-worker of the npm package, installed once into the cache."""
    prefix = cache_root() / "dcp-worker" / WORKER_VERSION
    script = prefix / "node_modules" / "dcp-worker" / "bin" / "dcp-worker"
    if not script.is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
        subprocess.run([*command, f"dcp-worker@{WORKER_VERSION}"], check=True, timeout=600)
    return script


def readme_command(readme: Path) -> list[str]:
    """The npm worker's command line between the README's markers, split as a shell would."""
    text = readme.read_text()
    block = text[text.index(START) + len(START) : text.index(END)]
    lines = [
        ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("```")
    ]
    if len(lines) != 1:
        raise ValueError(f"expected one command line between the markers, got {lines}")
    return shlex.split(lines[0])


def fill(args: list[str], values: dict[str, str]) -> list[str]:
    """Replace the README's `<placeholders>` with concrete values."""
    pattern = re.compile(r"<([a-z-]+)>")
    return [pattern.sub(lambda m: values[m.group(1)], arg) for arg in args]


def worker_config(args: list[str], home: Path) -> subprocess.CompletedProcess:
    """Run the worker's parser on `args`; stdout is the applied configuration (JSON) on success."""
    env = {
        **os.environ,
        "HOME": str(home),
        "DCP_HOMEDIR": str(home),
        "DCP_CONFIG_LOCATION": "",  # no remote configuration: nothing is fetched
        "DCP_SCHEDULER_LOCATION": "http://127.0.0.1:9",
    }
    extra = ["--identityKey", secrets.token_hex(32), "--showConfig", SHOW]
    command = ["node", str(worker_bin()), *args, *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def applied(done: subprocess.CompletedProcess) -> dict:
    """The configuration the worker printed."""
    return json.loads(done.stdout.strip().splitlines()[-1])
