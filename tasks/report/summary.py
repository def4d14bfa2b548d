"""The run summary the report opens with, from the run's typed values (plain functions)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import BaseModel

from tasks.execution.rounds import RunOutcome
from tasks.science.dataset import PreparedSummary

if TYPE_CHECKING:
    from tasks.parameters import SearchParameters

LAYOUTS = {
    "tutorial": "samples as rows, a phenotype column (the original example's layout)",
    "geo": "GEO series matrix",
    "matrix": "expression matrix (probesets as rows) with a sample sheet",
}


@dataclass(frozen=True)
class RunSummary:
    """What the run was and how it went: plain-worded facts and three tables."""

    overview: dict[str, str | int]
    parameters: pd.DataFrame  # parameter, value, meaning
    versions: pd.DataFrame  # package, version
    rounds: pd.DataFrame  # one row per round of each job, with why slices failed
    seconds: float = 0.0  # the run's wall time, every flow attempt


def run_summary(
    params: SearchParameters,
    dataset: PreparedSummary,
    main: RunOutcome,
    perm: RunOutcome | None,
    n_slices: int,
    seconds: float,
    versions: dict[str, str],
) -> RunSummary:
    """The summary of a run: its dataset, jobs, retries, parameters and package versions."""
    jobs = {"main": main} | ({"permutation": perm} if perm else {})
    overview: dict[str, str | int] = {
        "run id": main.run_id,
        "dataset": params.input_path,
        "dataset sha256": dataset.sha256,
        "input layout": LAYOUTS.get(dataset.layout, dataset.layout),
        "contrast": f"{dataset.case} (case) vs {dataset.control} (control)",
        "samples": _samples(dataset),
        "probesets": dataset.n_probesets,
        "preparation": _preparation(dataset),
        "design": dataset.model.get("formula", "~ group"),
        "classifier features": features_described(dataset.model),
        **caution(dataset),
        "backend": params.backend,
        "job ids": ", ".join(j for outcome in jobs.values() for j in outcome.job_ids),
        "slices": n_slices,
        "slices retried": main.slices_retried,
        "permutation slices retried": perm.slices_retried if perm else 0,
        "re-executions that disagreed": _conflicts(main, perm),
        "slices failed": _failed(main),
        "permutation slices failed": _failed(perm) if perm else "none",
        "classifiers": ", ".join(params.classifiers),
        "cv folds": params.cv_folds,
        "seed": params.seed,
        "signatures": f"{params.n_signatures} of length {params.min_len}-{params.max_len}",
        "permutations": f"{params.n_permutations} x "
        + (
            f"{params.null_signatures} random + {params.null_candidates} screened signatures"
            if params.null_signatures
            else "all signatures"
        ),
        "run time": f"{seconds:.1f} s (every flow attempt)",
    }
    table = pd.DataFrame(sorted(versions.items()), columns=["package", "version"])
    return RunSummary(overview, parameter_table(params), table, round_table(jobs), seconds)


def with_split(summary: RunSummary, split: tuple[list[int], list[int]] | None) -> RunSummary:
    """The summary with the samples' discovery/held-out split beside their counts, if any."""
    if not split:
        return summary
    samples = f"{summary.overview['samples']}; {len(split[0])} searched (discovery), "
    samples += f"{len(split[1])} held out for validation"
    return dataclasses.replace(summary, overview={**summary.overview, "samples": samples})


def _samples(dataset: PreparedSummary) -> str:
    """`38: 11 AML (case), 27 ALL (control)`."""
    counts = dataset.samples
    parts = [f"{counts.get(dataset.case, 0)} {dataset.case} (case)"]
    parts.append(f"{counts.get(dataset.control, 0)} {dataset.control} (control)")
    return f"{sum(counts.values())}: " + ", ".join(parts)


def _preparation(dataset: PreparedSummary) -> str:
    """What preparation decided and warned, without the layout (shown on its own line)."""
    notes = [d for d in dataset.decisions if not d.startswith("input layout:")]
    return "; ".join(notes + dataset.warnings) or "nothing to note"


def caution(dataset: PreparedSummary) -> dict[str, str]:
    """Covariates associated with the phenotype: a rival explanation the verdict names."""
    found = [w for w in dataset.warnings if "associated with the phenotype" in w]
    return {"caution": "; ".join(found)} if found else {}


def features_described(model: dict) -> str:
    """What the classifiers saw, in words: values as prepared, voom's log-CPM, or adjusted."""
    covariates = ", ".join(model.get("covariates", {}))
    seen = (
        "voom's log2-CPM of the TMM-normalised counts, on the genes filterByExpr kept"
        if model.get("counts")
        else "the expression values as prepared"
    )
    if model.get("adjusted"):
        return (
            f"{seen}, with the effects of {covariates} removed (limma removeBatchEffect, "
            "fitted without the phenotype)"
        )
    return seen + (f", not adjusted for {covariates}" if covariates else "")


def _failed(outcome: RunOutcome) -> str:
    """Slices that failed after all retries, with their last reason."""
    return ", ".join(f"{k} ({v})" for k, v in sorted(outcome.failed.items())) or "none"


def _conflicts(main: RunOutcome, perm: RunOutcome | None) -> str:
    """Re-executed slices whose records differed from the stored ones (the first is kept)."""
    found = [c["slice"] for c in main.conflicts]
    found_perm = [c["slice"] for c in (perm.conflicts if perm else [])]
    if not found and not found_perm:
        return "none"
    return (
        f"{len(found) + len(found_perm)} (slices {sorted(found)}; permutation {sorted(found_perm)})"
    )


def round_table(jobs: dict[str, RunOutcome]) -> pd.DataFrame:
    """One row per round of each job: what it deployed, how it ended, why slices failed."""
    rows = [
        {
            "job": name,
            "round": "first deployment" if a.attempt == 0 else f"retry {a.attempt}",
            "job id": a.job_id,
            "slices deployed": len(a.slices),
            "started (UTC)": a.started_at or "-",
            "seconds": a.seconds,
            "job ended": a.ended,
            "slices without a result": len(a.failed),
            "why": "; ".join(f"slice {k}: {v}" for k, v in sorted(a.failed.items())) or "-",
            "outage": a.outage or "-",
        }
        for name, outcome in jobs.items()
        for a in outcome.rounds
    ]
    columns = ["job", "round", "job id", "slices deployed", "started (UTC)", "seconds"]
    columns += ["job ended", "slices without a result", "why", "outage"]
    return pd.DataFrame(rows, columns=columns)


def parameter_table(params: BaseModel, prefix: str = "") -> pd.DataFrame:
    """Every parameter (nested models flattened as `dcp.job_name`), its value and meaning."""
    rows = []
    for name, field in type(params).model_fields.items():
        value = getattr(params, name)
        if isinstance(value, BaseModel):
            rows += parameter_table(value, f"{prefix}{name}.").to_dict(orient="records")
            continue
        rows.append(
            {
                "parameter": prefix + name,
                "value": plain_value(value),
                "meaning": field.description or "",
            }
        )
    return pd.DataFrame(rows, columns=["parameter", "value", "meaning"])


def plain_value(value: object) -> str:
    """A parameter value as a person writes it: `yes`, `not set`, `a, b`, `fail: 1, 2`."""
    if value is None or value == "":
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(plain_value(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {plain_value(v)}" for k, v in value.items()) or "none"
    return str(value)
