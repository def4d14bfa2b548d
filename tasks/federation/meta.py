"""Combining sites' summaries: signatures, per-gene meta-analysis, the pooled null (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tasks.federation.exchange import GENE_COLUMNS, payload_frame
from tasks.science.destats import benjamini_hochberg
from tasks.science.tables import selection_adjusted_p


@dataclass(frozen=True)
class SiteResult:
    """One site's summaries, as frames."""

    name: str
    n_case: int
    n_control: int
    signatures: pd.DataFrame  # index signature: auc_<classifier>, accuracy_<classifier>
    genes: pd.DataFrame  # index probeset: logFC, SE, t, df.total, AveExpr
    null: pd.DataFrame  # index permutation seed, a column per signature: mean AUC

    @property
    def n(self) -> int:
        """The site's compared samples."""
        return self.n_case + self.n_control


def site_result(payload: dict) -> SiteResult:
    """A site's summary payload as frames (its group sizes under the global names)."""
    null = payload["null"]
    signatures = payload["signatures"]["signature"]
    frame = pd.DataFrame(null["mean_auc"], index=null["permutation"], columns=signatures)
    return SiteResult(
        name=payload["site"],
        n_case=int(payload["samples"]["case"]),
        n_control=int(payload["samples"]["control"]),
        signatures=payload_frame(payload["signatures"], "signature"),
        genes=payload_frame(payload["genes"], "probeset")[list(GENE_COLUMNS)],
        null=frame.astype(np.float64),
    )


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over the last axis, weighted, NaN values left out of both sums."""
    known = ~np.isnan(values)
    total = (np.where(known, values, 0.0) * weights).sum(axis=-1)
    weight = (known * weights).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan)


def hanley_mcneil_variance(auc: np.ndarray, n_case: int, n_control: int) -> np.ndarray:
    """The AUC's sampling variance (Hanley & McNeil 1982) for the given group sizes."""
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    spread = auc * (1 - auc) + (n_case - 1) * (q1 - auc**2) + (n_control - 1) * (q2 - auc**2)
    return spread / (n_case * n_control)


def cochran_i2(estimates: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cochran's Q and I^2 (Higgins & Thompson) across sites (last axis), NaN sites left out."""
    known = ~np.isnan(estimates) & (variances > 0)
    w = np.where(known, 1 / np.where(known, variances, 1), 0.0)
    est = np.where(known, estimates, 0.0)
    pooled = (w * est).sum(axis=-1) / np.maximum(w.sum(axis=-1), 1e-300)
    q = (w * (est - pooled[..., None]) ** 2).sum(axis=-1)
    df = known.sum(axis=-1) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        i2 = np.where((q > 0) & (df > 0), np.maximum(0.0, (q - df) / q), 0.0)
    return q, i2


def combine_signatures(sites: Sequence[SiteResult], classifiers: Sequence[str]) -> pd.DataFrame:
    """Signatures by combined AUC: the sites' AUCs weighted by site size, per-site beside.

    `mean_auc` is the combined AUC averaged over classifiers; `i2` the heterogeneity of the
    sites' mean AUCs (Cochran's Q with Hanley-McNeil variances).
    """
    ids = sites[0].signatures.index
    weights = np.array([s.n for s in sites], dtype=np.float64)
    table = pd.DataFrame(index=ids)
    for name in classifiers:
        for measure in ("auc", "accuracy"):
            column = f"{measure}_{name}"
            values = np.column_stack([s.signatures[column].reindex(ids) for s in sites])
            table[column] = _weighted_mean(values, weights)
    auc_columns = [f"auc_{name}" for name in classifiers]
    table["mean_auc"] = table[auc_columns].mean(axis=1)
    per_site = np.column_stack(
        [s.signatures[[f"auc_{c}" for c in classifiers]].reindex(ids).mean(axis=1) for s in sites]
    )
    variances = np.column_stack(
        [hanley_mcneil_variance(per_site[:, k], s.n_case, s.n_control) for k, s in enumerate(sites)]
    )
    _, table["i2"] = cochran_i2(per_site, variances)
    for k, site in enumerate(sites):
        table[f"mean_auc_{site.name}"] = per_site[:, k]
    table = table.reset_index(names="signature")
    table = table.sort_values(["mean_auc", "signature"], ascending=[False, True], kind="stable")
    return table.reset_index(drop=True)


def combined_null_maxima(sites: Sequence[SiteResult]) -> pd.Series:
    """Per permutation every site ran: the best combined mean AUC over the planned signatures.

    Permutation j pairs each site's j-th permutation of its own labels; the combined AUC of
    a signature is the size-weighted mean of the sites' AUCs, as on the real labels.
    """
    common = sites[0].null.index
    for site in sites[1:]:
        common = common.intersection(site.null.index)
    ids = sites[0].signatures.index
    stacked = np.stack([s.null.loc[common, ids].to_numpy() for s in sites], axis=-1)
    combined = _weighted_mean(stacked, np.array([s.n for s in sites], dtype=np.float64))
    with np.errstate(invalid="ignore"):
        maxima = np.nanmax(combined, axis=1) if combined.size else np.array([])
    return pd.Series(maxima, index=common, name="combined_max_mean_auc")


def with_selection_p(table: pd.DataFrame, maxima: pd.Series) -> pd.DataFrame:
    """Each ranked signature's selection-adjusted p against the combined null's maxima."""
    out = table.copy()
    out["selection_adjusted_p"] = selection_adjusted_p(
        out["mean_auc"].to_numpy(), maxima.to_numpy()
    )
    return out


def combine_genes(sites: Sequence[SiteResult]) -> pd.DataFrame:
    """Fixed-effect inverse-variance meta-analysis of logFC, limma's moderated SEs as weights.

    Per probeset: the pooled logFC and SE, z and its two-sided normal p, BH-adjusted; Cochran's
    Q (its p on k-1 df) and I^2; and each site's logFC and moderated t.
    """
    probesets = sites[0].genes.index
    beta = np.column_stack([s.genes["logFC"].reindex(probesets) for s in sites])
    se = np.column_stack([s.genes["SE"].reindex(probesets) for s in sites])
    variance = se**2
    known = ~np.isnan(beta) & (variance > 0)
    w = np.where(known, 1 / np.where(known, variance, 1), 0.0)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (w * np.where(known, beta, 0.0)).sum(axis=1) / total
        pooled_se = np.sqrt(1 / total)
    z = pooled / pooled_se
    p = 2 * stats.norm.sf(np.abs(z))
    q, i2 = cochran_i2(beta, np.where(known, variance, np.nan))
    df = known.sum(axis=1) - 1
    table = pd.DataFrame(
        {
            "logFC": pooled,
            "SE": pooled_se,
            "z": z,
            "P.Value": p,
            "adj.P.Val": benjamini_hochberg(p),
            "Q": q,
            "Q.P.Value": np.where(df > 0, stats.chi2.sf(q, np.maximum(df, 1)), np.nan),
            "I2": i2,
            "n_sites": known.sum(axis=1),
            "AveExpr": _weighted_mean(
                np.column_stack([s.genes["AveExpr"].reindex(probesets) for s in sites]),
                np.array([s.n for s in sites], dtype=np.float64),
            ),
        },
        index=pd.Index(probesets, name="probeset"),
    )
    for k, site in enumerate(sites):
        table[f"logFC_{site.name}"] = beta[:, k]
        table[f"t_{site.name}"] = site.genes["t"].reindex(probesets).to_numpy()
    order = np.lexsort((np.arange(len(table)), table["P.Value"].to_numpy()))
    return table.iloc[order]


@dataclass(frozen=True)
class Universe:
    """The probesets every site has (sorted: the same order wherever it is computed)."""

    probesets: list[str]
    lacked: dict[str, list[str]]  # per site: the probesets others have and it lacks


def common_universe(site_probesets: dict[str, list[str]]) -> Universe:
    """The intersection of the sites' probesets, and what each site lacked of the union."""
    sets = {site: set(probesets) for site, probesets in site_probesets.items()}
    union = set().union(*sets.values())
    common = set.intersection(*sets.values())
    return Universe(sorted(common), {site: sorted(union - have) for site, have in sets.items()})
