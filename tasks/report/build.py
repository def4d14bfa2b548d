"""Assemble `results/<run_id>/`: analysis, plots, rendering, writing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.io import read_annotation, read_model, read_prepared
from tasks.report.analysis import (
    Analysis,
    ReportInputs,
    SearchRecords,
    analyse,
    top_gene_rows,
    top_signature_rows,
)
from tasks.report.plots import figures, png_bytes
from tasks.report.render import render_html, render_markdown
from tasks.report.roc import RocCurve
from tasks.report.sections import Content, lower_p_figures, report_sections
from tasks.report.summary import run_summary, with_split
from tasks.report.write import ReportOutput, plot_paths, write_report
from tasks.science.destats import differential_expression

__all__ = [
    "ReportFiles",
    "ReportInputs",
    "SearchRecords",
    "build_report",
    "run_summary",
    "with_split",
]


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went, and what the Prefect artifacts show of it."""

    html: Path
    markdown: str
    top_signatures: list[dict]


def output_tables(analysis: Analysis) -> dict[str, pd.DataFrame]:
    """The report's TSV files by name."""
    tables = {"signatures.tsv": analysis.signatures, "genes.tsv": analysis.genes}
    if analysis.null is not None:
        tables["null.tsv"] = analysis.null.per_permutation
    if analysis.validation is not None:
        tables["validation.tsv"] = analysis.validation
    return tables


def report_record(content: Content, plots: dict[str, Path]) -> dict:
    """report.json: the summary, the tables shown, and where the plots are."""
    summary = content.summary
    return {
        "summary": {**summary.overview, **content.analysis.outcome},
        "top_signatures": _records(top_signature_rows(content.analysis, content.classifiers)),
        "top_genes": _records(top_gene_rows(content.analysis)),
        **null_record(content.analysis, lower_p_figures(content)),
        "validation": _records(content.analysis.validation)
        if content.analysis.validation is not None
        else None,
        "roc": [roc_record(curve) for curve in content.analysis.roc],
        "gene_power": dataclasses.asdict(content.analysis.gene_power),
        "batches": list(content.batches),
        "rounds": _records(summary.rounds),
        "parameters": _records(summary.parameters),
        "versions": dict(zip(summary.versions["package"], summary.versions["version"])),
        "files": {k: str(v) for k, v in plots.items()},
    }


def roc_record(curve: RocCurve) -> dict:
    """report.json's line of a ROC curve: its signature and its area beside the mean AUC."""
    return {
        "rank": curve.rank,
        "signature": curve.signature,
        "roc_auc": curve.auc,
        "mean_auc": curve.mean_auc,
        "n_classifiers": curve.n_classifiers,
    }


def null_record(analysis: Analysis, lower: dict | None = None) -> dict:
    """report.json's null keys: the rank-1 signature's selection-adjusted p and its context."""
    null = analysis.null
    if null is None:
        return {"selection_adjusted_p": None, "selection_adjusted_p_min": None}
    return {
        "selection_adjusted_p": float(null.top["selection_adjusted_p"].iloc[0]),
        "selection_adjusted_p_min": null.min_p,
        "selection_threshold_auc": null.threshold if np.isfinite(null.threshold) else None,
        "null": {
            "lower_p_cost": lower,
            "exact": null.exact,
            "statistic": null.statistic,
            "n_panel": null.n_panel,
            "n_candidates": null.n_candidates,
            "n_searched": null.n_searched,
            "n_permutations": len(null.per_permutation),
        },
        "random_signature_baseline": null.baseline,
        "top_signature_evidence": _records(null.top),
    }


def build_report(run_dir: Path, inputs: ReportInputs) -> ReportFiles:
    """Read the dataset, compute, draw, render and write every report file."""
    labels, matrix = read_prepared(inputs.dataset_path)
    model, de_input = read_model(inputs.dataset_path)
    counts = None
    rows = list(range(len(labels)))
    if inputs.discovery_rows is not None:  # held-out samples stay out of every statistic
        rows = list(inputs.discovery_rows)
        kept = set(rows)
        rest = [lab for i, lab in enumerate(labels) if i not in kept]
        counts = (rest.count(inputs.case), rest.count(inputs.control))
        labels = [labels[i] for i in rows]
        matrix = matrix.iloc[rows].reset_index(drop=True)
    source = matrix if de_input is None else de_input.iloc[rows].reset_index(drop=True)
    de = differential_expression(source, labels, inputs.case, inputs.control, model, rows)
    annotation = read_annotation(inputs.annotation_path)
    analysis = analyse(inputs, labels, matrix, annotation, counts, de)
    pngs = {name: png_bytes(fig) for name, fig in figures(analysis, inputs.classifiers).items()}
    tables = output_tables(analysis)
    content = Content(
        analysis=analysis,
        summary=inputs.summary,
        classifiers=inputs.classifiers,
        top_fraction=inputs.top_fraction,
        pngs=pngs,
        files=[*tables, *inputs.record_files],
        batches=inputs.search.batches,
    )
    sections = report_sections(content)
    title = f"{inputs.summary.overview['dataset']}: {inputs.summary.overview['contrast']}"
    output = ReportOutput(
        tables=tables,
        plots=pngs,
        html=render_html(title, sections),
        markdown=render_markdown(title, sections),
        record=report_record(content, plot_paths(run_dir, list(pngs))),
    )
    html = write_report(run_dir, output)
    return ReportFiles(html, output.markdown, output.record["top_signatures"])


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe rows (NaN -> None)."""
    clean = frame.astype(object).where(pd.notna(frame), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]
