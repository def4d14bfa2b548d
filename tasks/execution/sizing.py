"""Signatures per DCP slice, from a target slice duration (pure functions, no I/O).

A fresh DCP sandbox pays a fixed cost before useful work (Pyodide start, package load, the
work function's first imports, the dataset's verification and parse); a reused one does
not (../shared/DCP-WORKTIME.md, "Sandboxes are reused"). A slice is packed with as many
signatures as fill `target_slice_seconds` of compute, so that the fixed cost is a small
share of a slice even when every slice lands on a fresh sandbox.

The estimates are CPU seconds under Pyodide 0.28.2 in Node (what DCP's Node workers run),
measured by `python -m tests.benchmarks.calibrate_sizing` (fits) and
`python -m tests.benchmarks.bench_slice_share` (fixed cost). Packing never changes the
records (tests/tasks/science/test_work.py), only how the work is cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Seconds of one fit (fit and predict of one fold) of each classifier: a + b * training rows.
FIT_SECONDS: dict[str, tuple[float, float]] = {
    # Node CPU seconds under Pyodide 0.28.2 (calibrate_sizing: golub, 80, 140, 200 samples).
    "logistic": (4.53e-3, 51.8e-6),
    "logistic_l1": (1.73e-3, 17.9e-6),
    "bagging": (9.63e-3, 123.3e-6),
    "random_forest": (48.1e-3, 394.1e-6),
    "svm": (3.02e-3, 90.7e-6),
    "decision_tree": (1.32e-3, 19.2e-6),
}
# A fresh sandbox before the dataset: Pyodide start, package load, first-slice imports.
SANDBOX_SECONDS = 11.2
# Verifying (sha256) and parsing the dataset, per value (samples x probesets).
PARSE_SECONDS_PER_VALUE = 0.3e-6
# Compute seconds a slice aims at: the fixed cost under 10% of a slice on a fresh sandbox.
DEFAULT_TARGET_SLICE_SECONDS = 250.0
MAX_SIGNATURES_PER_SLICE = 10_000  # the flow's own bound on signatures_per_slice


def fixed_seconds(n_samples: int, n_probesets: int) -> float:
    """Seconds a fresh sandbox spends before its first signature, for a dataset's shape."""
    return SANDBOX_SECONDS + PARSE_SECONDS_PER_VALUE * n_samples * n_probesets


def signature_seconds(
    n_samples: int, classifiers: Sequence[str], cv_folds: int, held_out: bool = False
) -> float:
    """Estimated seconds of one signature: every classifier fitted on every fold."""
    if not classifiers:
        raise ValueError("at least one classifier is required")
    unknown = sorted(set(classifiers) - set(FIT_SECONDS))
    if unknown:
        raise ValueError(f"no cost estimate for classifiers {unknown}")
    if n_samples < 2 or (not held_out and cv_folds < 2):
        raise ValueError(f"cannot size {n_samples} samples in {cv_folds} folds")
    # A validation slice fits once on the discovery rows; a search fits once per fold.
    fits, train = (1, n_samples) if held_out else (cv_folds, n_samples * (cv_folds - 1) / cv_folds)
    return fits * sum(FIT_SECONDS[c][0] + FIT_SECONDS[c][1] * train for c in classifiers)


def signatures_per_slice(
    target_slice_seconds: float,
    n_samples: int,
    classifiers: Sequence[str],
    cv_folds: int,
    held_out: bool = False,
) -> int:
    """Signatures that fill `target_slice_seconds` of compute (at least 1, at most 10,000)."""
    if not target_slice_seconds > 0:
        raise ValueError(f"target_slice_seconds must be > 0, got {target_slice_seconds}")
    per_signature = signature_seconds(n_samples, classifiers, cv_folds, held_out)
    fill = math.floor(target_slice_seconds / per_signature)
    return max(1, min(MAX_SIGNATURES_PER_SLICE, fill))


def fresh_useful_share(
    signatures: int, n_samples: int, n_probesets: int, classifiers: Sequence[str], cv_folds: int
) -> float:
    """Estimated compute / (fixed + compute) of a slice that lands on a fresh sandbox."""
    compute = signatures * signature_seconds(n_samples, classifiers, cv_folds)
    return compute / (compute + fixed_seconds(n_samples, n_probesets))
