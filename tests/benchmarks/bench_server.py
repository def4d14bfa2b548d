"""Benchmark: results-sink throughput and latency of `python -m server` at 1, 8, 32 clients.

Run: `.venv/bin/python -m tests.benchmarks.bench_server`. Prints one JSON line per
concurrency level: posts/s, p50/p99 latency, and results lost (acknowledged, not stored).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

from server.embedded import free_loopback_port
from tasks.execution.client import ServerClient

from ..server_process import start_server_process

ADMIN = "benchmark-admin-token-0123456789"
TOKEN = "benchmark-run-token-0123456789"
# A realistic slice result: 10 signatures x 6 classifiers.
RECORDS = [
    {"signature": s, "classifier": c, "auc": 0.5 + s / 100, "accuracy": 0.7}
    for s in range(10)
    for c in ("logistic", "logistic_l1", "bagging", "random_forest", "svm", "decision_tree")
]


def load(base: str, run_id: str, clients: int, posts: int) -> dict:
    """Post `posts` unique results from `clients` threads; time each post."""
    client = ServerClient(base, ADMIN)
    client.register_run(run_id, "bench", TOKEN, list(range(1, posts + 1)))
    path = urlsplit(client.sink_url(run_id, TOKEN))
    target = f"{path.path}?{path.query}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    local, acknowledged = threading.local(), []

    def post(element: int) -> float:
        # http.client with keep-alive: a light client, so the figures are the server's.
        conn = getattr(local, "conn", None) or HTTPConnection(path.hostname, path.port, timeout=60)
        local.conn = conn
        content = json.dumps({"slice": element, "records": RECORDS})
        body = urlencode({"elementType": "results", "element": str(element),
                          "contentType": "application/json", "content": content})  # fmt: skip
        started = time.perf_counter()
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status == 200:
            acknowledged.append(element)
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = np.array(list(pool.map(post, range(1, posts + 1))))
    wall = time.perf_counter() - started
    stored = set(client.status(run_id)["received"])
    return {
        "clients": clients,
        "posts": posts,
        "posts_per_s": round(posts / wall, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
        "lost": len(set(acknowledged) - stored),
        "errors": posts - len(acknowledged),
    }


def main() -> None:
    """Print one JSON line per concurrency level."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_loopback_port()
        (Path(tmp) / "data").mkdir()
        (Path(tmp) / "data" / "bench.tsv").write_text("phenotype\tg\nA\t1\n")
        process = start_server_process(Path(tmp), port, ADMIN)
        try:
            for clients in (1, 8, 32):
                result = load(f"http://127.0.0.1:{port}", f"bench{clients}", clients, args.posts)
                print(json.dumps(result), flush=True)
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
