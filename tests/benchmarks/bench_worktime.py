"""Benchmark: one slice's cost under DCP's Pyodide worktime vs CPython, same slice.

Run: `.venv/bin/python -m tests.benchmarks.bench_worktime [--signatures 3]`. Prints the work
function's wall seconds on CPython (and its CPU seconds) and under the worktime harness
(Pyodide in Node: there is no CPU clock), their ratio, the harness's whole time (Pyodide
start and package load included) and whether the records are identical.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from pathlib import Path

from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient
from tasks.execution.jobs import JobSpec
from tasks.io import read_input, save_prepared
from tasks.science.dataset import PrepareOptions, prepare_dataset
from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.worker import CLASSIFIERS, evaluate_slice

from ..conftest import GOLUB
from ..dcp_offline import offline_sdk_env
from ..worktime.harness import export_job, run_slice
from ..worktime.pyodide_dist import pyodide_dir


def main() -> None:
    """Run the same slice on CPython and on the worktime harness; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=3)
    args = parser.parse_args()
    pyodide = pyodide_dir()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        opts = PrepareOptions()
        summary = save_prepared(prepare_dataset(read_input(GOLUB, opts), opts), root / "d", "golub")
        admin, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        server = EmbeddedServer.for_data(root / "d", root / "db.sqlite3", admin)
        client = ServerClient(server.url, admin)
        probesets = (root / "d" / "golub.tsv").read_text().split("\n", 1)[0].split("\t")[1:]
        [datum] = pack_slices(plan_signatures(probesets, args.signatures, 5, 9, 7), args.signatures)
        client.register_run("bench", "golub", token, [1])
        config = {
            "case": summary.case,
            "cv_folds": 10,
            "seed": 0,
            "classifiers": list(CLASSIFIERS),
        }
        spec = JobSpec("bench#0", (json.dumps(datum),), "", client.dataset_url("golub", token),
                       json.dumps({**config, "dataset_sha256": summary.sha256}),
                       client.sink_url("bench", token), {"elementType": "results"})  # fmt: skip
        dataset = (root / "d" / "golub.tsv").read_text()
        evaluate_slice(
            spec.slices[0], dataset, spec.config_json
        )  # warm imports and the parse cache
        cpython = json.loads(evaluate_slice(spec.slices[0], dataset, spec.config_json))
        job = export_job(spec, root / "job.kvin", offline_sdk_env(root))
        started = time.perf_counter()
        report = run_slice(job, 1, pyodide, server.url)
        harness_seconds = time.perf_counter() - started
        server.stop()
    on_pyodide = json.loads(report["result"])
    wall_c, wall_p = cpython["timings"]["total_seconds"], on_pyodide["timings"]["total_seconds"]
    print(
        f"slice: {args.signatures} signatures x {len(CLASSIFIERS)} classifiers, 10-fold CV, golub"
    )
    print(f"CPython {cpython['versions']}: {wall_c:.2f} s wall, "
          f"{cpython['timings']['cpu_seconds']:.2f} s CPU")  # fmt: skip
    print(f"Pyodide {report['worktime']['pyodide']} {on_pyodide['versions']}: {wall_p:.2f} s wall")
    print(f"Pyodide / CPython (work function wall): {wall_p / wall_c:.2f}")
    print(f"harness total (Node + Pyodide start + package load + slice): {harness_seconds:.1f} s")
    print(f"records identical: {on_pyodide['records'] == cpython['records']}")


if __name__ == "__main__":
    main()
