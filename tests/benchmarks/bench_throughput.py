"""Benchmark: throughput per core, from the work function to the whole local pipeline.

Run: `.venv/bin/python -m tests.benchmarks.bench_throughput [--signatures 120]`. Prints, in
one run on golub (6 classifiers, 10-fold CV, 10 signatures a slice): the work function's CPU
seconds per signature and mean AUC; the original example's protocol on the first
`--baseline-signatures` of the same signatures and the ratio; local throughput with 1 and 2
workers on the same signatures, scaling efficiency (2-worker / 2x 1-worker throughput) and
pipeline efficiency (slice CPU / (wall x workers)); the pipeline efficiency of a 2-worker run
of `--pipeline-signatures`; and where a `--flow-signatures` run of the whole flow spends its
time outside slices. `--work-source FILE` benchmarks another work.py (e.g. an older copy).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import inspect
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from server.embedded import EmbeddedServer
from tasks.execution.client import ServerClient
from tasks.execution.jobs import JobSpec
from tasks.execution.local import LocalBackend
from tasks.io import read_input, save_prepared
from tasks.science.dataset import PreparedSummary, PrepareOptions, prepare_dataset
from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.work import load_work_function
from tasks.science.worker import CLASSIFIERS

from ..conftest import GOLUB, ROOT
from .bench_work import original_work

SEED = 42  # the flow's default seed


def work_source_of(path: Path) -> str:
    """The text a work.py file ships to workers (an older one's `evaluate_slice` source)."""
    spec = importlib.util.spec_from_file_location("bench_work_source", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "work_function_source"):
        return module.work_function_source()
    return inspect.getsource(module.evaluate_slice)


@contextlib.contextmanager
def served_golub(root: Path) -> Iterator[tuple[ServerClient, PreparedSummary]]:
    """The prepared golub dataset on an embedded server, as the flow serves it."""
    opts = PrepareOptions()
    summary = save_prepared(prepare_dataset(read_input(GOLUB, opts), opts), root / "d", "golub")
    admin = secrets.token_urlsafe(24)
    server = EmbeddedServer.for_data(root / "d", root / "db.sqlite3", admin)
    try:
        yield ServerClient(server.url, admin), summary
    finally:
        server.stop()


def work_figures(source: str, slices: list[dict], dataset: str, config: str) -> dict:
    """The work function in this process: CPU seconds per signature and its AUCs in order."""
    work = load_work_function(source)
    work(slices[0], dataset, config)  # imports and the parse cache, as a warm worker has them
    cpu, aucs = time.process_time(), []
    for datum in slices:
        records = json.loads(work(datum, dataset, config))["records"]
        aucs += [(r["signature"], r["auc"]) for r in records if r["auc"] is not None]
    n = sum(len(s["signatures"]) for s in slices)
    return {"cpu_s_per_signature": (time.process_time() - cpu) / n, "aucs": aucs}


def baseline_figures(slices: list[dict], dataset: str, case: str, n: int) -> dict:
    """The original example's protocol on the first n signatures."""
    signatures = [s for datum in slices for s in datum["signatures"]][:n]
    cpu = time.process_time()
    aucs = original_work({"signatures": signatures}, dataset, case)
    return {"cpu_s_per_signature": (time.process_time() - cpu) / n, "mean_auc": np.mean(aucs)}


def job_spec(client: ServerClient, summary: PreparedSummary, source: str, run: tuple) -> JobSpec:
    """Register a run and build its job as the flow does; run = (run_id, slices, config)."""
    run_id, slices, config = run
    token = secrets.token_urlsafe(24)
    client.register_run(run_id, summary.name, token, [s["slice"] for s in slices])
    return JobSpec(
        name=run_id,
        slices=tuple(json.dumps(s, sort_keys=True) for s in slices),
        work_source=source,
        dataset_url=client.dataset_url(summary.name, token),
        config_json=json.dumps({**config, "dataset_sha256": summary.sha256}, sort_keys=True),
        result_url=client.sink_url(run_id, token),
        result_params={"elementType": "results"},
        slice_numbers=tuple(s["slice"] for s in slices),
    )


def local_run(client: ServerClient, spec: JobSpec, workers: int) -> dict:
    """Run a job on local workers to the end; wall time, slice CPU and pipeline efficiency."""
    backend = LocalBackend(workers=workers, allowed_origins=(client.base_url,))
    started = time.perf_counter()
    job = backend.deploy(spec)
    while not job.done():
        job.events(timeout=0.5)
    wall = time.perf_counter() - started
    results = [item["content"] for item in client.iter_results(spec.name)]
    if len(results) != len(spec.slices):
        raise RuntimeError(f"{spec.name}: {len(spec.slices) - len(results)} slices missing")
    cpu = sum(r["timings"]["cpu_seconds"] for r in results)
    inside = sum(r["timings"]["total_seconds"] for r in results)
    n = sum(len(json.loads(s)["signatures"]) for s in spec.slices)
    return {
        "workers": workers,
        "wall_s": wall,
        "signatures_per_s": n / wall,
        "slice_cpu_s": cpu,
        "pipeline_efficiency": cpu / (wall * workers),
        # Time inside slices, CPU or not: apart from what other processes take from the cores.
        "occupancy": inside / (wall * workers),
        "load_average": os.getloadavg()[0],  # other processes on a shared machine lower CPU/wall
    }


def _timed(step, name: str, marks: list) -> object:
    """`step`, recording (name, start, end) of each call in `marks`."""

    @functools.wraps(step)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            marks.append((name, started, time.perf_counter()))

    return timed


def flow_timeline(n_signatures: int, root: Path) -> list[tuple[str, float]]:
    """Run the whole flow in this process on 2 workers; seconds per phase, in order."""
    started = time.perf_counter()
    import flows.signature_search as module
    from flows.params import flow_arguments
    from tasks.parameters import SearchParameters

    phases = [("import Prefect and the flow", time.perf_counter() - started)]
    marks: list = []
    # The flow's Prefect tasks and steps; the gaps between them are its time outside slices.
    steps = [name for name in vars(module) if name.endswith(("_task", "_step"))]
    originals = {name: getattr(module, name) for name in steps}
    for name, step in originals.items():
        setattr(module, name, _timed(step, name, marks))
    params = SearchParameters(
        n_signatures=n_signatures,
        workers=2,
        results_dir=str(root / "results"),
        data_dir=str(root / "data"),
        database=str(root / "db.sqlite3"),
    )
    try:
        called = time.perf_counter()
        module.signature_search(**flow_arguments(params))  # as `python -m flows` calls it
        ended = time.perf_counter()
    finally:
        for name, step in originals.items():
            setattr(module, name, step)
    previous = called
    for name, start, end in sorted(marks, key=lambda mark: mark[1]):
        phases += [(f"  before {name}", start - previous), (name, end - start)]
        previous = end
    return [*phases, ("  flow end", ended - previous)]


def measure_work_and_local(
    args: argparse.Namespace, client: ServerClient, summary: PreparedSummary, source: str
) -> None:
    """Work function, baseline and local runs on the same signatures; print as measured."""
    dataset = Path(summary.path).read_text()
    probesets = dataset.split("\n", 1)[0].split("\t")[1:]
    config = {"case": summary.case, "cv_folds": 10, "seed": SEED, "classifiers": list(CLASSIFIERS)}
    slices = pack_slices(plan_signatures(probesets, args.signatures, 5, 9, SEED), 10)
    print(f"golub, {len(CLASSIFIERS)} classifiers, 10-fold CV, 10 signatures a slice, "
          f"work function from {args.work_source}", flush=True)  # fmt: skip
    work = work_figures(source, slices, dataset, json.dumps(config))
    print(f"work function: {work['cpu_s_per_signature']:.3f} CPU-s/signature, "
          f"mean AUC {np.mean([auc for _, auc in work['aucs']]):.4f} "
          f"({args.signatures} signatures)", flush=True)  # fmt: skip
    if args.baseline_signatures:
        n = args.baseline_signatures
        base = baseline_figures(slices, dataset, summary.case, n)
        first = {s["id"] for s in [s for datum in slices for s in datum["signatures"]][:n]}
        ours = np.mean([auc for signature, auc in work["aucs"] if signature in first])
        print(f"original protocol, first {n} signatures: {base['cpu_s_per_signature']:.3f} "
              f"CPU-s/signature, mean AUC {base['mean_auc']:.4f} (work function {ours:.4f}); "
              f"baseline ratio {base['cpu_s_per_signature'] / work['cpu_s_per_signature']:.2f}x",
              flush=True)  # fmt: skip
    runs = {}
    for workers in (1, 2):
        spec = job_spec(client, summary, source, (f"w{workers}", slices, config))
        runs[workers] = local_run(client, spec, workers)
        print_run(runs[workers], args.signatures)
    scaling = runs[2]["signatures_per_s"] / (2 * runs[1]["signatures_per_s"])
    print(f"scaling efficiency (2-worker / 2x 1-worker throughput): {scaling:.3f}", flush=True)
    if args.pipeline_signatures:
        big = pack_slices(plan_signatures(probesets, args.pipeline_signatures, 5, 9, SEED), 10)
        spec = job_spec(client, summary, source, ("big", big, config))
        print_run(local_run(client, spec, 2), args.pipeline_signatures)


def print_run(run: dict, n: int) -> None:
    """One line for a local run."""
    print(f"local, {run['workers']} worker(s), {n} signatures: {run['wall_s']:.1f} s wall, "
          f"{run['signatures_per_s']:.2f} signatures/s, slice CPU {run['slice_cpu_s']:.1f} s, "
          f"pipeline efficiency {run['pipeline_efficiency']:.3f} "
          f"(workers in slices {run['occupancy']:.3f} of the wall; "
          f"load average {run['load_average']:.1f})", flush=True)  # fmt: skip


def report_flow(phases: list[tuple[str, float]], n: int) -> None:
    """Where the whole flow's time went; fixed overhead is everything but the jobs."""
    total = sum(seconds for _, seconds in phases)
    jobs = sum(seconds for name, seconds in phases if name == "run_slices_task")
    print(f"whole flow, {n} signatures, 2 workers: {total:.1f} s")
    for name, seconds in phases:
        print(f"  {name}: {seconds:.2f} s")
    print(f"fixed overhead (the flow outside its jobs): {total - jobs:.1f} s", flush=True)


def main() -> None:
    """Measure and print every figure in one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=120)
    parser.add_argument("--baseline-signatures", type=int, default=20)
    parser.add_argument("--pipeline-signatures", type=int, default=300)
    parser.add_argument("--flow-signatures", type=int, default=40)
    parser.add_argument("--work-source", type=Path, default=ROOT / "tasks" / "science" / "work.py")
    args = parser.parse_args()
    source = work_source_of(args.work_source)
    with tempfile.TemporaryDirectory() as tmp:
        if args.signatures:
            with served_golub(Path(tmp)) as (client, summary):
                measure_work_and_local(args, client, summary, source)
        if args.flow_signatures:
            phases = flow_timeline(args.flow_signatures, Path(tmp) / "flow")
            report_flow(phases, args.flow_signatures)


if __name__ == "__main__":
    main()
