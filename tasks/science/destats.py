"""Moderated statistics as limma computes them (lmFit + eBayes + topTable).

`lm_fit` is limma 3.54's lmFit for a full-rank design, with optional observation weights
(voom's); `ebayes` follows eBayes: `fitFDist` for the prior, `tmixture` for the prior
variance of each coefficient, and the B log-odds; `limma_table` is topTable of one
coefficient. `moderated_t` is the two-group case, the design `~ group`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from tasks.science.design import ExpressionModel


@dataclass(frozen=True)
class LinearFit:
    """Per-gene least-squares fits of one design; arrays are genes x coefficients."""

    coefficients: np.ndarray
    stdev_unscaled: np.ndarray
    sigma: np.ndarray  # genes
    df_residual: int
    amean: np.ndarray  # genes: the unweighted mean, limma's Amean


@dataclass(frozen=True)
class Moderated:
    """eBayes output: moderated t, p and log-odds (genes x coefficients) and the prior."""

    t: np.ndarray
    p_value: np.ndarray
    lods: np.ndarray
    s2_prior: float
    df_prior: float
    df_total: float
    s2_post: np.ndarray  # genes: the moderated (posterior) residual variance


def trigamma_inverse(x: float) -> float:
    """Solve trigamma(y) = x by limma's Newton iteration."""
    if x > 1e7:
        return 1.0 / np.sqrt(x)
    if x < 1e-6:
        return 1.0 / x
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = special.polygamma(1, y)
        dif = tri * (1.0 - tri / x) / special.polygamma(2, y)
        y += dif
        if -dif / y < 1e-8:
            break
    return float(y)


def fit_f_dist(s2: np.ndarray, df1: float) -> tuple[float, float]:
    """Moment estimates of the scaled F prior (s0^2, d0) from sample variances."""
    x = np.maximum(s2, 0.0)
    m = np.median(x)
    x = np.maximum(x, 1e-5 * (m if m > 0 else 1.0))
    e = np.log(x) - special.digamma(df1 / 2) + np.log(df1 / 2)
    emean = e.mean()
    evar = np.sum((e - emean) ** 2) / (len(e) - 1) - special.polygamma(1, df1 / 2)
    if evar > 0:
        df2 = 2 * trigamma_inverse(evar)
        return float(np.exp(emean + special.digamma(df2 / 2) - np.log(df2 / 2))), df2
    # limma since 2017: with no spread left, the pooled variance is the scale's MLE.
    return float(np.mean(x)), np.inf


def _tmixture(
    t: np.ndarray, v1: np.ndarray, df: float, proportion: float, v0_lim: tuple[float, float]
) -> float:
    """Prior variance of non-zero coefficients from the top |t| order statistics."""
    n = len(t)
    ntarget = int(np.ceil(proportion / 2 * n))
    p = max(ntarget / n, proportion)
    order = np.argsort(-np.abs(t), kind="stable")[:ntarget]
    top, v1_top = np.abs(t)[order], v1[order]
    r = np.arange(1, ntarget + 1)
    p0 = 2 * stats.t.sf(top, df)
    ptarget = ((r - 0.5) / n - (1 - p) * p0) / p
    v0 = np.zeros(ntarget)
    pos = ptarget > p0
    if pos.any():
        qtarget = stats.t.isf(ptarget[pos] / 2, df)
        v0[pos] = v1_top[pos] * ((top[pos] / qtarget) ** 2 - 1)
    # limma clips each estimate, then averages.
    return float(np.clip(v0, *v0_lim).mean())


def _weighted_fit(y: np.ndarray, design: np.ndarray, weights: np.ndarray):
    """Per-gene weighted least squares (lm.wfit), by a QR of sqrt(w) X for each gene."""
    root = np.sqrt(weights).T  # genes x samples
    q, r = np.linalg.qr(root[:, :, None] * design[None, :, :])
    qty = np.einsum("gnp,gn->gp", q, root * y.T)
    coef = np.linalg.solve(r, qty[:, :, None])[:, :, 0]
    resid = root * (y.T - coef @ design.T)
    r_inv = np.linalg.inv(r)
    stdev = np.sqrt(np.einsum("gij,gij->gi", r_inv, r_inv))
    return coef, stdev, (resid**2).sum(axis=1)


def lm_fit(y: np.ndarray, design: np.ndarray, weights: np.ndarray | None = None) -> LinearFit:
    """limma's lmFit: `y` samples x genes, `design` samples x coefficients, of full rank."""
    y = np.asarray(y, dtype=np.float64)
    design = np.asarray(design, dtype=np.float64)
    n, k = design.shape
    if np.linalg.matrix_rank(design) < k:
        raise ValueError("the design matrix is not of full rank")
    if weights is None:
        q, r = np.linalg.qr(design)
        coef = np.linalg.solve(r, q.T @ y).T
        rss = ((y - design @ coef.T) ** 2).sum(axis=0)
        r_inv = np.linalg.inv(r)
        stdev = np.broadcast_to(np.sqrt((r_inv**2).sum(axis=1)), coef.shape).copy()
    else:
        coef, stdev, rss = _weighted_fit(y, design, np.asarray(weights, dtype=np.float64))
    return LinearFit(coef, stdev, np.sqrt(rss / (n - k)), n - k, y.mean(axis=0))


def ebayes(
    fit: LinearFit, proportion: float = 0.01, stdev_coef_lim: tuple[float, float] = (0.1, 4.0)
) -> Moderated:
    """limma's eBayes (no trend, not robust) of every coefficient."""
    df_res = fit.df_residual
    if df_res < 1:
        raise ValueError("no residual degrees of freedom")
    s2 = fit.sigma**2
    s2_prior, df_prior = fit_f_dist(s2, df_res)
    df_total = min(df_res + df_prior, df_res * len(s2))
    if np.isinf(df_prior):
        s2_post = np.full_like(s2, s2_prior)
    else:
        s2_post = (df_res * s2 + df_prior * s2_prior) / (df_res + df_prior)
    unscaled = fit.stdev_unscaled
    t = fit.coefficients / unscaled / np.sqrt(s2_post)[:, None]
    p = 2 * stats.t.sf(np.abs(t), df_total)
    lim = (stdev_coef_lim[0] ** 2 / s2_prior, stdev_coef_lim[1] ** 2 / s2_prior)
    var_prior = np.array(
        [
            _tmixture(t[:, j], unscaled[:, j] ** 2, df_total, proportion, lim)
            for j in range(t.shape[1])
        ]
    )
    r = (unscaled**2 + var_prior) / unscaled**2
    t2 = t**2
    if df_prior > 1e6:
        kernel = t2 * (1 - 1 / r) / 2
    else:
        kernel = (1 + df_total) / 2 * np.log((t2 + df_total) / (t2 / r + df_total))
    lods = np.log(proportion / (1 - proportion)) - np.log(r) / 2 + kernel
    return Moderated(t, p, lods, s2_prior, float(df_prior), float(df_total), s2_post)


def limma_table(
    y: np.ndarray,
    design: np.ndarray,
    coef: int,
    weights: np.ndarray | None = None,
    standard_errors: bool = False,
) -> dict[str, np.ndarray]:
    """topTable(eBayes(lmFit(y, design, weights)), coef, sort.by = "none") as columns.

    With `standard_errors`, also the moderated standard error of logFC (`SE`, limma's
    stdev.unscaled * sqrt(s2.post)) and the moderated t's degrees of freedom (`df.total`).
    """
    fit = lm_fit(y, design, weights)
    mod = ebayes(fit)
    p = mod.p_value[:, coef]
    table = {
        "logFC": fit.coefficients[:, coef],
        "AveExpr": fit.amean,
        "t": mod.t[:, coef],
        "P.Value": p,
        "adj.P.Val": benjamini_hochberg(p),
        "B": mod.lods[:, coef],
    }
    if standard_errors:
        table["SE"] = fit.stdev_unscaled[:, coef] * np.sqrt(mod.s2_post)
        table["df.total"] = np.full(len(p), mod.df_total)
    return table


def moderated_t(
    matrix: np.ndarray, is_case: np.ndarray, standard_errors: bool = False
) -> dict[str, np.ndarray]:
    """Per-probeset case-vs-control statistics; `matrix` is samples x probesets."""
    case = np.asarray(is_case, dtype=bool)
    if int(case.sum()) < 2 or int((~case).sum()) < 2:
        raise ValueError("each group needs at least 2 samples")
    design = np.column_stack([np.ones(len(case)), case.astype(np.float64)])
    return limma_table(matrix, design, coef=1, standard_errors=standard_errors)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values, as R's p.adjust(method = "BH"): NaN kept, and not counted."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    known = ~np.isnan(p)
    out[known] = stats.false_discovery_control(p[known], method="bh")
    return out


def differential_expression(
    matrix: pd.DataFrame,
    labels: list[str],
    case: str,
    control: str,
    model: ExpressionModel | None = None,
    rows: list[int] | None = None,
    standard_errors: bool = False,
) -> pd.DataFrame:
    """limma-style table (probeset index) of case vs control over the given samples.

    With a model, `matrix` is its differential-expression input (counts or values) for the
    prepared samples `rows` (all when None), and the design is the model's.
    """
    labels_arr = np.asarray(labels)
    keep = np.isin(labels_arr, [case, control])
    values, is_case = matrix.to_numpy()[keep], labels_arr[keep] == case
    if model is None or not (model.covariates or model.counts):
        stats_ = moderated_t(values, is_case, standard_errors)
    else:
        chosen = list(range(len(labels))) if rows is None else list(rows)
        rows_kept = [r for r, k in zip(chosen, keep) if k]
        stats_ = model_statistics(values, is_case, model, rows_kept, standard_errors)
    return pd.DataFrame(stats_, index=pd.Index(matrix.columns, name="probeset"))


def model_statistics(
    values: np.ndarray,
    is_case: np.ndarray,
    model: ExpressionModel,
    rows: list[int],
    standard_errors: bool = False,
) -> dict[str, np.ndarray]:
    """The group coefficient's table under the model's design; counts through TMM and voom."""
    design = model.design(is_case, rows)
    if not model.counts:
        return limma_table(values, design.matrix, design.group_column, None, standard_errors)
    from tasks.science.counts import tmm_factors, voom

    lib_size = values.sum(axis=1) * tmm_factors(values)
    log_cpm, weights = voom(values, design.matrix, lib_size)
    return limma_table(log_cpm, design.matrix, design.group_column, weights, standard_errors)
