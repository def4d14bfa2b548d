"""Datasets of a given shape for the worker-side benchmarks, prepared as the server serves them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.io import read_input, save_prepared
from tasks.science.dataset import PreparedSummary, PrepareOptions, prepare_dataset


def generated_input(path: Path, n_samples: int, n_probesets: int, seed: int = 0) -> Path:
    """Write a two-class log2-scale matrix (4 decimals, 50 informative probesets) as an input."""
    rng = np.random.default_rng(seed)
    labels = ["case" if i % 2 else "control" for i in range(n_samples)]
    x = rng.normal(8.0, 2.0, size=(n_samples, n_probesets))
    x[np.array(labels) == "case", :50] += 1.0
    x = np.round(x, 4)
    header = "\t".join(["phenotype", *(f"g{i}_at" for i in range(n_probesets))])
    rows = ["\t".join([lab, *map(repr, row)]) for lab, row in zip(labels, x.tolist())]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def prepared(source: Path, data_dir: Path, name: str) -> PreparedSummary:
    """Prepare an input and write it where the embedded server serves datasets from."""
    opts = PrepareOptions()
    return save_prepared(prepare_dataset(read_input(source, opts), opts), data_dir, name)
