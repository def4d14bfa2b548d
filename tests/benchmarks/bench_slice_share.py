"""Benchmark: the useful share of a DCP slice on a fresh and on a reused sandbox.

Run: `.venv/bin/python -m tests.benchmarks.bench_slice_share [--only golub]`. For golub and a
generated 200 x 20,000 dataset, at the `dcp` deployment's settings (all classifiers, 10-fold
CV), runs two slices one after the other in one sandbox of the worktime tier (dcp-client's
Pyodide worktime, Pyodide 0.28.2 in Node, the real server on loopback): the first on a
fresh sandbox, the second on the reused one. Packings: 10 and 20 signatures a slice
(before) and what `tasks.execution.sizing` chooses at its default target (after).

useful share = compute / (fixed + compute), wall seconds: compute is the work function's
`fit_seconds`; fixed is the rest of the sandbox's time for the slice (Pyodide start and
package load on a fresh sandbox; imports, dataset verification and parse, JSON). The
argument fetch (once per worker and job) is printed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from pathlib import Path

from server.embedded import EmbeddedServer
from tasks.execution import sizing
from tasks.execution.client import ServerClient
from tasks.execution.jobs import JobSpec
from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.worker import CLASSIFIERS

from ..conftest import GOLUB
from ..dcp_offline import offline_sdk_env
from ..worktime.harness import export_job, run_slice
from ..worktime.pyodide_dist import pyodide_dir
from .shapes import generated_input, prepared

FOLDS = 10


def shares(report: dict) -> dict:
    """Fresh and reused shares (and the phases) from a two-slice report."""
    phases = report["phases"]
    first, second = report["slices"]
    fit = [json.loads(s["result"])["timings"]["fit_seconds"] for s in (first, second)]
    fresh_fixed = phases["initSandbox"]["wall"] + first["clock"]["wall"] - fit[0]
    reused_fixed = second["clock"]["wall"] - fit[1]
    return {
        "fetch": phases["fetchArguments"]["wall"],
        "start": phases["pyodideStart"]["wall"],
        "init": phases["initSandbox"]["wall"],
        "fresh_fixed": fresh_fixed,
        "fresh_compute": fit[0],
        "fresh": fit[0] / (fit[0] + fresh_fixed),
        "reused_fixed": reused_fixed,
        "reused_compute": fit[1],
        "reused": fit[1] / (fit[1] + reused_fixed),
    }


def measure(root: Path, name: str, summary, per_slice: int, server, client) -> dict:
    """Run slices 1 and 2 of a job packed `per_slice` in one sandbox; return the shares."""
    probesets = summary.path.read_text().split("\n", 1)[0].split("\t")[1:]
    signatures = plan_signatures(probesets, 2 * per_slice, 5, 9, 7)
    slices = pack_slices(signatures, per_slice)
    run_id, token = f"{name}-{per_slice}", secrets.token_urlsafe(24)
    client.register_run(run_id, name, token, [s["slice"] for s in slices])
    config = {"case": summary.case, "cv_folds": FOLDS, "seed": 42, "classifiers": list(CLASSIFIERS)}
    spec = JobSpec(run_id, tuple(json.dumps(s) for s in slices), "",
                   client.dataset_url(name, token),
                   json.dumps({**config, "dataset_sha256": summary.sha256}),
                   client.sink_url(run_id, token), {"elementType": "results"})  # fmt: skip
    job = export_job(spec, root / f"{run_id}.kvin", offline_sdk_env(root / "sdk"))
    os.environ["RUN_SLICE_NO_POST"] = "1"  # the share needs no sink
    report = run_slice(job, "1,2", pyodide_dir(), server.url, timeout=1800)
    for s in report["slices"]:
        if s["verdict"] != "complete":
            raise RuntimeError(f"{run_id} slice {s['sliceNumber']}: {s}")
    return shares(report)


def packings(sized: int, after_only: bool) -> list[tuple[str, int]]:
    """(label, signatures a slice): the old defaults, then the sized one."""
    after = [("after", sized)]
    return after if after_only else [("before", 10), ("before", 20), *after]


def main() -> None:
    """Print the useful share before (10, 20 a slice) and after (sized) for each dataset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["golub", "200x20000"])
    parser.add_argument("--after-only", action="store_true", help="only the sized packing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sdk").mkdir()
        data = root / "data"
        data.mkdir()
        datasets = {"golub": prepared(GOLUB, data, "golub")}
        if args.only != "golub":
            big = generated_input(root / "big.tsv", 200, 20_000)
            datasets["200x20000"] = prepared(big, data, "200x20000")
        if args.only == "200x20000":
            datasets.pop("golub")
        admin = secrets.token_urlsafe(24)
        server = EmbeddedServer.for_data(data, root / "db.sqlite3", admin)
        client = ServerClient(server.url, admin)
        print(f"dcp deployment settings: {len(CLASSIFIERS)} classifiers, {FOLDS}-fold CV; "
              f"target {sizing.DEFAULT_TARGET_SLICE_SECONDS:g} s")  # fmt: skip
        header = "dataset     packing        sig/slice  start  init  fresh fixed+compute  share"
        print(header + "  reused fixed+compute  share  fetch")
        try:
            for name, summary in datasets.items():
                n = sum(summary.samples.values())
                sized = sizing.signatures_per_slice(
                    sizing.DEFAULT_TARGET_SLICE_SECONDS, n, list(CLASSIFIERS), FOLDS
                )
                for label, per_slice in packings(sized, args.after_only):
                    started = time.perf_counter()
                    s = measure(root, name, summary, per_slice, server, client)
                    print(f"{name:11s} {label:14s} {per_slice:9d} {s['start']:6.1f} "
                          f"{s['init']:5.1f} {s['fresh_fixed']:8.1f} + {s['fresh_compute']:6.1f}"
                          f"    {s['fresh']:5.3f}  {s['reused_fixed']:8.2f} + "
                          f"{s['reused_compute']:6.1f}      {s['reused']:5.3f}  {s['fetch']:5.2f}"
                          f"   ({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
        finally:
            server.stop()
    print("wall seconds; compute = fit_seconds; machine shared with other work while measured")


if __name__ == "__main__":
    main()
