"""Probeset annotations: the bundled TSV, or a platform's table (GEO GPL), to symbols.

An annotation names each probeset's gene. Its `symbol` column (a GPL table's `Gene Symbol`)
is used where there is one; an annotation without one gets the symbol leading each
description (`CST3 Cystatin C` -> `CST3`), where that word looks like one.
"""

from __future__ import annotations

import re

import pandas as pd

ID_COLUMNS = ("probeset", "id", "probe set id", "probeset_id", "id_ref")
SYMBOL_COLUMNS = ("symbol", "gene symbol", "gene_symbol", "gene.symbol")
DESCRIPTION_COLUMNS = ("description", "gene title", "gene_title", "gene name", "definition")
# A symbol-like leading word of a description ("CST3 Cystatin C") that is not a symbol.
NOT_SYMBOLS = frozenset({"GB", "DNA", "RNA", "MRNA", "ORF", "HLA", "ATP", "GTP", "TRNA"})
SYMBOL = re.compile(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*")


def gene_symbol(description: str) -> str:
    """The gene symbol leading an annotation description (`CST3 Cystatin C` -> `CST3`), or ''."""
    words = description.split()
    if len(words) < 2 or words[0] in NOT_SYMBOLS or not SYMBOL.fullmatch(words[0]):
        return ""
    # An all-capitals description ("CYSTATIN A", "INTERLEUKIN-8 PRECURSOR") is a name only.
    return words[0] if description != description.upper() else ""


def find_column(columns: list[str], names: tuple[str, ...]) -> str | None:
    """The first of `columns` whose name, in any case, is one of `names`."""
    by_name = {c.strip().lower(): c for c in reversed(columns)}
    return next((by_name[n] for n in names if n in by_name), None)


def annotation_table(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Probeset-indexed `symbol` and `description` (text, '' where none) of an annotation."""
    columns = [str(c) for c in raw.columns]
    if not columns:
        raise ValueError(f"{source}: the annotation has no columns")
    id_column = find_column(columns, ID_COLUMNS) or columns[0]
    symbol_column = find_column(columns, SYMBOL_COLUMNS)
    rest = [c for c in columns if c not in (id_column, symbol_column)]
    description_column = find_column(columns, DESCRIPTION_COLUMNS) or next(iter(rest), None)
    frame = raw.astype(str).drop_duplicates(subset=id_column, keep="first")
    description = frame[description_column] if description_column else pd.Series("", frame.index)
    if symbol_column:
        symbol = frame[symbol_column].str.strip()
    else:
        symbol = description.map(gene_symbol)
    table = pd.DataFrame(
        {"symbol": symbol.to_numpy(), "description": description.to_numpy()},
        index=pd.Index(frame[id_column].str.strip().to_numpy(), name="probeset"),
    )
    return table
