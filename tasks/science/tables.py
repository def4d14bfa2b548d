"""Aggregation of slice records into the signature and gene tables (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

import numpy as np
import pandas as pd
from scipy import special, stats

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
    return sort_records(frame)


PREDICTION_COLUMNS = ["signature", "classifier", "sample", "phenotype", "score"]


def predictions_from_results(
    contents: Iterable[dict], sample_ids: Sequence[str], labels: Sequence[str]
) -> pd.DataFrame:
    """One row per (signature, classifier, sample) out-of-fold score, in the dataset's order.

    Scores keep every digit (the ROC is computed from them); records without scores (a
    classifier that could not fit) have no rows.
    """
    rows = [
        (r["signature"], r["classifier"], row, sample_ids[row], labels[row], score)
        for content in contents
        for r in content["records"]
        if r.get("scores") is not None
        for row, score in zip(content["scored_rows"], r["scores"])
    ]
    frame = pd.DataFrame(rows, columns=["signature", "classifier", "row", *PREDICTION_COLUMNS[2:]])
    frame = frame.astype({"signature": np.int64, "row": np.int64, "score": np.float64})
    ordered = frame.sort_values(["signature", "classifier", "row"], kind="stable")
    return ordered[PREDICTION_COLUMNS].reset_index(drop=True)


def sort_records(records: pd.DataFrame) -> pd.DataFrame:
    """Records in their canonical order: permutation, signature, classifier."""
    ordered = records.sort_values(["permutation", "signature", "classifier"], kind="stable")
    return ordered.reset_index(drop=True)


def signature_table(
    signatures: Sequence[Signature],
    records: pd.DataFrame,
    classifiers: Sequence[str],
    failed_signatures: AbstractSet[int],
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


def top_signature_list(
    signatures: Sequence[Signature],
    records: pd.DataFrame,
    classifiers: Sequence[str],
    fraction: float,
) -> list[Signature]:
    """The report's top signatures (by the signature table's ranking), as planned."""
    table = signature_table(signatures, records, classifiers, set())
    by_id = {s.id: s for s in signatures}
    return [by_id[int(i)] for i in top_signatures(table, fraction)["signature"]]


def auc_interval(
    auc: np.ndarray, n_case: int, n_control: int, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Hanley and McNeil's (1982) confidence interval of an AUC from its value and group sizes.

    Its standard error needs no per-sample scores; it is exact when both groups' scores are
    exponentially distributed and close for others. The interval is clipped to [0, 1].
    """
    a = np.asarray(auc, dtype=np.float64)
    q1, q2 = a / (2 - a), 2 * a**2 / (1 + a)
    variance = (a * (1 - a) + (n_case - 1) * (q1 - a**2) + (n_control - 1) * (q2 - a**2)) / (
        n_case * n_control
    )
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(np.maximum(variance, 0.0))
    return np.clip(a - half, 0.0, 1.0), np.clip(a + half, 0.0, 1.0)


def validation_table(
    top: list[Signature],
    discovery: pd.DataFrame,
    validation: pd.DataFrame,
    classifiers: Sequence[str],
    held_out_counts: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Top signatures' discovery (cross-validated) and held-out AUCs, in discovery rank order.

    With the held-out (case, control) counts, each held-out mean AUC gets its 95% interval.
    `optimism` is the discovery mean AUC minus the held-out one.
    """
    held_out = signature_table(top, validation, classifiers, set()).set_index("signature")
    found = discovery.set_index("signature").loc[[s.id for s in top]]
    table = pd.DataFrame(
        {
            "discovery_rank": found["rank"],
            "discovery_mean_auc": found["mean_auc"],
            "validation_mean_auc": held_out["mean_auc"].reindex(found.index),
        }
    )
    if held_out_counts:
        low, high = auc_interval(table["validation_mean_auc"].to_numpy(), *held_out_counts)
        table["validation_auc_low"], table["validation_auc_high"] = low, high
    table["optimism"] = table["discovery_mean_auc"] - table["validation_mean_auc"]
    for clf in classifiers:
        table[f"validation_auc_{clf}"] = held_out[f"auc_{clf}"].reindex(found.index)
    table["probesets"] = found["probesets"]
    return table.reset_index()


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
    return evidence.join(rank_enrichment(members, ranked))


# Up to this many containing signatures, the exact rank-sum null (given the ties), as long as
# counting it costs at most EXACT_RANK_TEST_COST cell updates; beyond, the normal one.
EXACT_RANK_TEST_MAX = 10
EXACT_RANK_TEST_COST = 2_000_000


def rank_sum_tail(ranks: np.ndarray, inside: np.ndarray) -> float | None:
    """Exact P(a random k-subset's rank sum >= the inside one's), ties kept; None if too costly.

    Counts k-subsets by their total deficit from the top rank (twice the mid-rank gap, an
    integer), up to the observed deficit: few subsets reach a high rank sum, so few counts.
    """
    k = int(inside.sum())
    deficits = np.rint(2 * (ranks.max() - ranks)).astype(np.int64)
    observed = int(deficits[inside].sum())
    reachable = np.sort(deficits[deficits <= observed])
    if len(reachable) * k * (observed + 1) > EXACT_RANK_TEST_COST:
        return None
    ways = np.zeros((k + 1, observed + 1))  # ways[j, t]: j chosen with total deficit t
    ways[0, 0] = 1.0
    for d in reachable:
        ways[1:, d:] += ways[:-1, : observed + 1 - d].copy()
    return float(ways[k].sum() / special.comb(len(ranks), k, exact=False))


def rank_enrichment(members: pd.DataFrame, ranked: pd.DataFrame) -> pd.DataFrame:
    """Per probeset: mean AUC shift of signatures containing it and a one-sided rank-sum p.

    Null: the signatures containing the probeset are a random draw from those evaluated
    (true by construction of the plan when the probeset carries no information), so their
    mean-AUC ranks are a random subset (Mann-Whitney U, mid-ranks for ties).
    """
    position = pd.Series(np.arange(len(ranked)), index=ranked["signature"].to_numpy())
    aucs = ranked["mean_auc"].to_numpy(dtype=np.float64)
    ranks = stats.rankdata(aucs)
    rows = {}
    for probeset, group in members.groupby("probeset", sort=True):
        inside = np.zeros(len(aucs), dtype=bool)
        inside[position.loc[group["signature"].to_numpy()].to_numpy()] = True
        if inside.all():
            continue
        exact = rank_sum_tail(ranks, inside) if inside.sum() <= EXACT_RANK_TEST_MAX else None
        if exact is None:  # many signatures, or a tail far from the top: the normal is close
            normal = stats.mannwhitneyu(aucs[inside], aucs[~inside], alternative="greater")
            p, method = float(normal.pvalue), "normal"
        else:
            p, method = exact, "exact"
        rows[probeset] = (aucs[inside].mean() - aucs[~inside].mean(), p, method)
    columns = ["auc_shift", "rank_p", "rank_test"]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame["rank_adj_p"] = benjamini_hochberg(frame["rank_p"].to_numpy(dtype=np.float64))
    return frame[["auc_shift", "rank_p", "rank_adj_p", "rank_test"]]


def signatures_needed(n_ranked: int, n_tested: int, alpha: float = 0.05) -> int | None:
    """Fewest signatures a probeset must be in to reach BH-adjusted p < alpha at best."""
    for k in range(1, n_ranked):
        # Best case: its k signatures are the k best of all, p = 1 / C(n, k).
        if special.comb(n_ranked, k) * alpha / max(n_tested, 1) >= 1:
            return k
    return None


def gene_table(
    de: pd.DataFrame, evidence: pd.DataFrame, annotation: pd.DataFrame | None
) -> pd.DataFrame:
    """Every probeset: limma-style statistics, signature evidence, symbol and description."""
    table = de.join(evidence, how="left")
    for column in ("n_signatures", "n_top_signatures"):
        table[column] = table[column].fillna(0).astype(np.int64)
    for column in ("symbol", "description"):
        table[column] = (
            annotation[column].reindex(table.index).fillna("") if annotation is not None else ""
        )
    table = table.reset_index()
    order = np.lexsort((table["probeset"].to_numpy(), table["P.Value"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def null_means(permuted: pd.DataFrame) -> pd.DataFrame:
    """Mean AUC over classifiers per (permutation, signature) of the permuted-label records."""
    means = permuted.groupby(["permutation", "signature"])["auc"].mean().rename("mean_auc")
    return means.dropna().reset_index()


def null_summary(null: pd.DataFrame) -> pd.DataFrame:
    """One row per permutation: panel size, mean, SD and best mean AUC on permuted labels."""
    grouped = null.groupby("permutation")["mean_auc"]
    frame = pd.DataFrame(
        {
            "n_signatures": grouped.size(),
            "mean_auc_mean": grouped.mean(),
            "mean_auc_sd": grouped.std(ddof=1),
            "mean_auc_best": grouped.max(),
        }
    )
    return frame.reset_index()


def null_maxima(null: pd.DataFrame) -> np.ndarray:
    """Each permutation's statistic: the best mean AUC among the signatures evaluated on it."""
    return null.groupby("permutation")["mean_auc"].max().to_numpy()


def selection_adjusted_p(observed: np.ndarray, maxima: np.ndarray) -> np.ndarray:
    """(1 + permutations whose statistic reaches each value) / (permutations + 1).

    The permutation test of the statistic (the best mean AUC among the null's signatures for
    a labelling): exact, since the real labels' value is computed the same way.
    """
    observed = np.asarray(observed, dtype=np.float64)
    if not len(maxima):
        return np.full(observed.shape, np.nan)
    reaching = (np.asarray(maxima)[None, :] >= observed[:, None]).sum(axis=1)
    return (1 + reaching) / (len(maxima) + 1)


def selection_threshold(maxima: np.ndarray, alpha: float = 0.05) -> float:
    """The smallest mean AUC whose selection-adjusted p is at most `alpha` (NaN if none is)."""
    n = len(maxima)
    if not n or 1 / (n + 1) > alpha:
        return float("nan")
    # p(v) = (1 + #{maxima >= v}) / (n + 1) is at most alpha for up to k exceedances, so for
    # every v above the (k+1)-th largest maximum (which itself has k + 1).
    exceedances = np.arange(n + 1)
    k = int(exceedances[(1 + exceedances) / (n + 1) <= alpha].max())
    if k == n:
        return 0.0
    value = np.nextafter(np.sort(maxima)[::-1][k], np.inf)
    return float(value) if value <= 1.0 else float("nan")


def random_signature_baseline(table: pd.DataFrame, null: pd.DataFrame) -> dict:
    """Random signatures on the real labels against the same kind on permuted labels.

    `mean_auc_p` is a permutation test of the null panel's mean AUC: the same signatures'
    mean on the real labels against their mean on each permutation's labels.
    """
    real = table["mean_auc"].dropna().to_numpy()
    permuted = null["mean_auc"].to_numpy()
    if not len(real) or not len(permuted):
        return {}
    on_real = table.dropna(subset=["mean_auc"]).set_index("signature")["mean_auc"]
    panel = null[null["signature"].isin(on_real.index)]
    panel_real = float(on_real.loc[panel["signature"].unique()].mean()) if len(panel) else np.nan
    perm_means = panel.groupby("permutation")["mean_auc"].mean().to_numpy()
    n_reaching = np.sum(perm_means >= panel_real)
    q95 = float(np.quantile(permuted, 0.95))
    return {
        "random_median_auc": float(np.median(real)),
        "permuted_median_auc": float(np.median(permuted)),
        "permuted_q95_auc": q95,
        "share_above_permuted_q95": float(np.mean(real > q95)),
        "panel_real_mean_auc": panel_real,
        "n_panel": int(panel["signature"].nunique()),
        "mean_auc_p": float((1 + n_reaching) / (len(perm_means) + 1)) if len(panel) else np.nan,
        "n_random": int(len(real)),
        "n_permuted": int(len(permuted)),
        "n_permutations": int(len(perm_means)),
    }


def null_statistic(table: pd.DataFrame, evaluated: frozenset[int] | None) -> float:
    """The real labels' statistic: the best mean AUC among the null's signatures (None: all)."""
    ranked = table.dropna(subset=["mean_auc"])
    if evaluated is not None:
        ranked = ranked[ranked["signature"].isin(evaluated)]
    return float(ranked["mean_auc"].max()) if len(ranked) else float("nan")


def capped_selection_p(observed: np.ndarray, maxima: np.ndarray, statistic: float) -> np.ndarray:
    """Each value's selection-adjusted p, a value above the statistic's taking the statistic's.

    A signature the null does not screen in on the real labels may beat the statistic; its p
    is then the statistic's, the one the test gives (a smaller one would not be valid).
    """
    return selection_adjusted_p(
        np.minimum(np.asarray(observed, dtype=np.float64), statistic), maxima
    )


def top_signature_evidence(
    top: pd.DataFrame, table: pd.DataFrame, maxima: np.ndarray, statistic: float
) -> pd.DataFrame:
    """Each top signature's place among random signatures and its selection-adjusted p."""
    real = table["mean_auc"].dropna().to_numpy()
    observed = top["mean_auc"].to_numpy(dtype=np.float64)
    centre, spread = np.median(real), np.std(real, ddof=1) if len(real) > 1 else np.nan
    return pd.DataFrame(
        {
            "rank": top["rank"].to_numpy(),
            "signature": top["signature"].to_numpy(),
            "mean_auc": observed,
            "random_z": (observed - centre) / spread,
            "selection_adjusted_p": capped_selection_p(observed, maxima, statistic),
            "min_attainable_p": 1 / (len(maxima) + 1),
        }
    )
