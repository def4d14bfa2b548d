"""The run's answer in a few lines, from its report.json (the terminal prints them)."""

from __future__ import annotations

import re

import numpy as np

# One entry of report.json's `probesets`: "M27891_at (CST3)" or a bare probeset id.
ENTRY = re.compile(r"\s*(?P<probeset>[^\s(]+)(?:\s*\((?P<symbol>[^)]*)\))?\s*")


def gene_names(probesets: str) -> list[str]:
    """Each probeset of a signature by its symbol where it has one, else by its id."""
    names = []
    for entry in probesets.split(","):
        match = ENTRY.fullmatch(entry)
        if match:
            names.append(match["symbol"] or match["probeset"])
        elif entry.strip():
            names.append(entry.strip())
    return names


def selection_line(record: dict, best_auc: float) -> str:
    """The best signature's selection-adjusted p, with the smallest attainable p beside it."""
    p, floor = record.get("selection_adjusted_p"), record.get("selection_adjusted_p_min")
    if p is None or floor is None:
        return "  selection-adjusted p: not computed (no permutation job; --n-permutations 0)"
    n = (record.get("null") or {}).get("n_permutations")
    perms = f" with {n} permutations" if n else ""
    lines = (
        f"  mean AUC {best_auc:.4f}, selection-adjusted p {p:.3g} "
        f"(smallest attainable {floor:.3g}{perms})\n  -> it {selection_verdict(p, floor, n)}"
    )
    lower = (record.get("null") or {}).get("lower_p_cost")
    if lower and floor > lower["p"]:
        lines += f"\n  to go lower: {lower_p_text(lower)}"
    return lines


def lower_p_cost(
    target: float, per_permutation: int, n_classifiers: int, evaluated: int, seconds: float
) -> dict[str, float]:
    """Permutations, evaluations and wall seconds (at this run's rate) a p of `target` needs.

    The smallest attainable p is 1 / (permutations + 1); each permutation evaluates its
    candidates (`per_permutation` signatures) with every classifier. The rate is this
    run's evaluations over its whole wall time, set-up included, so the seconds are an upper
    estimate on the same backend and workers.
    """
    permutations = int(np.ceil(1 / target - 1 - 1e-9))
    evaluations = permutations * per_permutation * n_classifiers
    measured = evaluated > 0 and seconds > 0
    return {
        "p": target,
        "permutations": permutations,
        "evaluations": evaluations,
        "seconds": evaluations * seconds / evaluated if measured else float("nan"),
    }


def lower_p_text(cost: dict[str, float]) -> str:
    """`p <= 0.001 needs --n-permutations 999: 4,995 evaluations, about 120 s at this run's rate`."""
    seconds = cost["seconds"]
    when = (
        f", about {seconds:,.0f} s at this run's rate (set-up included)"
        if np.isfinite(seconds)
        else ""
    )
    return (
        f"p <= {cost['p']:g} needs --n-permutations {int(cost['permutations'])}: "
        f"{int(cost['evaluations']):,} null evaluations (signature x classifier){when}"
    )


def selection_verdict(p: float, floor: float, n_permutations: int | None) -> str:
    """What a selection-adjusted p says, given the smallest p its permutations can give."""
    if p <= 0.05:
        return "beats what selecting the best of many random signatures gives"
    if floor > 0.05 and p <= floor * 1.1:  # at (or within a hair of) its floor
        return (
            f"cannot be told from selection with {n_permutations or 'so few'} permutations: its "
            "p is the smallest they allow (p <= 0.05 needs --n-permutations 19 or more)"
        )
    return "does not beat what selecting the best of many random signatures gives"


def baseline_line(record: dict) -> str:
    """The random-signature baseline's verdict: do random gene sets separate the labels too?"""
    base = record.get("random_signature_baseline")
    if not base:
        return "  random-signature baseline: not computed (no permutation job)"
    return f"  random-signature baseline: {baseline_verdict(base)}"


def baseline_verdict(base: dict) -> str:
    """report.json's `random_signature_baseline` in a sentence, its numbers in brackets."""
    random, permuted = base["random_median_auc"], base["permuted_median_auc"]
    share = base["share_above_permuted_q95"]
    numbers = (
        f"median mean AUC {random:.3f} on the real labels against {permuted:.3f} on permuted "
        f"labels; {share:.0%} beat 95% of the permuted-label evaluations"
    )
    floor = 1 / (base["n_permutations"] + 1) if base.get("n_permutations") else 0.0
    if floor > 0.05 and base["mean_auc_p"] <= floor * (1 + 1e-9):
        what = (
            f"random signatures beat permuted labels on every permutation, but {floor:.3g} "
            "is the smallest p so few permutations give"
        )
    elif base["mean_auc_p"] <= 0.05 and share >= 0.5:
        what = (
            "most random signatures separate the phenotypes too, so the best AUC says little "
            "about its own genes"
        )
    elif base["mean_auc_p"] <= 0.05:
        what = "random signatures separate the phenotypes better than chance, a minority well"
    else:
        panel = base.get("n_panel", 0)
        what = (
            f"the null panel's {panel} random signatures score no better on the real labels than "
            "on permuted ones"
            + (" (a test of so few signatures has little power)" if panel < 20 else "")
        )
    return f"{what} ({numbers}, p {base['mean_auc_p']:.3g})"


def verdict_lines(report_record: dict) -> list[str]:
    """What was found, how sure, at what cost, from report.json (`Report: <path>` follows)."""
    summary = report_record.get("summary", {})
    contrast = summary.get("contrast", "")
    lines = [f"Verdict ({contrast}):" if contrast else "Verdict:"]
    top = report_record.get("top_signatures") or []
    if not top or top[0].get("mean_auc") is None:
        lines.append("  no signature has a result")
        return lines
    best = top[0]
    genes = gene_names(best.get("probesets", ""))
    lines.append(f"  best signature #{best['signature']} ({len(genes)} genes): {', '.join(genes)}")
    lines += selection_line(report_record, float(best["mean_auc"])).split("\n")
    lines.append(baseline_line(report_record))
    if summary.get("caution"):
        lines.append(f"  caution: {summary['caution']}")
    cost = summary.get("run time")
    evaluated = summary.get("signatures evaluated")
    if cost is not None and evaluated is not None:
        lines.append(f"  cost: {evaluated} signatures evaluated in {cost}")
    return lines
