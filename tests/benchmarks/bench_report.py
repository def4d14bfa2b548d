"""Benchmark: moderated statistics at 22,000 x 60, and aggregation of 1,000,000 records.

Run: `.venv/bin/python -m tests.benchmarks.bench_report`. The aggregation runs in a child
process so that its peak memory (ru_maxrss) counts only the report build.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.io import read_records, save_tsv
from tasks.parameters import SearchParameters
from tasks.report.build import ReportInputs, SearchRecords, build_report
from tasks.report.summary import RunSummary, parameter_table
from tasks.science.destats import moderated_t
from tasks.science.plan import plan_signatures

from ..conftest import GOLUB, ROOT

CLASSIFIERS = ["logistic", "logistic_l1", "bagging", "random_forest", "svm", "decision_tree"]


def time_moderated_t(repeats: int = 5) -> dict:
    """Best-of-n wall time of the limma-equivalent statistics on 22,000 x 60."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 22_000))
    groups = np.arange(60) < 25
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        moderated_t(x, groups)
        times.append(time.perf_counter() - started)
    best, median = round(min(times), 4), round(float(np.median(times)), 4)
    return {"benchmark": "moderated_t_22000x60", "best_s": best, "median_s": median}


def write_records(workdir: Path, n_signatures: int) -> None:
    """Synthetic records for a full plan on the bundled dataset's probesets."""
    probesets = GOLUB.read_text().split("\n", 1)[0].split("\t")[1:]
    signatures = plan_signatures(probesets, n_signatures, 5, 9, seed=1)
    rng = np.random.default_rng(1)
    n = n_signatures * len(CLASSIFIERS)
    records = pd.DataFrame(
        {
            "permutation": np.full(n, -1),
            "signature": np.repeat(np.arange(n_signatures), len(CLASSIFIERS)),
            "classifier": np.tile(CLASSIFIERS, n_signatures),
            "auc": rng.uniform(0.3, 1.0, n).round(6),
            "accuracy": rng.uniform(0.3, 1.0, n).round(6),
            "error": "",
        }
    )
    save_tsv(records, workdir / "records.tsv")
    (workdir / "plan.json").write_text(json.dumps([list(s.probesets) for s in signatures]))


def aggregate(workdir: Path) -> dict:
    """Build the report from the records; time and peak memory of this process."""
    from tasks.science.plan import Signature

    probes = json.loads((workdir / "plan.json").read_text())
    signatures = [Signature(i, tuple(p)) for i, p in enumerate(probes)]
    started = time.perf_counter()
    inputs = ReportInputs(
        summary=RunSummary(
            overview={"dataset": "benchmark", "contrast": "AML (case) vs ALL (control)"},
            parameters=parameter_table(SearchParameters(n_signatures=len(signatures))),
            versions=pd.DataFrame(columns=["package", "version"]),
            rounds=pd.DataFrame(columns=["job", "round"]),
        ),
        dataset_path=GOLUB,
        case="AML",
        control="ALL",
        search=SearchRecords((1,), signatures, read_records(workdir / "records.tsv"), None),
        classifiers=CLASSIFIERS,
        failed_signatures=frozenset(),
        top_fraction=0.05,
        annotation_path=ROOT / "input" / "golub_all_aml.annotation.tsv",
    )
    build_report(workdir / "report", inputs)
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "benchmark": "aggregate_records",
        "records": len(signatures) * len(CLASSIFIERS),
        "seconds": round(elapsed, 2),
        "peak_rss_mib": round(peak_mib, 1),
    }


def main() -> None:
    """Print one JSON line per benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signatures", type=int, default=166_667)
    parser.add_argument("--aggregate-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aggregate_only:
        print(json.dumps(aggregate(args.aggregate_only)), flush=True)
        return
    print(json.dumps(time_moderated_t()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_records(Path(tmp), args.signatures)
        command = [sys.executable, "-m", "tests.benchmarks.bench_report", "--aggregate-only", tmp]
        subprocess.run(command, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
