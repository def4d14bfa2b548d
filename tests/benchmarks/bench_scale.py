"""Benchmark: a search of 1,000,000 signatures planned, packed, registered and deployed.

Mode `flow` (the default) is the flow's own path: the compact plan as `plan_task` makes it,
`rounds.run_slices` registering the slice data streamed and deploying the first round on a
backend that stands in for the DCP scheduler (it records when the job was handed over and
reports it done, without results); it prints the time to the first deployed slice and the
peak memory. Modes `streamed` and `listed` time the registration alone.

Run: `.venv/bin/python -m tests.benchmarks.bench_scale` (about 2 minutes on 2 loaded cores, 5 with `--listed`).
Prints one JSON line per configuration: signatures_per_slice 20 (the `dcp` deployment's)
and 1, each `streamed` (compact plan, slice texts made as registration asks for them) and,
with `--listed`, as the flow holds them today (lists of signatures, slice dicts, a dict of
texts). Each runs in a child process holding the plan, the embedded server on tmp dirs (as
the flow's `serve_or_connect` starts it) and the client, so its ru_maxrss (getrusage; psutil
is not installed) is the peak of the whole flow-side process. Times are from the start,
planning included; a slice can be deployed once its run and its batch are registered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient
from tasks.execution.jobs import SliceEvent
from tasks.execution.rounds import JobContext, PlannedSlices, run_slices
from tasks.io import read_probesets
from tasks.science.plan import (
    iter_slice_inputs,
    pack_slices,
    plan_compact,
    plan_signatures,
    slice_count,
)

from ..conftest import GOLUB, ROOT

ADMIN = "benchmark-admin-token-0123456789"
TOKEN = "benchmark-run-token-0123456789"
CONFIG = {"case": "AML", "cv_folds": 10, "seed": 1, "classifiers": ["logistic"] * 6}


def peak_mib() -> float:
    """This process's peak resident set so far (ru_maxrss, KiB on Linux), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def planned_inputs(n: int, per_slice: int, mode: str) -> Iterator[tuple[int, str]]:
    """The slice texts of the plan: streamed from a compact plan, or listed as the flow does."""
    probesets = read_probesets(GOLUB)
    if mode == "streamed":
        return iter_slice_inputs(plan_compact(probesets, n, 5, 9, seed=1), per_slice)
    slices = pack_slices(plan_signatures(probesets, n, 5, 9, seed=1), per_slice)
    return iter({s["slice"]: json.dumps(s, sort_keys=True) for s in slices}.items())


def served(client: ServerClient, run_id: str, slice_no: int) -> bool:
    """Whether a worker's fetch of the slice gets its datum."""
    response = requests.get(client.slice_url(run_id, slice_no, TOKEN), timeout=30)
    return response.status_code == 200 and response.text.startswith('{"signatures": ')


def measure(n: int, per_slice: int, mode: str, workdir: Path) -> dict:
    """Plan, register the run and every slice's datum; time and peak memory on the way."""
    started = time.perf_counter()
    elapsed = lambda: round(time.perf_counter() - started, 2)  # noqa: E731
    inputs = planned_inputs(n, per_slice, mode)
    figures = {"planned_s": elapsed(), "planned_peak_rss_mib": peak_mib()}
    (workdir / "data").mkdir()
    shutil.copyfile(GOLUB, workdir / "data" / "golub.tsv")
    server = EmbeddedServer.for_data(workdir / "data", workdir / "db.sqlite3", ADMIN)
    try:
        client = ServerClient(server.url, ADMIN, timeout=120)
        client.wait_ready(60)
        n_slices = slice_count(n, per_slice)
        client.register_run("run-bench", "golub", TOKEN, list(range(1, n_slices + 1)))
        figures["run_registered_s"] = elapsed()
        figures["run_registered_peak_rss_mib"] = peak_mib()
        batches = client.register_input_batches("run-bench", json.dumps(CONFIG), inputs)
        first = next(batches)
        figures["first_batch_registered_s"] = elapsed()
        figures["first_slice_served"] = served(client, "run-bench", 1)
        registered = max(batches, default=first)
        figures["all_registered_s"] = elapsed()
        figures["last_slice_served"] = served(client, "run-bench", n_slices)
    finally:
        server.stop()
    seconds = figures["all_registered_s"] - figures["run_registered_s"]
    return {
        "benchmark": "scale",
        "mode": mode,
        "signatures": n,
        "signatures_per_slice": per_slice,
        "slices": registered,
        **figures,
        "registration_slices_per_s": round(registered / max(seconds, 1e-9)),
        "database_mib": round(
            sum(f.stat().st_size for f in workdir.glob("db.sqlite3*")) / 2**20, 1
        ),
        "peak_rss_mib": peak_mib(),
    }


@dataclass
class HandedOver:
    """The stand-in for the scheduler: notes when a job arrives, and ends it at once."""

    started: float
    deployed_s: list = field(default_factory=list)
    slices: list = field(default_factory=list)
    parallelism: int = 8
    remote_inputs: bool = True

    def deploy(self, spec):
        self.deployed_s.append(round(time.perf_counter() - self.started, 2))
        self.slices.append(len(spec.slices))
        return StandInJob(spec.name)


@dataclass
class StandInJob:
    job_id: str
    _events: list = field(default_factory=lambda: [SliceEvent("done")])

    def events(self, timeout):
        events, self._events = self._events, []
        return events

    def done(self):
        return not self._events

    def cancel(self):
        return None


def measure_flow(n: int, per_slice: int, workdir: Path) -> dict:
    """The flow's path to its first deployed slice: plan, register streamed, deploy."""
    started = time.perf_counter()
    probesets = read_probesets(GOLUB)
    slices = PlannedSlices(plan_compact(probesets, n, 5, 9, seed=1), per_slice)
    planned_s = round(time.perf_counter() - started, 2)
    (workdir / "data").mkdir()
    shutil.copyfile(GOLUB, workdir / "data" / "golub.tsv")
    server = EmbeddedServer.for_data(workdir / "data", workdir / "db.sqlite3", ADMIN)
    backend = HandedOver(started)
    try:
        client = ServerClient(server.url, ADMIN, timeout=120)
        client.wait_ready(60)
        client.register_run("run-bench", "golub", TOKEN, list(slices.numbers()))
        sha256 = hashlib.sha256((workdir / "data" / "golub.tsv").read_bytes()).hexdigest()
        ctx = JobContext(
            backend=backend,
            client=client,
            token=TOKEN,
            dataset_name="golub",
            config={**CONFIG, "dataset_sha256": sha256},
            work_source="",
            max_retries=0,
            slice_timeout=600,
            deadline=time.monotonic() + 3600,
        )
        run_slices(ctx, "run-bench", "bench", slices, poll_interval=0.01)
    finally:
        server.stop()
    return {
        "benchmark": "scale",
        "mode": "flow",
        "signatures": n,
        "signatures_per_slice": per_slice,
        "slices": len(slices.numbers()),
        "planned_s": planned_s,
        "first_slice_deployed_s": backend.deployed_s[0],
        "slices_in_first_job": backend.slices[0],
        "peak_rss_mib": peak_mib(),
    }


def main() -> None:
    """Print one JSON line per configuration, each measured in a child process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signatures", type=int, default=1_000_000)
    parser.add_argument("--per-slice", type=int, nargs="+", default=[20, 1])
    parser.add_argument("--listed", action="store_true", help="also the flow's lists of today")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PER_SLICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            mode, per_slice = args.child[0], int(args.child[1])
            if mode == "flow":
                result = measure_flow(args.signatures, per_slice, Path(tmp))
            else:
                result = measure(args.signatures, per_slice, mode, Path(tmp))
        print(json.dumps(result), flush=True)
        return
    modes = ["flow", "streamed", "listed"] if args.listed else ["flow"]
    for per_slice in args.per_slice:
        for mode in modes:
            command = [sys.executable, "-m", "tests.benchmarks.bench_scale"]
            command += ["--signatures", str(args.signatures), "--child", mode, str(per_slice)]
            subprocess.run(command, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
