"""The report's plots as matplotlib Figures (no pyplot state), and their PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from tasks.report.analysis import Analysis, HeatmapData, NullEvidence, SampleView
from tasks.report.roc import RocCurve

DPI = 120  # 10 pt text is ~17 px: readable on a laptop screen at 100% zoom
CASE_COLOUR, CONTROL_COLOUR = "#d95f02", "#1b9e77"
VOLCANO_LABELS = 6


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG; fixed metadata, so identical figures give identical bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def figures(analysis: Analysis, classifiers: Sequence[str]) -> dict[str, Figure]:
    """Every plot of the report by file stem, in the order the report shows them."""
    heat = analysis.heatmap
    drawn = {"roc": plot_roc(analysis.roc, analysis.symbols)} if analysis.roc else {}
    drawn |= {
        "auc_by_classifier": plot_auc_by_classifier(analysis.signatures, classifiers),
        "auc_by_length": plot_auc_by_length(analysis.signatures),
        "volcano": plot_volcano(analysis.genes, analysis.symbols, heat.case, heat.control),
        "ma": plot_ma(analysis.genes, heat.case, heat.control),
        "heatmap": plot_heatmap(heat),
        "pca": plot_pca(analysis.samples, heat.case, heat.control),
        "sample_spread": plot_sample_spread(analysis.samples, heat.case, heat.control),
    }
    if analysis.null is not None:
        drawn["random_baseline"] = plot_random_baseline(analysis.signatures, analysis.null, 5)
    return drawn


def roc_label(curve: RocCurve, symbols: dict[str, str]) -> str:
    """`#1 (signature 24): GLUD1, TTC3, HCP5 - AUC 0.946`: rank, id, genes by symbol, area."""
    genes = ", ".join(symbols.get(p, p) for p in curve.probesets)
    return f"#{curve.rank} (signature {curve.signature}): {genes} - AUC {curve.auc:.3f}"


def plot_roc(curves: Sequence[RocCurve], symbols: dict[str, str]) -> Figure:
    """The top signatures' ROC curves (each the mean over its classifiers), chance dashed."""
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.add_subplot()
    for curve in curves:
        ax.plot(curve.fpr, curve.tpr, linewidth=1.6, label=roc_label(curve, symbols))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="chance (AUC 0.5)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    n = max(c.n_classifiers for c in curves)
    ax.set_title(f"ROC of the top {len(curves)} signatures: pooled out-of-fold, mean of {n} "
                 "classifiers", fontsize=10)  # fmt: skip
    fig.legend(loc="outside lower center", ncols=1, fontsize=8)
    return fig


def plot_auc_by_classifier(signatures: pd.DataFrame, classifiers: Sequence[str]) -> Figure:
    """AUC distribution per classifier."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    data = [signatures[f"auc_{c}"].dropna().to_numpy() for c in classifiers]
    ax.boxplot([d if len(d) else [np.nan] for d in data], tick_labels=classifiers)
    ax.axhline(0.5, color="#999999", linestyle="--", linewidth=1)
    ax.set_ylabel("cross-validated AUC")
    ax.set_title("AUC distribution per classifier (dashed: chance, 0.5)")
    ax.tick_params(axis="x", rotation=30)
    return fig


def plot_auc_by_length(signatures: pd.DataFrame) -> Figure:
    """Mean AUC by signature length."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ranked = signatures.dropna(subset=["mean_auc"])
    lengths = sorted(ranked["length"].unique())
    ax.boxplot(
        [ranked.loc[ranked["length"] == n, "mean_auc"] for n in lengths] or [[np.nan]],
        tick_labels=[str(n) for n in lengths] or [""],
    )
    ax.set_xlabel("signature length")
    ax.set_ylabel("mean AUC across classifiers")
    ax.set_title("AUC by signature length")
    return fig


def spread_labels(targets: list[float], gap: float) -> list[float]:
    """Label heights for targets sorted high to low: as close as possible, `gap` apart."""
    placed: list[float] = []
    for y in targets:
        placed.append(min(y, placed[-1] - gap) if placed else y)
    return placed


def plot_volcano(
    genes: pd.DataFrame, symbols: dict[str, str], case: str, control: str, alpha: float = 0.05
) -> Figure:
    """Volcano plot; probesets in top signatures and enriched ones marked, strongest labelled."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    x = genes["logFC"].to_numpy()
    y = -np.log10(np.clip(genes["P.Value"].to_numpy(), 1e-300, 1))
    layers = [
        ("probesets", np.ones(len(x), dtype=bool), "#aaaaaa", 4),
        ("in a top signature", (genes["n_top_signatures"] > 0).to_numpy(), "#ff7f0e", 10),
        (
            f"enriched in top signatures (BH < {alpha})",
            (genes["enrichment_adj_p"] < alpha).to_numpy(),
            "#d62728",
            16,
        ),
    ]
    for label, mask, colour, size in layers:
        if mask.any():  # no legend entry without points
            ax.scatter(x[mask], y[mask], s=size, c=colour, label=f"{label} ({mask.sum()})")
    reach = float(np.nanmax(np.abs(x))) if len(x) else 1.0
    ax.set_xlim(-1.7 * reach, 1.7 * reach)
    ax.set_ylim(0, 1.08 * float(np.nanmax(y)) if len(y) else 1.0)
    names = [symbols.get(p, p) for p in genes["probeset"].head(VOLCANO_LABELS)]
    _label_strongest(ax, x[:VOLCANO_LABELS], y[:VOLCANO_LABELS], names, 1.1 * reach)
    ax.set_xlabel(f"log fold change ({case} - {control})")
    ax.set_ylabel("-log10 p (moderated t)")
    ax.set_title(f"Differential expression: {case} vs {control}")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    return fig


def plot_ma(genes: pd.DataFrame, case: str, control: str, alpha: float = 0.05) -> Figure:
    """MA plot: log fold change against mean expression, BH-significant probesets marked."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    significant = (genes["adj.P.Val"] < alpha).to_numpy()
    for mask, colour, size, label in (
        (~significant, "#aaaaaa", 4, "probesets"),
        (significant, "#d62728", 6, f"adj.P.Val < {alpha}"),
    ):
        if mask.any():
            ax.scatter(genes["AveExpr"][mask], genes["logFC"][mask], s=size, c=colour,
                       label=f"{label} ({mask.sum()})")  # fmt: skip
    ax.axhline(0.0, color="#555555", linewidth=0.8)
    ax.set_xlabel("mean expression (AveExpr)")
    ax.set_ylabel(f"log fold change ({case} - {control})")
    ax.set_title("MA plot: fold change against mean expression")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


def plot_pca(samples: SampleView, case: str, control: str) -> Figure:
    """The samples on their first two principal components, coloured by phenotype."""
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.add_subplot()
    labels = np.array(samples.labels)
    for label, colour in ((case, CASE_COLOUR), (control, CONTROL_COLOUR)):
        mask = labels == label
        if mask.any():
            points = samples.components[mask]
            ax.scatter(points[:, 0], points[:, 1], s=24, c=colour, label=f"{label} ({mask.sum()})")
    first, second = samples.explained
    ax.set_xlabel(f"PC1 ({first:.0%} of the variance)")
    ax.set_ylabel(f"PC2 ({second:.0%})")
    ax.set_title(f"Samples: PCA of the {samples.n_genes} most variable probesets")
    ax.legend(fontsize=8)
    return fig


def plot_sample_spread(samples: SampleView, case: str, control: str) -> Figure:
    """Each sample's distribution of values: median, quartiles, 5th and 95th percentiles."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    order = sorted(range(len(samples.labels)), key=lambda i: (samples.labels[i] != case, i))
    boxes = [
        {"med": s[2], "q1": s[1], "q3": s[3], "whislo": s[0], "whishi": s[4], "fliers": []}
        for s in samples.spread[order]
    ]
    drawn = ax.bxp(boxes, showfliers=False, patch_artist=True, widths=0.7)
    for box, i in zip(drawn["boxes"], order):
        box.set_facecolor(CASE_COLOUR if samples.labels[i] == case else CONTROL_COLOUR)
    ax.set_xticks([])
    ax.set_xlabel(f"samples ({case} first, then {control}), in the dataset's order")
    ax.set_ylabel("expression value")
    ax.set_title("Per-sample distributions (box: quartiles; whiskers: 5th-95th percentile)")
    return fig


def _label_strongest(ax, x: np.ndarray, y: np.ndarray, names: list[str], column: float) -> None:
    """Label points in two columns at +-`column` (up: right, down: left), never overlapping."""
    gap = 0.06 * ax.get_ylim()[1]
    for side in (1, -1):
        chosen = sorted((i for i in range(len(x)) if np.sign(x[i]) == side), key=lambda i: -y[i])
        heights = spread_labels([float(y[i]) for i in chosen], gap)
        for i, height in zip(chosen, heights):
            ax.annotate(
                names[i],
                (x[i], y[i]),
                xytext=(side * column, height),
                ha="left" if side > 0 else "right",
                va="center",
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "#555555", "linewidth": 0.6},
            )


def plot_heatmap(data: HeatmapData) -> Figure:
    """Row z-scores, samples case | control under a phenotype bar, rows grouped by signature."""
    n_rows, n_samples = data.z.shape
    fig = Figure(figsize=(9, 1.8 + 0.17 * max(n_rows, 4)), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[40, 1], height_ratios=[1, max(n_rows, 4) / 2])
    bar, ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    groups = [[0 if i < data.boundary else 1 for i in range(n_samples)]]
    bar.imshow(groups, aspect="auto", cmap=ListedColormap([CASE_COLOUR, CONTROL_COLOUR]))
    for start, end, name in (
        (0, data.boundary, data.case),
        (data.boundary, n_samples, data.control),
    ):
        if end > start:
            label = f"{name} ({end - start})"
            bar.text((start + end - 1) / 2, 0, label, ha="center", va="center", color="white")
    bar.set_xticks([])
    bar.set_yticks([0], ["phenotype"])
    image = ax.imshow(data.z, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3)
    for axes in (bar, ax):
        axes.axvline(data.boundary - 0.5, color="black", linewidth=1.5)
    _signature_groups(ax, data.row_signatures)
    ax.set_yticks(range(n_rows), data.row_labels, fontsize=7)
    ax.set_xlabel(f"samples: {data.case} | {data.control}")
    fig.colorbar(image, cax=fig.add_subplot(grid[1, 1]), label="z-score (per row)")
    fig.suptitle("Top signatures' probesets across samples")
    return fig


def _signature_groups(ax, row_signatures: list[int]) -> None:
    """Lines between signatures' rows and each signature's id on the right."""
    starts = [i for i, s in enumerate(row_signatures) if i == 0 or s != row_signatures[i - 1]]
    for start in starts[1:]:
        ax.axhline(start - 0.5, color="black", linewidth=1)
    ends = [*starts[1:], len(row_signatures)]
    side = ax.secondary_yaxis("right")
    side.set_yticks(
        [(a + b - 1) / 2 for a, b in zip(starts, ends)],
        [f"signature {row_signatures[a]}" for a in starts],
        fontsize=8,
    )


def plot_random_baseline(signatures: pd.DataFrame, null: NullEvidence, n_marked: int) -> Figure:
    """Mean AUC of the random signatures on real and on permuted labels, top ones marked."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    real = signatures["mean_auc"].dropna().to_numpy()
    permuted = null.panel_means["mean_auc"].to_numpy()
    bins = np.linspace(min(real.min(), permuted.min()), max(real.max(), permuted.max()), 41)
    ax.hist(
        permuted,
        bins=bins,
        density=True,
        color="#7f7f7f",
        alpha=0.6,
        label=f"permuted labels ({len(permuted)} evaluations)",
    )
    ax.hist(
        real,
        bins=bins,
        density=True,
        color="#1f77b4",
        alpha=0.6,
        label=f"real labels ({len(real)} random signatures)",
    )
    for i, value in enumerate(null.top["mean_auc"].head(n_marked)):
        ax.axvline(value, color="#d62728", linewidth=1, label="top signatures" if i == 0 else None)
    if np.isfinite(null.threshold):
        ax.axvline(
            null.threshold,
            color="black",
            linestyle="--",
            linewidth=1.2,
            label=f"needed for selection-adjusted p = 0.05 ({null.threshold:.3f})",
        )
    ax.axvline(0.5, color="#555555", linestyle=":", linewidth=1, label="chance (AUC 0.5)")
    ax.set_xlabel("mean AUC across classifiers")
    ax.set_ylabel("density")
    ax.set_title("Random signatures on the real labels against permuted labels")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig
