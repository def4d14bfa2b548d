"""Benchmark: the null's screen (tasks/science/screen.py) at the scales users search.

Run: `.venv/bin/python -m tests.benchmarks.bench_screen`. For golub (7,129 probesets, 38
samples) and each (signatures, permutations) pair, prints the wall and CPU seconds of
`screened_in` choosing 10 candidates per labelling, and the process's peak memory so far.
"""

from __future__ import annotations

import json
import resource
import time

import numpy as np

from tasks.io import read_prepared
from tasks.science.plan import permutation_seeds, plan_compact
from tasks.science.screen import screened_in

from ..conftest import GOLUB

SCALES = ((300, 40), (1_000_000, 40), (100_000, 999))


def main() -> None:
    labels, frame = read_prepared(GOLUB)
    cases = (np.array(labels) == "AML").astype(np.int64)
    values, names = frame.to_numpy(), list(frame.columns)
    for n, permutations in SCALES:
        plan = plan_compact(names, n, 5, 9, seed=1)
        keys = [None, *permutation_seeds(permutations, 1)]
        wall, cpu = time.perf_counter(), time.process_time()
        screened_in(values, names, cases, [plan], keys, 10)
        figures = {
            "signatures": n,
            "permutations": permutations,
            "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
