"""Assemble `results/<run_id>/`: tables, plots, report.html/.md/.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.io import (
    read_annotation,
    read_prepared,
    save_json,
    save_text,
    save_tsv,
)
from tasks.report import plots as draw
from tasks.report import render
from tasks.science.destats import differential_expression
from tasks.science.plan import Signature
from tasks.science.tables import (
    gene_evidence,
    gene_table,
    permutation_baseline,
    signature_table,
    top_signatures,
)


def top_for_permutation(
    records: pd.DataFrame, signatures: list[Signature], classifiers: list[str], n_top: int
) -> list[dict]:
    """The `n_top` signatures as the report ranks them, as slice-datum entries."""
    main = records[records["permutation"] == -1]
    if n_top == 0 or main.empty:
        return []
    ranked = signature_table(signatures, main, classifiers, set()).dropna(subset=["rank"])
    by_id = {s.id: s for s in signatures}
    return [
        {"id": int(i), "probesets": list(by_id[i].probesets)}
        for i in ranked["signature"].head(n_top)
    ]


def failed_signatures(slices: list[dict], failed: dict[int, str]) -> set[int]:
    """Ids of the signatures in slices that failed."""
    return {s["id"] for sl in slices if sl["slice"] in failed for s in sl["signatures"]}


def run_summary(params: dict, dataset: dict, main: dict, perm: dict | None, n_slices: int,
                seconds: float, versions: dict) -> dict:  # fmt: skip
    """The run summary the report opens with."""
    failed = main["failed"]
    return {
        "run id": main["run_id"],
        "dataset": params["input_path"],
        "dataset sha256": dataset["sha256"],
        "layout": dataset["layout"],
        "contrast": f"{dataset['case']} (case) vs {dataset['control']} (control)",
        "samples": dataset["samples"],
        "probesets": dataset["n_probesets"],
        "preparation": "; ".join(dataset["decisions"] + dataset["warnings"]),
        "backend": params["backend"],
        "job ids": ", ".join(main["job_ids"] + (perm["job_ids"] if perm else [])),
        "slices": n_slices,
        "slices retried": sum(len(a["slices"]) for a in main["attempts"][1:]),
        "re-executions that disagreed": _conflicts(main, perm),
        "slices failed": ", ".join(f"{k} ({v})" for k, v in sorted(failed.items())) or "none",
        "classifiers": ", ".join(params["classifiers"]),
        "cv folds": params["cv_folds"],
        "seed": params["seed"],
        "signatures": f"{params['n_signatures']} of length {params['min_len']}-{params['max_len']}",
        "permutations": f"{params['n_permutations']} x top {params['permutation_top']}",
        "run time": f"{seconds:.1f} s",
        "versions": versions,
    }


def _conflicts(main: dict, perm: dict | None) -> str:
    """Re-executed slices whose records differed from the stored ones (the first is kept)."""
    found = [c["slice"] for c in main.get("conflicts", [])]
    found_perm = [c["slice"] for c in (perm or {}).get("conflicts", [])]
    if not found and not found_perm:
        return "none"
    return (
        f"{len(found) + len(found_perm)} (slices {sorted(found)}; permutation {sorted(found_perm)})"
    )


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is made from: the run's summary, its dataset and its records."""

    summary: dict
    dataset_path: Path
    case: str
    control: str
    signatures: list[Signature]
    records: pd.DataFrame
    permutation_records: pd.DataFrame | None
    classifiers: list[str]
    failed_signatures: frozenset[int]
    top_fraction: float
    annotation_path: Path | None


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went, and what the Prefect artifacts show of it."""

    html: Path
    markdown: str
    top_signatures: list[dict]


def build_report(run_dir: Path, inputs: ReportInputs) -> ReportFiles:
    """Write every report file; return their paths and the markdown summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary, case, control = inputs.summary, inputs.case, inputs.control
    signatures, records, classifiers = inputs.signatures, inputs.records, inputs.classifiers
    permutation_records, top_fraction = inputs.permutation_records, inputs.top_fraction
    failed_signatures, annotation_path = inputs.failed_signatures, inputs.annotation_path
    dataset_path = inputs.dataset_path
    annotation = read_annotation(annotation_path)
    labels, matrix = read_prepared(dataset_path)
    sig_table = signature_table(signatures, records, classifiers, failed_signatures)
    de = differential_expression(matrix, labels, case, control)
    genes = gene_table(de, gene_evidence(sig_table, top_fraction), annotation)
    save_tsv(sig_table, run_dir / "signatures.tsv")
    save_tsv(genes, run_dir / "genes.tsv")
    top = top_signatures(sig_table, top_fraction)
    baseline = pd.DataFrame(columns=["signature", "observed_mean_auc", "empirical_p", "perm_aucs"])
    if permutation_records is not None and len(permutation_records):
        observed = sig_table[sig_table["signature"].isin(set(permutation_records["signature"]))]
        baseline = permutation_baseline(observed, permutation_records)
        save_tsv(baseline, run_dir / "permutation.tsv")
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    top_probesets = list(dict.fromkeys(p for s in top["probesets"].head(10) for p in s.split(",")))
    plots = {
        "auc_by_classifier": draw.plot_auc_by_classifier(
            sig_table, classifiers, plots_dir / "auc_by_classifier.png"
        ),
        "auc_by_length": draw.plot_auc_by_length(sig_table, plots_dir / "auc_by_length.png"),
        "volcano": draw.plot_volcano(genes, plots_dir / "volcano.png"),
        "heatmap": draw.plot_heatmap(
            matrix, labels, case, top_probesets[:40], plots_dir / "heatmap.png"
        ),
    }
    if len(baseline):
        plots["permutation"] = draw.plot_permutation(baseline, plots_dir / "permutation.png")
    show_sigs = top.head(draw.TOP_ROWS)[
        ["rank", "signature", "length", "mean_auc", *[f"auc_{c}" for c in classifiers], "probesets"]
    ]
    show_genes = genes.head(draw.TOP_ROWS)[
        [
            "probeset",
            "description",
            "logFC",
            "t",
            "P.Value",
            "adj.P.Val",
            "n_signatures",
            "n_top_signatures",
            "enrichment_adj_p",
        ]
    ]
    ranked = sig_table["mean_auc"].dropna()
    summary = {
        **summary,
        "signatures evaluated": int(len(ranked)),
        "signatures without a result": int(len(sig_table) - len(ranked)),
        "best mean AUC": f"{ranked.max():.4f}" if len(ranked) else "n/a",
        "median mean AUC": f"{ranked.median():.4f}" if len(ranked) else "n/a",
        "probesets with adj.P.Val < 0.05": int((genes["adj.P.Val"] < 0.05).sum()),
    }
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    markdown = render.render_markdown(summary, show_sigs, show_genes)
    save_text(render.render_html(summary, show_sigs, show_genes, baseline, plots), html_path)
    save_text(markdown, md_path)
    save_json(
        {
            "summary": summary,
            "top_signatures": _records(show_sigs),
            "top_genes": _records(show_genes),
            "permutation_baseline": _records(baseline),
            "files": {k: str(v) for k, v in plots.items()},
        },
        run_dir / "report.json",
    )
    return ReportFiles(html_path, markdown, _records(show_sigs))


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-safe rows (NaN -> None)."""
    clean = frame.astype(object).where(pd.notna(frame), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]
