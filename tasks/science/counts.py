"""RNA-seq counts brought in as edgeR 3.40 and limma 3.54 do: filter, TMM, voom.

Arrays are samples x genes (rows are samples), the transpose of R's. `prepare_counts` is
the standard workflow::

    y <- DGEList(counts); keep <- filterByExpr(y, design)
    y <- y[keep, , keep.lib.sizes = FALSE]; y <- calcNormFactors(y); v <- voom(y, design)

`lowess` is a port of R's `stats::lowess` (clowess in src/library/stats/src/lowess.c) that
sums in the C code's order: on the tests' data it gives R's doubles bit for bit.
Agreement with R is tested against tables that tests/tasks/science/counts_reference.R wrote.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from tasks.science.destats import lm_fit

# filterByExpr's defaults (edgeR 3.40).
MIN_COUNT = 10.0
MIN_TOTAL_COUNT = 15.0
LARGE_N = 10.0
MIN_PROP = 0.7
# calcNormFactors(method = "TMM")'s defaults.
LOGRATIO_TRIM = 0.3
SUM_TRIM = 0.05
A_CUTOFF = -1e10


@dataclass(frozen=True)
class CountsPrepared:
    """The filtered, TMM-normalised, voom-weighted counts of one dataset."""

    keep: np.ndarray  # bool per gene of the input
    norm_factors: np.ndarray  # per sample
    lib_size: np.ndarray  # per sample: column sums of the kept counts times norm_factors
    log_cpm: np.ndarray  # voom's E, samples x kept genes
    weights: np.ndarray  # voom's weights, samples x kept genes


def count_problem(values: np.ndarray) -> tuple[int, int, str] | None:
    """(row, col, problem) of the first cell that is negative or not an integer, else None."""
    v = np.atleast_2d(np.asarray(values, dtype=float))
    bad = ~np.isfinite(v) | (v < 0) | (v != np.floor(v))
    if not bad.any():
        return None
    row, col = np.unravel_index(int(np.argmax(bad)), v.shape)
    x = float(v[row, col])
    text = str(int(x)) if math.isfinite(x) and x.is_integer() else str(x)
    kind = "negative" if x < 0 else "non-integer"
    return int(row), int(col), f"{kind} count {text}"


def _r_mean(x: np.ndarray) -> float:
    """R's mean(): the sum over n, corrected by the mean residual (R works in long double)."""
    n = len(x)
    m = math.fsum(x) / n
    return m + math.fsum(x - m) / n


def _r_median(x: np.ndarray) -> float:
    """R's median(): the middle value, or the mean of the two middle ones."""
    s = np.sort(x)
    half = (len(s) + 1) // 2
    return float(s[half - 1]) if len(s) % 2 else _r_mean(s[half - 1 : half + 1])


def _r_quantile7(x: np.ndarray, p: float) -> float:
    """R's quantile(x, p) of type 7, with R's interpolation formula (numpy's rounds differently)."""
    s = np.sort(x)
    index = 1 + max(len(s) - 1, 0) * p
    lo, hi = math.floor(index), math.ceil(index)
    q = float(s[lo - 1])
    if index > lo and s[hi - 1] != q:
        h = index - lo
        q = (1 - h) * q + h * float(s[hi - 1])
    return q


def _min_sample_size(design: np.ndarray) -> float:
    """1 / max(hat(design)): R's hat() prepends an intercept column, then keeps the rank's span."""
    x = np.column_stack([np.ones(design.shape[0]), design])
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    # R's QR (dqrdc2) calls a column dependent below 1e-7 of its norm; the hat values only
    # depend on the span, so an SVD with the same relative tolerance gives the same leverages.
    rank = int(np.sum(s > 1e-7 * s[0]))
    return 1.0 / float(np.max(np.sum(u[:, :rank] ** 2, axis=1)))


def filter_by_expr(counts: np.ndarray, design: np.ndarray) -> np.ndarray:
    """edgeR's filterByExpr(DGEList(counts), design): a bool per gene (column) to keep."""
    y = np.asarray(counts, dtype=float)
    lib_size = y.sum(axis=1)  # DGEList's lib.size times norm.factors, which are 1 here
    if np.min(lib_size) <= 0:
        raise ValueError("library sizes should be finite and non-negative")  # as cpm() stops
    min_size = _min_sample_size(np.asarray(design, dtype=float))
    if min_size > LARGE_N:
        min_size = LARGE_N + (min_size - LARGE_N) * MIN_PROP
    cutoff = MIN_COUNT / _r_median(lib_size) * 1e6
    # edgeR's C++ cpm multiplies by 1e6 / lib.size: a count exactly at min.count in a library
    # of the median size can fall a rounding below the cutoff, and R then drops it.
    cpm = y * (1e6 / lib_size)[:, None]
    tol = 1e-14
    keep_cpm = np.sum(cpm >= cutoff, axis=0) >= min_size - tol
    return keep_cpm & (y.sum(axis=0) >= MIN_TOTAL_COUNT - tol)


def _tmm_factor(obs: np.ndarray, ref: np.ndarray, lib_obs: float, lib_ref: float) -> float:
    """edgeR's .calcFactorTMM: the weighted trimmed mean of M values of obs against ref."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_r = np.log2((obs / lib_obs) / (ref / lib_ref))
        abs_e = (np.log2(obs / lib_obs) + np.log2(ref / lib_ref)) / 2
        v = (lib_obs - obs) / lib_obs / obs + (lib_ref - ref) / lib_ref / ref
    fin = np.isfinite(log_r) & np.isfinite(abs_e) & (abs_e > A_CUTOFF)
    log_r, abs_e, v = log_r[fin], abs_e[fin], v[fin]
    if len(log_r) == 0 or np.max(np.abs(log_r)) < 1e-6:
        return 1.0
    n = len(log_r)
    lo_l = math.floor(n * LOGRATIO_TRIM) + 1
    lo_s = math.floor(n * SUM_TRIM) + 1
    rank_r, rank_e = rankdata(log_r), rankdata(abs_e)  # R's rank(): ties get the average
    keep = (rank_r >= lo_l) & (rank_r <= n + 1 - lo_l) & (rank_e >= lo_s) & (rank_e <= n + 1 - lo_s)
    # R sums in long double; fsum's correctly rounded sum is the nearest double can do.
    f = math.fsum(log_r[keep] / v[keep]) / math.fsum(1 / v[keep])
    return 2.0 ** (0.0 if math.isnan(f) else f)


def tmm_factors(counts: np.ndarray) -> np.ndarray:
    """edgeR's calcNormFactors(DGEList(counts), method = "TMM"): a factor per sample."""
    x = np.asarray(counts, dtype=float)
    lib_size = x.sum(axis=1)
    x = x[:, np.any(x > 0, axis=0)]  # all-zero genes go, lib.size stays
    n = x.shape[0]
    if x.shape[1] == 0 or n == 1:
        return np.ones(n)
    f75 = np.array([_r_quantile7(row, 0.75) for row in x]) / lib_size
    if _r_median(f75) < 1e-20:
        ref = int(np.argmax(np.sqrt(x).sum(axis=1)))  # most upper quartiles are zero
    else:
        ref = int(np.argmin(np.abs(f75 - _r_mean(f75))))  # first minimum, as which.min
    f = np.array([_tmm_factor(x[i], x[ref], lib_size[i], lib_size[ref]) for i in range(n)])
    return f / math.exp(_r_mean(np.log(f)))


def _seqsum(v: np.ndarray) -> float:
    """Left-to-right sum, the C loop's rounding (numpy's sum is pairwise)."""
    return float(np.cumsum(v)[-1])


def _fit_plan(x: list[float], ns: int, delta: float) -> list[tuple[int, int, int, int]]:
    """clowess's fitted points as (i, nleft, nright, last tie of x[i]); x sorted, 0-based."""
    n = len(x)
    plan = []
    nleft, nright, i = 0, ns - 1, 0
    while True:
        # Move the window right while that shrinks its radius about x[i].
        while nright < n - 1 and x[i] - x[nleft] > x[nright + 1] - x[i]:
            nleft += 1
            nright += 1
        last = bisect.bisect_right(x, x[i]) - 1  # ties of x[i] copy its fit
        plan.append((i, nleft, nright, last))
        if last >= n - 1:
            return plan
        # The next fit is at the last point within delta of x[i] (points between are
        # interpolated), or the next point after the ties.
        beyond = bisect.bisect_right(x, x[i] + delta)
        i = max(last + 1, beyond - 1)


def _local_fit(
    x: np.ndarray, y: np.ndarray, xl: list[float], at: tuple[int, int, int], rw: np.ndarray | None
) -> float | None:
    """clowess's lowest(): the locally weighted linear fit at x[i], None if all weights are 0."""
    i, nleft, nright = at
    xs = xl[i]
    h = max(xs - xl[nleft], xl[nright] - xs)
    h9, h1 = 0.999 * h, 0.001 * h
    # C walks right from nleft until a point beyond xs lies farther than h9 (it picks up
    # ties on the right); x[j] - xs grows with j, so that end is found by bisection.
    end = bisect.bisect_right(xl, h9, lo=nleft, key=lambda v: v - xs)
    xw, yw = x[nleft:end], y[nleft:end]
    r = np.abs(xw - xs)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = r / h
        t = 1.0 - q * q * q
        w = np.where(r <= h1, 1.0, t * t * t)
    if rw is not None:
        w = w * rw[nleft:end]
    w = np.where(r <= h9, w, 0.0)
    a = _seqsum(w)
    if a <= 0.0:
        return None
    w = w / a
    if h > 0.0:
        a = _seqsum(w * xw)
        d = xw - a
        c = _seqsum(w * (d * d))
        if math.sqrt(c) > 0.001 * (xl[-1] - xl[0]):
            # Points spread out enough to fit a slope.
            w = w * ((xs - a) / c * d + 1.0)
    return _seqsum(w * yw)


def _lowess_pass(
    x: np.ndarray, y: np.ndarray, plan: list[tuple[int, int, int, int]], rw: np.ndarray | None
) -> np.ndarray:
    """One clowess sweep: fit at the planned points, interpolate between, copy to ties."""
    xl = x.tolist()  # bisect on a list of floats: exact, and fast per call
    ys = np.empty_like(y)
    prev = -1  # the last point estimated so far
    for i, nleft, nright, last in plan:
        fit = _local_fit(x, y, xl, (i, nleft, nright), rw)
        ys[i] = y[i] if fit is None else fit
        if prev < i - 1:
            alpha = (x[prev + 1 : i] - x[prev]) / (x[i] - x[prev])
            ys[prev + 1 : i] = alpha * ys[i] + (1.0 - alpha) * ys[prev]
        ys[i + 1 : last + 1] = ys[i]
        prev = last
    return ys


def _robustness_weights(res: np.ndarray) -> np.ndarray | None:
    """Bisquare weights of the residuals at 6 median absolute residuals; None if that is ~0."""
    n = len(res)
    r = np.abs(res)
    m1 = n // 2
    if n % 2 == 0:
        m2 = n - m1 - 1
        part = np.partition(r, [m2, m1])
        cmad = 3.0 * (part[m1] + part[m2])  # 3 * (sum), not 6 * median: C's rounding
    else:
        cmad = 6.0 * np.partition(r, m1)[m1]
    if cmad < 1e-7 * (_seqsum(r) / n):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):  # cmad 0: every weight is then 1
        q = r / cmad
    t = 1.0 - q * q
    return np.where(r <= 0.001 * cmad, 1.0, np.where(r <= 0.999 * cmad, t * t, 0.0))


def _clowess(x: np.ndarray, y: np.ndarray, f: float, iterations: int, delta: float) -> np.ndarray:
    """R's C clowess on x sorted: fitted values after `iterations` robustness steps."""
    n = len(x)
    if n < 2:
        return y.copy()
    ns = max(2, min(n, int(f * n + 1e-7)))  # points in each local fit
    plan = _fit_plan(x.tolist(), ns, delta)
    rw: np.ndarray | None = None
    for step in range(iterations + 1):
        ys = _lowess_pass(x, y, plan, rw)
        if step == iterations:
            break
        rw = _robustness_weights(y - ys)
        if rw is None:
            break
    return ys


def lowess(
    x: np.ndarray, y: np.ndarray, f: float = 2 / 3, iterations: int = 3, delta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """R's lowess(x, y, f, iter, delta): (x sorted, fitted values in that order)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError("lowess needs x and y of one same non-zero length")
    if not (math.isfinite(f) and f > 0):
        raise ValueError("'f' must be finite and > 0")
    if iterations < 0:
        raise ValueError("'iter' must be finite and >= 0")
    order = np.argsort(x, kind="stable")  # R's order() keeps ties in input order
    xs, ys = x[order], y[order]
    if delta is None:
        delta = 0.01 * (xs[-1] - xs[0])
    if not (math.isfinite(delta) and delta >= 0):
        raise ValueError("'delta' must be finite and >= 0")
    return xs, _clowess(xs, ys, f, iterations, float(delta))


def _approx_rule2(xk: np.ndarray, yk: np.ndarray, v: np.ndarray) -> np.ndarray:
    """approxfun(xk, yk, rule = 2, ties = list("ordered", mean))(v), xk sorted."""
    ux, start, size = np.unique(xk, return_index=True, return_counts=True)
    # R's mean of each run of tied x, with its correction by the mean residual.
    m = np.add.reduceat(yk, start) / size
    uy = m + np.add.reduceat(yk - np.repeat(m, size), start) / size
    if len(ux) < 2:
        raise ValueError("need at least two distinct x values to interpolate")
    i = np.clip(np.searchsorted(ux, v, side="right") - 1, 0, len(ux) - 2)
    xi, xj, yi, yj = ux[i], ux[i + 1], uy[i], uy[i + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = yi + (yj - yi) * ((v - xi) / (xj - xi))
    out = np.where(v == xi, yi, np.where(v == xj, yj, out))
    return np.where(v < ux[0], uy[0], np.where(v > ux[-1], uy[-1], out))


def voom(
    counts: np.ndarray, design: np.ndarray, lib_size: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """limma's voom(counts, design, lib.size): (log-CPM E, precision weights), samples x genes."""
    y = np.asarray(counts, dtype=float)
    design = np.asarray(design, dtype=float)
    lib = np.asarray(lib_size, dtype=float)
    if lib.shape != (y.shape[0],):
        raise ValueError("lib_size needs one value per sample (row)")
    if y.shape[1] < 2:
        raise ValueError("Need at least two genes to fit a mean-variance trend")
    if np.min(y) < 0:
        raise ValueError("Negative counts not allowed")
    e = np.log2((y + 0.5) / (lib + 1.0)[:, None] * 1e6)
    if design.shape[0] <= design.shape[1]:
        return e, np.ones_like(e)  # no residual df: R warns and sets the weights to 1
    fit = lm_fit(e, design, weights=None)
    sx = fit.amean + _r_mean(np.log2(lib + 1.0)) - math.log2(1e6)
    sy = np.sqrt(fit.sigma)
    expressed = y.sum(axis=0) != 0  # all-zero genes stay out of the trend
    lx, ly = lowess(sx[expressed], sy[expressed], f=0.5)
    # Fitted values summed coefficient by coefficient in order, as R's reference BLAS does.
    fitted = np.zeros((design.shape[0], y.shape[1]))
    for k in range(design.shape[1]):
        fitted = fitted + design[:, k, None] * fit.coefficients[None, :, k]
    fitted_count = 1e-6 * (2.0**fitted * (lib + 1.0)[:, None])
    return e, 1.0 / _approx_rule2(lx, ly, np.log2(fitted_count)) ** 4


def prepare_counts(counts: np.ndarray, design: np.ndarray) -> CountsPrepared:
    """filterByExpr, then TMM on the kept genes' library sizes, then voom, as edgeR and limma."""
    y = np.asarray(counts, dtype=float)
    keep = filter_by_expr(y, design)
    kept = y[:, keep]
    factors = tmm_factors(kept)
    lib_size = kept.sum(axis=1) * factors  # keep.lib.sizes = FALSE, then the norm factors
    log_cpm, weights = voom(kept, design, lib_size)
    return CountsPrepared(keep, factors, lib_size, log_cpm, weights)
