"""Moderated two-group statistics as limma computes them (lmFit + eBayes + topTable).

For the design `~ group` the coefficient is mean(case) - mean(control) and the
unscaled standard deviation is sqrt(1/n_case + 1/n_control), so lmFit reduces to
row means and a pooled variance. eBayes follows limma 3.54: `fitFDist` for the prior,
`tmixture` for the prior variance of the coefficient, and the B log-odds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats


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
    return float(np.exp(emean)), np.inf


def _tmixture(t: np.ndarray, v1: float, df: float, proportion: float) -> float:
    """Prior variance of non-zero coefficients from the top |t| order statistics."""
    n = len(t)
    ntarget = int(np.ceil(proportion / 2 * n))
    p = max(ntarget / n, proportion)
    top = np.sort(np.abs(t))[::-1][:ntarget]
    r = np.arange(1, ntarget + 1)
    p0 = 2 * stats.t.sf(top, df)
    ptarget = ((r - 0.5) / n - (1 - p) * p0) / p
    v0 = np.zeros(ntarget)
    pos = ptarget > p0
    if pos.any():
        qtarget = stats.t.isf(ptarget[pos] / 2, df)
        v0[pos] = v1 * ((top[pos] / qtarget) ** 2 - 1)
    return float(v0.mean())


def moderated_t(
    matrix: np.ndarray, is_case: np.ndarray, proportion: float = 0.01
) -> dict[str, np.ndarray]:
    """Per-probeset case-vs-control statistics; `matrix` is samples x probesets."""
    x = np.asarray(matrix, dtype=np.float64)
    case = np.asarray(is_case, dtype=bool)
    n1, n0 = int(case.sum()), int((~case).sum())
    if n1 < 2 or n0 < 2:
        raise ValueError("each group needs at least 2 samples")
    m1, m0 = x[case].mean(axis=0), x[~case].mean(axis=0)
    df_res = n1 + n0 - 2
    ss = ((x[case] - m1) ** 2).sum(axis=0) + ((x[~case] - m0) ** 2).sum(axis=0)
    s2 = ss / df_res
    coef = m1 - m0
    stdev_unscaled = np.sqrt(1 / n1 + 1 / n0)
    s2_prior, df_prior = fit_f_dist(s2, df_res)
    df_total = min(df_res + df_prior, df_res * x.shape[1])
    if np.isinf(df_prior):
        s2_post = np.full_like(s2, s2_prior)
    else:
        s2_post = (df_res * s2 + df_prior * s2_prior) / (df_res + df_prior)
    t = coef / (stdev_unscaled * np.sqrt(s2_post))
    p = 2 * stats.t.sf(np.abs(t), df_total)
    var_prior_lim = np.array([0.1, 4.0]) ** 2 / s2_prior
    var_prior = _tmixture(t, stdev_unscaled**2, df_total, proportion)
    var_prior = float(np.clip(var_prior, *var_prior_lim))
    r = (stdev_unscaled**2 + var_prior) / stdev_unscaled**2
    t2 = t**2
    if df_prior > 1e6:
        kernel = t2 * (1 - 1 / r) / 2
    else:
        kernel = (1 + df_total) / 2 * np.log((t2 + df_total) / (t2 / r + df_total))
    b = np.log(proportion / (1 - proportion)) - np.log(r) / 2 + kernel
    return {
        "logFC": coef,
        "AveExpr": x.mean(axis=0),
        "t": t,
        "P.Value": p,
        "adj.P.Val": benjamini_hochberg(p),
        "B": b,
    }


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values, as R's p.adjust(method = "BH"): NaN kept, and not counted."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    known = ~np.isnan(p)
    out[known] = stats.false_discovery_control(p[known], method="bh")
    return out


def differential_expression(
    matrix: pd.DataFrame, labels: list[str], case: str, control: str
) -> pd.DataFrame:
    """limma-style table (probeset index) of case vs control over the given samples."""
    labels_arr = np.asarray(labels)
    keep = np.isin(labels_arr, [case, control])
    stats_ = moderated_t(matrix.to_numpy()[keep], labels_arr[keep] == case)
    return pd.DataFrame(stats_, index=pd.Index(matrix.columns, name="probeset"))
