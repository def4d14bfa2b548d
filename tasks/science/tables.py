"""Aggregation of slice records into the signature and gene tables (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import stats

from tasks.science.destats import benjamini_hochberg
from tasks.science.plan import Signature

RECORD_COLUMNS = ["permutation", "signature", "classifier", "auc", "accuracy", "error"]
# Records are kept to the precision records.tsv holds, so that the tables computed from the
# frame in memory are the tables computed from the file.
RECORD_DIGITS = 6


def records_from_results(contents: Iterable[dict]) -> pd.DataFrame:
    """One row per (permutation seed or -1, signature, classifier), sorted, to 6 digits."""
    rows = [
        (
            -1 if content.get("permutation_seed") is None else content["permutation_seed"],
            r["signature"],
            r["classifier"],
            r.get("auc"),
            r.get("accuracy"),
            r.get("error") or "",
        )
        for content in contents
        for r in content["records"]
    ]
    frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    dtypes = {
        "permutation": np.int64,
        "signature": np.int64,
        "auc": np.float64,
        "accuracy": np.float64,
    }
    frame = frame.astype(dtypes)
    for column in ("auc", "accuracy"):
        frame[column] = [float(f"{v:.{RECORD_DIGITS}g}") for v in frame[column]]
    frame["error"] = frame["error"].replace("", np.nan)
    frame = frame.sort_values(["permutation", "signature", "classifier"], kind="stable")
    return frame.reset_index(drop=True)


def signature_table(
    signatures: list[Signature],
    records: pd.DataFrame,
    classifiers: list[str],
    failed_signatures: set[int],
) -> pd.DataFrame:
    """One row per planned signature: AUC/accuracy per classifier, mean AUC, rank, status."""
    ids = np.array([s.id for s in signatures], dtype=np.int64)
    table = pd.DataFrame(
        {
            "signature": ids,
            "length": [len(s.probesets) for s in signatures],
            "probesets": [",".join(s.probesets) for s in signatures],
        }
    ).set_index("signature")
    wide = records.pivot_table(
        index="signature",
        columns="classifier",
        values=["auc", "accuracy"],
        aggfunc="first",
        dropna=False,
    )
    for clf in classifiers:
        for metric in ("auc", "accuracy"):
            column = (metric, clf)
            values = wide[column] if column in wide.columns else pd.Series(dtype=np.float64)
            table[f"{metric}_{clf}"] = values.reindex(table.index).astype(np.float64)
    auc = table[[f"auc_{c}" for c in classifiers]]
    table["n_classifiers"] = auc.notna().sum(axis=1)
    table["mean_auc"] = auc.mean(axis=1, skipna=True)
    status = np.where(table["n_classifiers"] == len(classifiers), "ok", "partial")
    status = np.where(table["n_classifiers"] == 0, "no_result", status)
    status = np.where(table.index.isin(sorted(failed_signatures)), "slice_failed", status)
    table["status"] = status
    table = table.reset_index()
    order = np.lexsort(
        (table["signature"].to_numpy(), -table["mean_auc"].fillna(-np.inf).to_numpy())
    )
    table = table.iloc[order].reset_index(drop=True)
    ranked = table["mean_auc"].notna()
    table["rank"] = pd.array(np.where(ranked, np.arange(1, len(table) + 1), 0), dtype="Int64")
    table.loc[~ranked, "rank"] = pd.NA
    front = ["rank", "signature", "status", "length", "mean_auc", "n_classifiers"]
    return table[
        front + [c for c in table.columns if c not in front + ["probesets"]] + ["probesets"]
    ]


def top_signatures(table: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The top `fraction` of ranked signatures by mean AUC (at least one)."""
    ranked = table[table["rank"].notna()]
    n_top = max(1, int(np.ceil(fraction * len(ranked)))) if len(ranked) else 0
    return ranked.head(n_top)


def gene_evidence(table: pd.DataFrame, top_fraction: float) -> pd.DataFrame:
    """Per probeset: signatures containing it, top ones, enrichment p (BH) and mean AUC."""
    ranked = table[table["rank"].notna()]
    members = (
        ranked[["signature", "mean_auc", "probesets"]]
        .assign(probeset=ranked["probesets"].str.split(","))
        .explode("probeset")
    )
    top_ids = set(top_signatures(table, top_fraction)["signature"])
    members["in_top"] = members["signature"].isin(top_ids)
    grouped = members.groupby("probeset", sort=True)
    evidence = pd.DataFrame(
        {
            "n_signatures": grouped.size(),
            "n_top_signatures": grouped["in_top"].sum(),
            "mean_auc_containing": grouped["mean_auc"].mean(),
        }
    )
    population, n_top = len(ranked), len(top_ids)
    evidence["enrichment_p"] = stats.hypergeom.sf(
        evidence["n_top_signatures"] - 1, population, evidence["n_signatures"], n_top
    )
    evidence["enrichment_adj_p"] = benjamini_hochberg(evidence["enrichment_p"].to_numpy())
    return evidence


def gene_table(
    de: pd.DataFrame, evidence: pd.DataFrame, annotation: pd.Series | None
) -> pd.DataFrame:
    """Every probeset: limma-style statistics, signature evidence, annotation."""
    table = de.join(evidence, how="left")
    for column in ("n_signatures", "n_top_signatures"):
        table[column] = table[column].fillna(0).astype(np.int64)
    table["description"] = (
        annotation.reindex(table.index).fillna("") if annotation is not None else ""
    )
    table = table.reset_index()
    order = np.lexsort((table["probeset"].to_numpy(), table["P.Value"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def permutation_baseline(observed: pd.DataFrame, permuted: pd.DataFrame) -> pd.DataFrame:
    """Empirical p-value of each top signature's mean AUC against its permuted-label AUCs."""
    perm_mean = (
        permuted.groupby(["signature", "permutation"])["auc"]
        .mean()
        .rename("perm_auc")
        .reset_index()
    )
    rows = []
    for sig, obs in zip(observed["signature"], observed["mean_auc"]):
        values = np.sort(perm_mean.loc[perm_mean["signature"] == sig, "perm_auc"].to_numpy())
        exceed = int(np.sum(values >= obs))
        rows.append(
            {
                "signature": int(sig),
                "observed_mean_auc": float(obs),
                "n_permutations": int(len(values)),
                "perm_auc_mean": float(values.mean()) if len(values) else np.nan,
                "perm_auc_max": float(values.max()) if len(values) else np.nan,
                "empirical_p": (1 + exceed) / (1 + len(values)) if len(values) else np.nan,
                "perm_aucs": ",".join(f"{v:.6f}" for v in values),
            }
        )
    return pd.DataFrame(rows)
