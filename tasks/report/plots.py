"""The report's plots (PNG), drawn from the signature, gene and permutation tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TOP_ROWS = 20


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    # Fixed metadata so identical figures give identical files.
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_auc_by_classifier(signatures: pd.DataFrame, classifiers: list[str], path: Path) -> Path:
    """AUC distribution per classifier."""
    fig, ax = plt.subplots(figsize=(7, 4))
    data = [signatures[f"auc_{c}"].dropna().to_numpy() for c in classifiers]
    ax.boxplot([d if len(d) else [np.nan] for d in data], tick_labels=classifiers)
    ax.set_ylabel("cross-validated AUC")
    ax.set_title("AUC distribution per classifier")
    ax.tick_params(axis="x", rotation=30)
    return _save(fig, path)


def plot_auc_by_length(signatures: pd.DataFrame, path: Path) -> Path:
    """Mean AUC by signature length."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ranked = signatures.dropna(subset=["mean_auc"])
    lengths = sorted(ranked["length"].unique())
    ax.boxplot(
        [ranked.loc[ranked["length"] == n, "mean_auc"] for n in lengths] or [[np.nan]],
        tick_labels=[str(n) for n in lengths] or [""],
    )
    ax.set_xlabel("signature length")
    ax.set_ylabel("mean AUC across classifiers")
    ax.set_title("AUC by signature length")
    return _save(fig, path)


def plot_volcano(genes: pd.DataFrame, path: Path, alpha: float = 0.05) -> Path:
    """Volcano plot; genes enriched in top signatures marked."""
    fig, ax = plt.subplots(figsize=(6, 5))
    y = -np.log10(np.clip(genes["P.Value"].to_numpy(), 1e-300, 1))
    enriched = (genes["enrichment_adj_p"] < alpha).to_numpy()
    in_top = (genes["n_top_signatures"] > 0).to_numpy()
    ax.scatter(genes["logFC"], y, s=4, c="#999999", label="probesets")
    ax.scatter(genes["logFC"][in_top], y[in_top], s=8, c="#ff7f0e", label="in a top signature")
    ax.scatter(
        genes["logFC"][enriched],
        y[enriched],
        s=14,
        c="#d62728",
        label=f"enriched in top signatures (BH < {alpha})",
    )
    for _, row in genes.head(5).iterrows():
        ax.annotate(
            row["probeset"], (row["logFC"], -np.log10(max(row["P.Value"], 1e-300))), fontsize=7
        )
    ax.set_xlabel("log fold change (case - control)")
    ax.set_ylabel("-log10 p (moderated t)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Differential expression")
    return _save(fig, path)


def plot_heatmap(
    matrix: pd.DataFrame, labels: list[str], case: str, probesets: list[str], path: Path
) -> Path:
    """Heatmap (row z-scores) of the top signatures' genes, samples grouped by phenotype."""
    order = np.argsort([0 if lab == case else 1 for lab in labels], kind="stable")
    data = matrix[probesets].to_numpy().T[:, order] if probesets else np.zeros((1, len(labels)))
    sd = data.std(axis=1, keepdims=True)
    z = (data - data.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1)
    fig, (bar, ax) = plt.subplots(
        2,
        1,
        figsize=(8, 2 + 0.18 * len(z)),
        gridspec_kw={"height_ratios": [1, max(4, len(z))]},
        sharex=True,
    )
    bar.imshow([[0 if labels[i] == case else 1 for i in order]], aspect="auto", cmap="coolwarm")
    bar.set_yticks([0], [f"{case} (blue) / other (red)"])
    image = ax.imshow(z, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3)
    ax.set_yticks(range(len(probesets)), probesets, fontsize=6)
    ax.set_xlabel("samples (grouped by phenotype)")
    fig.colorbar(image, ax=ax, label="z-score")
    return _save(fig, path)


def plot_permutation(baseline: pd.DataFrame, path: Path) -> Path:
    """Permuted-label AUCs of the top signatures against their observed AUC."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, row in enumerate(baseline.itertuples()):
        values = [float(v) for v in row.perm_aucs.split(",") if v]
        ax.scatter([i] * len(values), values, s=8, c="#7f7f7f")
        ax.scatter([i], [row.observed_mean_auc], s=40, c="#d62728", marker="D")
    ax.set_xticks(range(len(baseline)), [str(s) for s in baseline["signature"]], fontsize=7)
    ax.set_xlabel("top signature id (red: observed, grey: permuted labels)")
    ax.set_ylabel("mean AUC")
    ax.set_title("Permutation baseline")
    return _save(fig, path)
