"""Writing the report's files: the one place the report touches the disk."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.io import save_json, save_text, save_tsv, write_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOutput:
    """Every file of a report, by name, before it is written."""

    tables: dict[str, pd.DataFrame]  # file name -> table
    plots: dict[str, bytes]  # file stem under plots/ -> PNG
    html: str
    markdown: str
    record: dict  # report.json


def plot_paths(run_dir: Path, names: list[str]) -> dict[str, Path]:
    """Where each plot goes."""
    return {name: run_dir / "plots" / f"{name}.png" for name in names}


def write_report(run_dir: Path, output: ReportOutput) -> Path:
    """Write tables, plots, report.html/.md/.json under `run_dir`; return report.html."""
    for name, frame in output.tables.items():
        save_tsv(frame, run_dir / name)
    for name, path in plot_paths(run_dir, list(output.plots)).items():
        write_atomic(path, output.plots[name])
    html = run_dir / "report.html"
    save_text(output.html, html)
    save_text(output.markdown, run_dir / "report.md")
    save_json(output.record, run_dir / "report.json")
    log.info("report written to %s", run_dir)
    return html
