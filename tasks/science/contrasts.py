"""Several contrasts in one run: nf-core's contrasts file, read and checked (plain functions)."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.science.dataset import DatasetError, nearest_label

REQUIRED = ("id", "variable", "reference", "target")
OPTIONAL = ("covariates",)
# An id names a folder and a Prefect subflow run: keep it to a plain word.
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Contrast:
    """One comparison: `target` (the case) against `reference` (the control) of `variable`."""

    id: str
    variable: str
    reference: str
    target: str
    covariates: str | None = None  # None: the run's own covariates


def parse_contrasts(text: str, path: Path) -> list[Contrast]:
    """The rows of a contrasts TSV; unknown columns, empty cells, repeated ids refused."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DatasetError(f"{path}: the contrasts file is empty")
    header = [h.strip() for h in rows[0]]
    unknown = [h for h in header if h not in (*REQUIRED, *OPTIONAL)]
    if unknown:
        raise DatasetError(
            f"{path}: unknown column '{unknown[0]}'; a contrasts file has the columns "
            f"{', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}"
        )
    missing = [h for h in REQUIRED if h not in header]
    if missing:
        raise DatasetError(f"{path}: no column '{missing[0]}' (needs {', '.join(REQUIRED)})")
    contrasts = [_row(header, row, path, line) for line, row in enumerate(rows[1:], start=2)]
    if not contrasts:
        raise DatasetError(f"{path}: no contrasts below the header")
    repeated = [i for i, n in Counter(c.id for c in contrasts).items() if n > 1]
    if repeated:
        raise DatasetError(f"{path}: contrast id '{repeated[0]}' is used twice")
    return contrasts


def _row(header: list[str], row: list[str], path: Path, line: int) -> Contrast:
    if len(row) != len(header):
        raise DatasetError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
    cells = {h: cell.strip() for h, cell in zip(header, row)}
    for name in REQUIRED:
        if not cells[name]:
            raise DatasetError(f"{path}: line {line}: empty {name}")
    if not ID.fullmatch(cells["id"]):
        raise DatasetError(
            f"{path}: line {line}: id '{cells['id']}' must be letters, digits and _.- only"
        )
    if cells["reference"] == cells["target"]:
        raise DatasetError(
            f"{path}: line {line}: reference and target are both '{cells['target']}'"
        )
    return Contrast(
        cells["id"], cells["variable"], cells["reference"], cells["target"], cells.get("covariates")
    )


def check_contrasts(
    contrasts: list[Contrast], samples: pd.DataFrame | None, labels: list[str], path: Path
) -> None:
    """Every contrast's variable is a sample column (or `phenotype`) holding both its levels."""
    for contrast in contrasts:
        if samples is not None and contrast.variable in samples.columns:
            values = samples[contrast.variable].fillna("").astype(str).str.strip().tolist()
        elif contrast.variable == "phenotype":
            values = labels
        else:
            columns = [] if samples is None else list(samples.columns)
            raise DatasetError(
                f"{path}: contrast '{contrast.id}': no variable '{contrast.variable}' among the "
                f"sample columns {columns}" + nearest_label(contrast.variable, columns)
            )
        present = sorted(set(values) - {""})
        for role in ("reference", "target"):
            level = getattr(contrast, role)
            if level not in present:
                raise DatasetError(
                    f"{path}: contrast '{contrast.id}': {role} '{level}' is not a level of "
                    f"'{contrast.variable}' ({', '.join(present)})" + nearest_label(level, present)
                )
