"""The report's pages from Jinja2 templates: what a section, table and plot are, and rendering."""

from __future__ import annotations

import base64
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, cast

import jinja2
import pandas as pd

if TYPE_CHECKING:
    from pandas._typing import Scalar


@dataclass(frozen=True)
class Link:
    """A table cell that links to a file beside the report."""

    href: str
    text: str


@dataclass(frozen=True)
class Table:
    """A table as shown: column names and cell texts; `download` names the full TSV."""

    id: str
    caption: str
    columns: list[str]
    rows: list[list[str | Link]]
    download: str | None = None
    numeric: tuple[bool, ...] = ()  # per column: numbers (never wrapped)


@dataclass(frozen=True)
class Plot:
    """A PNG shown in a section (embedded in the HTML; the Markdown names its file)."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Section:
    """One heading of the report: a lead paragraph, facts, tables, plots, or a prose template."""

    id: str
    title: str
    _: KW_ONLY
    intro: str = ""
    items: dict[str, str] | None = None  # a list of facts (HTML: two columns; Markdown: bullets)
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    partial: str | None = None  # a template under templates/, HTML only (e.g. methods)
    facts: dict[str, str] | None = None  # values the partial template shows
    figure_html: str = ""  # an interactive figure (inline SVG we made, escaped), HTML only


def cell_text(value: object, float_format: str = ".4g") -> str | Link:
    """A cell as shown: floats in the column's format, missing values empty."""
    if isinstance(value, Link):
        return value
    # A cell is a scalar (pandas-stubs' isna takes scalars, not any object).
    if value is None or (not isinstance(value, str) and pd.isna(cast("Scalar", value))):
        return ""
    if isinstance(value, float):
        return f"{value:{float_format}}"
    return str(value)


def float_format(column: pd.Series) -> str:
    """One format per column: 4 decimals, or 3 significant digits where values are tiny."""
    if not pd.api.types.is_float_dtype(column):
        return ".4g"
    values = column.dropna().abs()
    return ".4f" if ((values >= 1e-3) | (values == 0)).all() else ".3g"


def table_view(id: str, caption: str, frame: pd.DataFrame, download: str | None = None) -> Table:
    """A frame as a report table."""
    formats = [float_format(frame[c]) for c in frame.columns]
    rows = [
        [cell_text(v, f) for v, f in zip(row, formats)] for row in frame.itertuples(index=False)
    ]
    numeric = tuple(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns)
    return Table(id, caption, [str(c) for c in frame.columns], rows, download, numeric)


def markdown_table(table: Table) -> str:
    """A pipe table (pipes in cells escaped, links as Markdown links)."""

    def cell(value: str | Link) -> str:
        text = f"[{value.text}]({value.href})" if isinstance(value, Link) else value
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _environment() -> jinja2.Environment:
    """Templates from tasks/report/templates; HTML autoescaped, Markdown not."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tasks.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    env.filters["md_table"] = markdown_table
    env.tests["link"] = lambda value: isinstance(value, Link)
    return env


ENVIRONMENT = _environment()


def render_html(title: str, sections: list[Section]) -> str:
    """One self-contained page (plots embedded, inline script): opens offline."""
    return ENVIRONMENT.get_template("report.html.j2").render(title=title, sections=sections)


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown (also published as a Prefect artifact)."""
    return ENVIRONMENT.get_template("report.md.j2").render(title=title, sections=sections)
