"""Calibrate tasks/execution/sizing.py: CPU seconds per fit of each classifier under Pyodide.

Run: `.venv/bin/python -m tests.benchmarks.calibrate_sizing`. Runs the work function under
the worktime tier's Pyodide 0.28.2 in Node (`tests/worktime/run-python.js`) on golub and on
generated datasets of more samples (noise but for 50 probesets: deep trees), one classifier
at a time, and prints Node's CPU seconds per fit (fit and predict of one fold, the slice's
own overhead included) with a least-squares line in the training-set size.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tasks.science.plan import pack_slices, plan_signatures
from tasks.science.worker import CLASSIFIERS

from ..conftest import GOLUB, ROOT
from ..worktime.pyodide_dist import pyodide_dir
from .shapes import generated_input, prepared

SAMPLES = (80, 140, 200)  # generated; and golub (38 samples)
FOLDS = 10
SIGNATURES = 3
SCRIPT = """
import json, sys, harness
namespace = {}
exec(harness.read_text(sys.argv[1]), namespace)
evaluate_slice = namespace["evaluate_slice"]
out = {}
for job in json.loads(harness.read_text(sys.argv[2])):
    text = harness.read_text(job["dataset"])
    evaluate_slice(job["datum"], text, json.dumps(job["config"]))  # imports, first calls
    for name in job["classifiers"]:
        config = json.dumps({**job["config"], "classifiers": [name]})
        seconds = []
        for _ in range(2):  # Node's CPU clock: wall time on a shared machine says little
            before = harness.measure()["cpu_seconds"]
            evaluate_slice(job["datum"], text, config)
            seconds.append(harness.measure()["cpu_seconds"] - before)
        out.setdefault(name, {})[job["n"]] = min(seconds)
print(json.dumps(out))
"""


def main() -> None:
    """Print seconds per fit under Pyodide, by classifier and training-set size."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        jobs = []
        inputs = [GOLUB] + [generated_input(root / f"in{n}.tsv", n, 2000, seed=n) for n in SAMPLES]
        for i, source in enumerate(inputs):
            summary = prepared(source, root, f"d{i}")
            n = sum(summary.samples.values())
            probesets = summary.path.read_text().split("\n", 1)[0].split("\t")[1:]
            [datum] = pack_slices(plan_signatures(probesets, SIGNATURES, 5, 9, 1), SIGNATURES)
            config = {"case": summary.case, "cv_folds": FOLDS, "seed": 0}
            jobs.append({"n": n, "dataset": str(summary.path), "datum": json.dumps(datum),
                         "config": config, "classifiers": list(CLASSIFIERS)})  # fmt: skip
        (root / "jobs.json").write_text(json.dumps(jobs))
        (root / "script.py").write_text(SCRIPT)
        work = ROOT / "tasks" / "science" / "worker.py"
        node = ["node", ROOT / "tests" / "worktime" / "run-python.js", pyodide_dir()]
        args = [*node, root / "script.py", work, root / "jobs.json"]
        out = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True)
    fits = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"CPU seconds per fit (fit + predict of one fold), Pyodide, {SIGNATURES} signatures")
    for name, by_n in fits.items():
        train = np.array([int(n) * (FOLDS - 1) / FOLDS for n in by_n])
        per_fit = np.array(list(by_n.values())) / (SIGNATURES * FOLDS)
        slope, intercept = np.polyfit(train, per_fit, 1)
        cells = "  ".join(f"n={n}: {s * 1000:6.2f} ms" for n, s in zip(by_n, per_fit))
        print(
            f"{name:14s} {cells}   fit: {intercept * 1000:.3f} ms + {slope * 1e6:.2f} us x n_train"
        )


if __name__ == "__main__":
    main()
