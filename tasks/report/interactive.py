"""Plots the reader can hover and search, as inline SVG (no library, no network)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

WIDTH, HEIGHT, MARGIN = 720, 420, 48
MAX_POINTS = 5000  # the most significant probesets; the PNG and genes.tsv have them all


def volcano_svg(genes: pd.DataFrame, symbols: dict[str, str], case: str, control: str) -> str:
    """The volcano plot as SVG: each point names its gene on hover and can be searched."""
    shown = genes.nsmallest(MAX_POINTS, "P.Value") if len(genes) > MAX_POINTS else genes
    x = shown["logFC"].to_numpy(dtype=np.float64)
    y = -np.log10(np.clip(shown["P.Value"].to_numpy(dtype=np.float64), 1e-300, 1))
    reach = float(np.nanmax(np.abs(x))) if len(x) else 1.0
    top = float(np.nanmax(y)) if len(y) else 1.0
    px = MARGIN + (x + reach) / (2 * reach or 1) * (WIDTH - 2 * MARGIN)
    py = HEIGHT - MARGIN - y / (top or 1) * (HEIGHT - 2 * MARGIN)
    adjusted = shown["adj.P.Val"].to_numpy(dtype=np.float64)
    points = []
    for i, probeset in enumerate(shown["probeset"]):
        name = symbols.get(probeset, "")
        label = f"{name} ({probeset})" if name else probeset
        tip = f"{label}: logFC {x[i]:.3f}, p {10 ** -y[i]:.3g}, adj.P.Val {adjusted[i]:.3g}"
        colour = "#d62728" if adjusted[i] < 0.05 else "#999999"
        points.append(
            f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="3" fill="{colour}" '
            f'data-name="{html.escape(label.lower())}"><title>{html.escape(tip)}</title></circle>'
        )
    axes = (
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" '
        f'y2="{HEIGHT - MARGIN}" stroke="#555"/>'
        f'<line x1="{WIDTH / 2}" y1="{MARGIN}" x2="{WIDTH / 2}" y2="{HEIGHT - MARGIN}" '
        f'stroke="#ccc"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle" font-size="12">'
        f"log fold change ({html.escape(case)} - {html.escape(control)}), "
        f"{-reach:.2f} to {reach:.2f}</text>"
        f'<text x="14" y="{HEIGHT / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {HEIGHT / 2})">-log10 p, 0 to {top:.1f}</text>'
    )
    caption = f"{len(shown)} of {len(genes)} probesets (the most significant)"
    return (
        f'<svg class="volcano" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="volcano plot, {caption}">{axes}{"".join(points)}</svg>'
    )
