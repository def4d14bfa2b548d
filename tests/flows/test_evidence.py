"""The report tells signal from selection: the whole flow at default settings, real and
permuted labels of the bundled data (`make test-evidence`, a few minutes on 2 cores)."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from flows.params import flow_arguments
from flows.signature_search import signature_search
from tasks.parameters import SearchParameters

from ..conftest import GOLUB

pytestmark = [pytest.mark.evidence, pytest.mark.timeout(1800)]
PERMUTATION_SEED = 2024


def permuted_labels_file(path: Path) -> Path:
    """The bundled data with its phenotype column shuffled by a fixed seed: no signal."""
    header, *rows = GOLUB.read_text().splitlines()
    labels = [row.split("\t", 1)[0] for row in rows]
    shuffled = np.random.RandomState(PERMUTATION_SEED).permutation(labels)
    lines = [f"{label}\t{row.split(chr(9), 1)[1]}" for label, row in zip(shuffled, rows)]
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def run_report(tmp_path: Path, input_path: Path) -> dict:
    """report.json of a run at the default settings (two local workers)."""
    params = SearchParameters(
        input_path=str(input_path),
        case="AML",
        control="ALL",
        workers=2,
        results_dir=str(tmp_path / "results"),
        data_dir=str(tmp_path / "data"),
        database=str(tmp_path / "db.sqlite3"),
    )
    result = signature_search(**flow_arguments(params))
    return json.loads((Path(result["run_dir"]) / "report.json").read_text())


def test_noise_is_not_called_significant_and_signal_is(tmp_path):
    defaults = SearchParameters()
    floor = 1 / (defaults.n_permutations + 1)
    noise = run_report(tmp_path / "noise", permuted_labels_file(tmp_path / "permuted.tsv"))
    assert noise["selection_adjusted_p"] > 0.05
    signal = run_report(tmp_path / "signal", GOLUB)
    assert signal["selection_adjusted_p"] <= 0.05
    for report in (noise, signal):
        np.testing.assert_allclose(report["selection_adjusted_p_min"], floor, rtol=1e-12)
    # Created here, after Prefect's logging setup, which disables loggers that exist already.
    logging.getLogger("evidence").info(
        "selection_adjusted_p: permuted labels %.4f, real labels %.4f (smallest attainable %.4f)",
        noise["selection_adjusted_p"],
        signal["selection_adjusted_p"],
        floor,
    )
