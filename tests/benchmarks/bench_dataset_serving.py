"""Benchmark: server CPU to serve a dataset's first fetches, and bytes on the wire per worker.

Run: `.venv/bin/python -m tests.benchmarks.bench_dataset_serving [--server-root DIR]`.
For golub (prepared) and a generated 200 x 20,000 dataset, each on a fresh `python -m server`
(empty cache), prints one JSON line per scenario with the server process's CPU seconds
(utime + stime from /proc) for each step, and the body bytes a worker receives with and
without `Accept-Encoding: gzip` (Node DCP workers never ask for gzip).

Scenarios: `cold`: registration, then the first fetch of one worker without gzip (as Node
sends it), then 8 workers at once without gzip, then one with gzip; `flow`: `/ready` first,
as the flow's `wait_ready` does. `--server-root` runs the server from another tree, e.g. an
earlier commit's (`git archive <commit> | tar -x -C /tmp/before`), for before/after figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

from server.embedded import free_loopback_port
from tasks.execution.client import ServerClient

from .. import server_process
from ..conftest import GOLUB
from .shapes import generated_input, prepared

ADMIN = "benchmark-admin-token-0123456789"
TOKEN = "benchmark-run-token-0123456789"
WORKERS = 8


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(port: int, name: str, gzip: bool) -> int:
    """One worker's fetch of the dataset: the body bytes on the wire (not decoded)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Accept-Encoding": "gzip"} if gzip else {"Accept-Encoding": "identity"}
    conn.request("GET", f"/datasets/{name}?token={TOKEN}", headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200, response.status
    return len(body)


def fetch_at_once(port: int, name: str, workers: int) -> list[int]:
    """`workers` fetches without gzip at the same time."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: fetch(port, name, gzip=False), range(workers)))


def scenario(workdir: Path, name: str, ready_first: bool) -> dict:
    """Steps on a fresh server, each with the server CPU it cost."""
    port = free_loopback_port()
    process = server_process.start_server_process(workdir, port, ADMIN)
    base, steps, sizes = f"http://127.0.0.1:{port}", {}, {}
    client = ServerClient(base, ADMIN, timeout=300)

    def step(label: str, action) -> object:
        before = cpu_seconds(process.pid)
        value = action()
        steps[label] = round(cpu_seconds(process.pid) - before, 2)
        return value

    try:
        if ready_first:
            step("ready", lambda: client.wait_ready(300))
        step("register", lambda: client.register_run(f"run-{name}", name, TOKEN, [1]))
        sizes["identity"] = step("first_fetch", lambda: fetch(port, name, gzip=False))
        step(f"{WORKERS}_fetches", lambda: fetch_at_once(port, name, WORKERS))
        sizes["gzip"] = step("first_gzip_fetch", lambda: fetch(port, name, gzip=True))
    finally:
        process.terminate()
        process.wait(30)
    return {
        "dataset": name,
        "scenario": "flow" if ready_first else "cold",
        "server_cpu_s": steps,
        "total_cpu_s": round(sum(steps.values()), 2),
        "bytes_per_worker": sizes,
    }


def main() -> None:
    """Print one JSON line per dataset and scenario."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-root", type=Path, help="run `python -m server` from here")
    args = parser.parse_args()
    if args.server_root:
        server_process.ROOT = args.server_root.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {
            "golub": GOLUB,
            "gen200x20000": generated_input(tmp / "gen.tsv", 200, 20_000),
        }
        for name, source in sources.items():
            for ready_first in (False, True):
                workdir = tmp / f"{name}-{ready_first}"
                (workdir / "data").mkdir(parents=True)
                prepared(source, workdir / "data", name)
                print(json.dumps(scenario(workdir, name, ready_first)), flush=True)


if __name__ == "__main__":
    main()
