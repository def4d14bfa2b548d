"""The report's HTML and Markdown."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, escape=True)


def render_html(
    summary: dict,
    top_sigs: pd.DataFrame,
    top_genes: pd.DataFrame,
    baseline: pd.DataFrame,
    plots: dict[str, Path],
) -> str:
    """One self-contained HTML page, images embedded as data URIs."""

    def img(name: str) -> str:
        data = base64.b64encode(plots[name].read_bytes()).decode()
        return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"></figure>'

    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Signature search report: {html.escape(str(summary.get("dataset")))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 6px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}img{{max-width:100%}}</style>
</head><body><h1>Differential signature report</h1>
<h2>Run summary</h2><table>{rows}</table>
<h2>Top signatures</h2>{_table_html(top_sigs)}
<h2>Permutation baseline</h2>{_table_html(baseline.drop(columns=["perm_aucs"], errors="ignore"))}
{img("permutation") if "permutation" in plots else ""}
<h2>Top genes</h2>{_table_html(top_genes)}
<h2>Plots</h2>{img("auc_by_classifier")}{img("auc_by_length")}{img("volcano")}{img("heatmap")}
</body></html>
"""


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table; floats to 4 significant digits."""

    def cell(v) -> str:
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def render_markdown(summary: dict, top_sigs: pd.DataFrame, top_genes: pd.DataFrame) -> str:
    """The report summary as markdown (published as a Prefect artifact)."""
    lines = ["# Differential signature report", ""]
    lines += [f"- **{k}**: {v}" for k, v in summary.items()]
    lines += ["", "## Top signatures", "", markdown_table(top_sigs)]
    lines += ["", "## Top genes", "", markdown_table(top_genes), ""]
    return "\n".join(lines)
