"""What the report shows, computed from the records frame and the dataset (plain functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from tasks.report.roc import RocCurve, roc_curves
from tasks.report.summary import RunSummary
from tasks.science.destats import differential_expression
from tasks.science.plan import Signature
from tasks.science.screen import NullDesign, statistic_ids
from tasks.science.tables import (
    capped_selection_p,
    gene_evidence,
    gene_table,
    null_maxima,
    null_means,
    null_statistic,
    null_summary,
    random_signature_baseline,
    selection_threshold,
    signature_table,
    signatures_needed,
    top_signature_evidence,
    top_signatures,
    validation_table,
)

TOP_ROWS = 20
HEATMAP_SIGNATURES = 10
HEATMAP_MAX_ROWS = 45


@dataclass(frozen=True)
class SearchRecords:
    """Signatures and records of every batch a report covers."""

    batches: tuple[int, ...]
    signatures: Sequence[Signature]  # a batch's SignaturePlan, or a list over batches
    records: pd.DataFrame
    permutation_records: pd.DataFrame | None
    null_design: NullDesign | None = None  # None: the null evaluated every searched signature


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is made from: the run's summary, its dataset and its records."""

    summary: RunSummary
    dataset_path: Path
    case: str
    control: str
    search: SearchRecords
    classifiers: Sequence[str]
    failed_signatures: frozenset[int]
    top_fraction: float
    annotation_path: Path | None
    record_files: tuple[str, ...] = ()  # TSV files of the run beside the report, by name
    validation_records: pd.DataFrame | None = None  # top signatures scored on held-out samples
    discovery_rows: tuple[int, ...] | None = None  # with held-out validation: the rows searched
    predictions: pd.DataFrame | None = None  # top signatures' out-of-fold scores (predictions.tsv)


@dataclass(frozen=True)
class HeatmapData:
    """Row z-scores of top signatures' probesets, samples sorted case first."""

    z: np.ndarray  # rows x samples
    row_labels: list[str]  # each row's gene symbol, else its probeset
    row_signatures: list[int]  # the signature each row belongs to
    sample_labels: list[str]  # phenotype of each column, in column order
    boundary: int  # columns [0, boundary) are case samples, the rest control
    case: str
    control: str


@dataclass(frozen=True)
class NullEvidence:
    """The searched signatures against the same search on permuted labels."""

    means: pd.DataFrame  # permutation, signature, mean_auc of the null's signatures
    per_permutation: pd.DataFrame  # null.tsv
    top: pd.DataFrame  # each top signature's place among random ones, selection-adjusted p
    baseline: dict  # random signatures on the real labels against permuted labels
    n_searched: int
    exact: bool  # the panel held every searched signature: the statistic is the search's best
    threshold: float  # mean AUC a best signature needs for a selection-adjusted p of 0.05
    min_p: float  # 1 / (permutations + 1)
    maxima: np.ndarray  # each permutation's statistic: its best mean AUC among the null's
    statistic: float  # the same on the real labels
    n_panel: int  # random panel signatures (all searched ones when exact)
    n_candidates: int  # screened-in signatures per labelling
    panel_means: pd.DataFrame  # the random panel's rows of `means` (the baseline's)


@dataclass(frozen=True)
class GenePower:
    """How much a per-gene signature test can say at this run's scale."""

    tested: int  # probesets in at least one ranked signature
    needed: int | None  # signatures a probeset must be in to reach BH-adjusted p < 0.05 at best
    enough: int  # probesets in at least that many signatures
    significant: int  # probesets with rank_adj_p < 0.05


@dataclass(frozen=True)
class SampleView:
    """The samples at a glance: their first two principal components and value distributions."""

    labels: list[str]  # phenotype of each sample, in the dataset's order
    components: np.ndarray  # samples x 2: scores on PC1 and PC2
    explained: tuple[float, float]  # share of the variance of the genes used, PC1 and PC2
    n_genes: int  # the most variable probesets the PCA used
    spread: np.ndarray  # samples x 5: 5th, 25th, 50th, 75th, 95th percentile of its values


PCA_GENES = 500  # as DESeq2's plotPCA: the most variable probesets


def sample_view(matrix: pd.DataFrame, labels: list[str]) -> SampleView:
    """PCA of the samples on the most variable probesets, and each sample's percentiles."""
    values = matrix.to_numpy(dtype=np.float64)
    variable = np.argsort(-values.var(axis=0), kind="stable")[:PCA_GENES]
    centred = values[:, variable] - values[:, variable].mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    share = s**2 / max(float((s**2).sum()), 1e-300)
    components = np.zeros((len(values), 2))
    k = min(2, len(s))
    components[:, :k] = u[:, :k] * s[:k]
    for pc in range(2):  # an SVD's signs are arbitrary: the largest score is made positive
        components[:, pc] *= np.sign(components[np.argmax(np.abs(components[:, pc])), pc]) or 1.0
    explained = (float(share[0]) if k else 0.0, float(share[1]) if k > 1 else 0.0)
    spread = np.percentile(values, [5, 25, 50, 75, 95], axis=1).T
    return SampleView(list(labels), components, explained, len(variable), spread)


@dataclass(frozen=True)
class Analysis:
    """The report's tables and values, before any plotting or rendering."""

    signatures: pd.DataFrame  # every signature (signatures.tsv)
    genes: pd.DataFrame  # every probeset (genes.tsv)
    top: pd.DataFrame  # the top fraction of ranked signatures
    null: NullEvidence | None  # None without a permutation job
    validation: pd.DataFrame | None  # top signatures on held-out samples
    gene_power: GenePower
    symbols: dict[str, str]  # probeset -> gene symbol, where the annotation has one
    heatmap: HeatmapData
    outcome: dict[str, str | int]
    samples: SampleView
    roc: tuple[RocCurve, ...] = ()  # the top signatures' ROC curves, when they were predicted


def gene_symbols(annotation: pd.DataFrame | None) -> dict[str, str]:
    """probeset -> symbol for the annotated probesets that have one."""
    if annotation is None:
        return {}
    return {str(p): s for p, s in annotation["symbol"].items() if s}


def with_symbol(probeset: str, symbols: dict[str, str]) -> str:
    """`M27891_at (CST3)`, or the probeset alone when it has no symbol."""
    return f"{probeset} ({symbols[probeset]})" if probeset in symbols else probeset


def with_symbols(probesets: str, symbols: dict[str, str]) -> str:
    """A comma-separated probeset list with each symbol beside its probeset."""
    return ", ".join(with_symbol(p, symbols) for p in probesets.split(",") if p)


def heatmap_data(
    matrix: pd.DataFrame,
    labels: list[str],
    case: str,
    control: str,
    top: pd.DataFrame,
    symbols: dict[str, str],
) -> HeatmapData:
    """The heatmap's rows (grouped by signature, best first) and its samples (case first)."""
    order = np.argsort([0 if lab == case else 1 for lab in labels], kind="stable")
    rows: list[tuple[int, str]] = []
    for sig, probesets in zip(top["signature"].head(HEATMAP_SIGNATURES), top["probesets"]):
        members = [(int(sig), p) for p in probesets.split(",")]
        if rows and len(rows) + len(members) > HEATMAP_MAX_ROWS:
            break
        rows += members
    data = (
        matrix[[p for _, p in rows]].to_numpy().T[:, order] if rows else np.zeros((0, len(order)))
    )
    z = np.zeros_like(data)  # a probeset constant over these samples stays at 0
    varies = np.ptp(data, axis=1) > 0
    z[varies] = stats.zscore(data[varies], axis=1)
    return HeatmapData(
        z=z,
        row_labels=[symbols.get(p, p) for _, p in rows],
        row_signatures=[s for s, _ in rows],
        sample_labels=[labels[i] for i in order],
        boundary=int(sum(lab == case for lab in labels)),
        case=case,
        control=control,
    )


def null_evidence(
    table: pd.DataFrame, search: SearchRecords, top_rows: pd.DataFrame
) -> NullEvidence | None:
    """The selection-aware null of a search, from its permuted-label records."""
    if search.permutation_records is None or not len(search.permutation_records):
        return None
    means = null_means(search.permutation_records)
    n_searched = int(table["mean_auc"].notna().sum())
    if not n_searched or means.empty:  # nothing ranked, or no permuted result: no null
        return None
    design = search.null_design
    if design is None:  # every searched signature on every permutation
        statistic_rows, panel, real = means, means, None
    else:
        statistic_rows = means[
            [
                s in statistic_ids(design, int(p))
                for p, s in zip(means["permutation"], means["signature"])
            ]
        ]
        panel = means[
            means["signature"].isin(design.panel)
            & means["permutation"].isin(design.panel_permutations)
        ]
        real = statistic_ids(design, None)
    maxima = null_maxima(statistic_rows)
    statistic = null_statistic(table, real)
    exact = design is None or (not design.screened and len(design.panel) >= n_searched)
    return NullEvidence(
        means=means,
        per_permutation=null_summary(means),
        top=top_signature_evidence(top_rows, table, maxima, statistic),
        baseline=random_signature_baseline(table, panel),
        n_searched=n_searched,
        exact=exact,
        threshold=selection_threshold(maxima),
        min_p=1 / (len(maxima) + 1),
        maxima=maxima,
        statistic=statistic,
        n_panel=n_searched if design is None else len(design.panel),
        n_candidates=0 if design is None else len(design.screened.get(None, ())),
        panel_means=panel,
    )


def with_selection_p(table: pd.DataFrame, null: NullEvidence | None) -> pd.DataFrame:
    """The signature table with each ranked signature's selection-adjusted p (a new frame)."""
    out = table.copy()
    values = np.full(len(out), np.nan)
    if null is not None:
        ranked = out["mean_auc"].notna().to_numpy()
        values[ranked] = capped_selection_p(
            out.loc[ranked, "mean_auc"].to_numpy(), null.maxima, null.statistic
        )
    out.insert(list(out.columns).index("probesets"), "selection_adjusted_p", values)
    return out


def gene_power(genes: pd.DataFrame, n_ranked: int) -> GenePower:
    """What the per-gene rank test can reach with this many signatures."""
    tested = int(genes["rank_p"].notna().sum())
    needed = signatures_needed(n_ranked, tested)
    return GenePower(
        tested=tested,
        needed=needed,
        enough=int((genes["n_signatures"] >= needed).sum()) if needed else 0,
        significant=int((genes["rank_adj_p"] < 0.05).sum()),
    )


def held_out(
    inputs: ReportInputs, table: pd.DataFrame, counts: tuple[int, int] | None
) -> pd.DataFrame | None:
    """The validated signatures' discovery and held-out AUCs, best first."""
    records = inputs.validation_records
    if records is None or not len(records):
        return None
    scored = set(records["signature"])
    ranked = table.dropna(subset=["rank"])
    by_id = {s.id: s for s in inputs.search.signatures}
    top = [by_id[int(i)] for i in ranked["signature"] if int(i) in scored]
    return validation_table(top, table, records, inputs.classifiers, counts)


def outcome(signatures: pd.DataFrame, genes: pd.DataFrame) -> dict[str, str | int]:
    """The headline numbers: how many signatures have a result, the best and median AUC."""
    ranked = signatures["mean_auc"].dropna()
    return {
        "signatures evaluated": int(len(ranked)),
        "signatures without a result": int(len(signatures) - len(ranked)),
        "best mean AUC": f"{ranked.max():.4f}" if len(ranked) else "n/a",
        "median mean AUC": f"{ranked.median():.4f}" if len(ranked) else "n/a",
        "probesets with adj.P.Val < 0.05": int((genes["adj.P.Val"] < 0.05).sum()),
    }


def analyse(
    inputs: ReportInputs,
    labels: list[str],
    matrix: pd.DataFrame,
    annotation: pd.DataFrame | None,
    held_out_counts: tuple[int, int] | None = None,
    de: pd.DataFrame | None = None,
) -> Analysis:
    """Every table and value of the report (inputs unchanged); `de` as the model gave it."""
    table = signature_table(
        inputs.search.signatures,
        inputs.search.records,
        inputs.classifiers,
        inputs.failed_signatures,
    )
    if de is None:
        de = differential_expression(matrix, labels, inputs.case, inputs.control)
    genes = gene_table(de, gene_evidence(table, inputs.top_fraction), annotation)
    null = null_evidence(table, inputs.search, top_signatures(table, inputs.top_fraction))
    table = with_selection_p(table, null)
    top = top_signatures(table, inputs.top_fraction)
    symbols = gene_symbols(annotation)
    return Analysis(
        signatures=table,
        genes=genes,
        top=top,
        null=null,
        validation=held_out(inputs, table, held_out_counts),
        gene_power=gene_power(genes, int(table["mean_auc"].notna().sum())),
        symbols=symbols,
        heatmap=heatmap_data(matrix, labels, inputs.case, inputs.control, top, symbols),
        outcome=outcome(table, genes),
        samples=sample_view(matrix, labels),
        roc=tuple(roc_curves(inputs.predictions, table, inputs.case))
        if inputs.predictions is not None and len(inputs.predictions)
        else (),
    )


def top_signature_rows(analysis: Analysis, classifiers: Sequence[str]) -> pd.DataFrame:
    """The best signatures as the report lists them, gene symbols beside probesets."""
    auc = [f"auc_{c}" for c in classifiers]
    columns = ["rank", "signature", "length", "mean_auc", *auc, "selection_adjusted_p"]
    shown = analysis.top.head(TOP_ROWS)
    rows = shown[columns].copy()
    rows["probesets"] = [with_symbols(p, analysis.symbols) for p in shown["probesets"]]
    return rows


def top_gene_rows(analysis: Analysis) -> pd.DataFrame:
    """The most differentially expressed probesets, with symbol and signature evidence."""
    shown = analysis.genes.head(TOP_ROWS)
    rows = shown[["probeset"]].copy()
    rows["symbol"] = [analysis.symbols.get(p, "") for p in shown["probeset"]]
    columns = ["description", "logFC", "t", "P.Value", "adj.P.Val", "n_signatures"]
    return rows.join(shown[[*columns, "auc_shift", "rank_adj_p"]])
