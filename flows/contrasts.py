"""Several contrasts in one run: one signature-search subflow per contrast, then an index."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import cast

from prefect import task
from prefect.states import Failed, State

from flows.params import flow_arguments
from tasks.io import read_input, read_text, save_text
from tasks.parameters import SearchParameters, preparation_options
from tasks.policy import dataset_stem
from tasks.report.contrast_index import ContrastOutcome, contrast_index
from tasks.science.contrasts import Contrast, check_contrasts, parse_contrasts
from tasks.science.dataset import PrepareOptions


class ContrastsFailed(RuntimeError):
    """At least one contrast's search failed; the others' reports are linked from the index."""


def load_contrasts(params: SearchParameters) -> list[Contrast]:
    """The contrasts file, checked against the input's sample columns (read once)."""
    path = Path(params.contrasts or "")
    contrasts = parse_contrasts(read_text(path), path)
    options = PrepareOptions(**preparation_options(params))
    raw = read_input(Path(params.input_path), options)
    check_contrasts(contrasts, raw.samples, raw.labels, path)
    return contrasts


@task(name="read-contrasts")
def read_contrasts_task(params: SearchParameters) -> list[Contrast]:
    """The checked contrasts of the run."""
    return load_contrasts(params)


def contrast_parameters(params: SearchParameters, contrast: Contrast) -> SearchParameters:
    """One contrast's search: its variable as the phenotype, target the case, reference the control."""
    update = {
        "contrasts": None,
        "phenotype_field": contrast.variable if contrast.variable != "phenotype" else None,
        "case": contrast.target,
        "control": contrast.reference,
    }
    if contrast.covariates is not None:
        update["covariates"] = contrast.covariates
    return SearchParameters.model_validate(params.model_dump() | update)


def index_dir(params: SearchParameters) -> Path:
    """The index's folder, named by the input and the contrasts file's content (reruns share it)."""
    digest = hashlib.sha256(Path(params.contrasts or "").read_bytes()).hexdigest()[:12]
    return Path(params.results_dir) / f"{dataset_stem(params.input_path)}-contrasts-{digest}"


def outcome(contrast: Contrast, state: State, folder: Path) -> ContrastOutcome:
    """A subflow's end as the index shows it, with its verdict figures from report.json."""
    fields = (contrast.id, contrast.variable, contrast.target, contrast.reference)
    if not state.is_completed():
        return ContrastOutcome(*fields, state.name or "Failed", state.message or "")
    report = Path(state.result()["report"])
    record = json.loads(report.with_name("report.json").read_text(encoding="utf-8"))
    top = (record.get("top_signatures") or [{}])[0]
    return ContrastOutcome(
        *fields,
        "Completed",
        report=os.path.relpath(report, folder),
        best_mean_auc=top.get("mean_auc"),
        selection_adjusted_p=record.get("selection_adjusted_p"),
    )


@task(name="write-contrast-index")
def write_index_task(folder: Path, title: str, outcomes: list[ContrastOutcome]) -> Path:
    """Write index.html and index.md; return the HTML's path."""
    html, markdown = contrast_index(title, outcomes)
    save_text(markdown, folder / "index.md")
    save_text(html, folder / "index.html")
    return folder / "index.html"


def search_contrasts(params: SearchParameters) -> dict | State:
    """Each contrast its own subflow (a failure loses no other), then the index of reports."""
    from flows.signature_search import signature_search

    contrasts = read_contrasts_task(params)
    folder = index_dir(params)
    outcomes = []
    for contrast in contrasts:
        fields = flow_arguments(contrast_parameters(params, contrast))
        state = cast(State, signature_search(**fields, return_state=True))
        outcomes.append(outcome(contrast, state, folder))
    title = f"{params.input_path}: {len(contrasts)} contrasts"
    index = write_index_task(folder, title, outcomes)
    failed = [o.id for o in outcomes if o.state != "Completed"]
    if failed:
        message = f"contrasts {', '.join(failed)} failed; the index at {index} links the others"
        return Failed(message=message, data=ContrastsFailed(message))
    reports = {o.id: str((folder / o.report).resolve()) for o in outcomes if o.report}
    return {"report": str(index), "contrasts": reports}
