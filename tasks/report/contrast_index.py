"""The index page of a run of several contrasts: one row per contrast, its report linked."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tasks.report.render import Link, Section, render_html, render_markdown, table_view


@dataclass(frozen=True)
class ContrastOutcome:
    """How one contrast's search ended, and where its report is (relative to the index)."""

    id: str
    variable: str
    target: str
    reference: str
    state: str  # Completed, Failed, ...
    message: str = ""
    report: str | None = None
    best_mean_auc: float | None = None
    selection_adjusted_p: float | None = None


def contrast_index(title: str, outcomes: list[ContrastOutcome]) -> tuple[str, str]:
    """The index as HTML and Markdown: each contrast's verdict figures and its report."""
    frame = pd.DataFrame(
        {
            "contrast": [o.id for o in outcomes],
            "compares": [f"{o.variable}: {o.target} vs {o.reference}" for o in outcomes],
            "state": [o.state + (f": {o.message}" if o.message else "") for o in outcomes],
            "best mean AUC": [o.best_mean_auc for o in outcomes],
            "selection-adjusted p": [o.selection_adjusted_p for o in outcomes],
            "report": [Link(o.report, "report") if o.report else "" for o in outcomes],
        }
    )
    done = sum(o.state == "Completed" for o in outcomes)
    intro = (
        f"{done} of {len(outcomes)} contrasts completed. Each contrast is its own search with "
        "its own permuted-label null; its report says what its p means."
    )
    table = table_view("contrasts", "Contrasts", frame)
    sections = [Section("contrasts", "Contrasts", intro=intro, tables=(table,))]
    return render_html(title, sections), render_markdown(title, sections)
