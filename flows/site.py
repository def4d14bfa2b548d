"""A federation's site flows: deployed on the site's own work pool, run at the site.

`site-universe` answers which probesets the site can search; `site-search` runs the shared
plan on the site's data with the site's own server and workers (the `signature-search` flow,
as a subflow, so the site keeps its full report) and publishes only summaries, as an
artifact of its flow run, which is all the coordinator reads.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import Artifact
from prefect.runtime import flow_run

from flows.params import injected_faults, takes_fields_of
from flows.signature_search import signature_search
from tasks.federation.exchange import (
    SUMMARY_KIND,
    UNIVERSE_KIND,
    check_aggregate_only,
    gene_columns,
    null_columns,
    plan_sha256,
    signature_columns,
    summary_payload,
    universe_payload,
)
from tasks.io import read_model, read_prepared, read_probesets
from tasks.parameters import TEST_ONLY, SearchParameters, preparation_options
from tasks.redact import redact_http_logs
from tasks.science.dataset import PreparedSummary
from tasks.science.destats import differential_expression
from tasks.science.plan import plan_batch
from tasks.steps import prepare_dataset_step

SITE_ARGUMENTS = ("site", "federation_run", "plan_sha256")


class PlanMismatch(RuntimeError):
    """The site's data gives another plan than the coordinator's (another universe)."""


def with_site_arguments(fn):
    """`fn(site, federation_run, plan_sha256, **fields)`: the search's fields top-level."""
    fn = takes_fields_of(SearchParameters, hidden=TEST_ONLY)(fn)
    fields = list(inspect.signature(fn).parameters.values())
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default="", annotation=str)
        for name in SITE_ARGUMENTS
    ]
    fn.__dict__["__signature__"] = inspect.Signature([*extra, *fields])
    return fn


def site_run_name() -> str:
    """`<site>-<flow>-<federation run>`: which site, which step, for which federated run."""
    params = flow_run.parameters
    return f"{params.get('site')}-{flow_run.flow_name}-{params.get('federation_run')}"


def search_parameters(fields: dict) -> SearchParameters:
    """The site's search parameters, checked (the test hook's faults from the environment)."""
    return SearchParameters(**fields, faults=injected_faults())


def counts_of(dataset: PreparedSummary) -> dict[str, int]:
    """The prepared groups' sizes under the federation's names."""
    return {"case": dataset.samples[dataset.case], "control": dataset.samples[dataset.control]}


@task(name="publish-summary")
def publish_payload(payload: dict, sample_ids: list[str], key: str) -> None:
    """Check that nothing names a sample, then publish the payload as this run's artifact."""
    check_aggregate_only(payload, sample_ids)
    Artifact(
        type=payload["kind"],
        key=key,
        description=f"{payload['kind']} of site {payload['site']}: what the coordinator reads",
        data=payload,
    ).create()


def payload_key(site: str, federation_run: str, kind: str) -> str:
    """An artifact key per federated run, site and kind (one history each)."""
    return f"{kind}-{federation_run}-{site}".lower()


@flow(name="site-universe", flow_run_name=site_run_name, validate_parameters=False)
@with_site_arguments
def site_universe(site: str, federation_run: str, plan_sha256: str, **fields) -> dict:
    """Prepare the site's data; publish its probesets and group sizes."""
    redact_http_logs()
    params = search_parameters(fields)
    dataset = prepare_dataset_step(
        Path(params.input_path), preparation_options(params), Path(params.data_dir)
    )
    payload = universe_payload(site, read_probesets(dataset.path), counts_of(dataset))
    publish_payload(payload, dataset.sample_ids, payload_key(site, federation_run, UNIVERSE_KIND))
    get_run_logger().info(
        "site %s: %d probesets; %s", site, len(payload["probesets"]), payload["samples"]
    )
    return {"site": site, "probesets": len(payload["probesets"]), "samples": payload["samples"]}


@task(name="check-plan")
def check_plan(dataset: PreparedSummary, params: SearchParameters, expected: str) -> None:
    """The plan this site's prepared probesets give must be the coordinator's."""
    signatures = plan_batch(
        read_probesets(dataset.path),
        params.n_signatures,
        params.min_len,
        params.max_len,
        params.seed,
        1,
    )
    found = plan_sha256(signatures)
    if found != expected:
        raise PlanMismatch(
            f"the site's probesets give plan {found[:12]}, the coordinator's is {expected[:12]}"
        )


@task(name="summarise-site")
def summarise_site(
    site: str, dataset: PreparedSummary, params: SearchParameters, run: dict, plan: str
) -> dict:
    """The site's summaries: signatures' AUCs, per-gene statistics, the null's AUCs."""
    run_dir = Path(run["run_dir"])
    records = load_records(run_dir / "records.tsv")
    perm_path = run_dir / "permutation_records.tsv"
    perm = load_records(perm_path) if perm_path.exists() else records.iloc[:0]
    ids = sorted(int(i) for i in records["signature"].unique())
    labels, matrix = read_prepared(dataset.path)
    model, de_input = read_model(dataset.path)
    source = matrix if de_input is None else de_input
    de = differential_expression(
        source, labels, dataset.case, dataset.control, model, standard_errors=True
    )
    tables = {
        "signatures": signature_columns(records, ids, params.classifiers),
        "genes": gene_columns(de),
        "null": null_columns(perm, ids),
    }
    where = {"run_id": run["run_id"], "report": run["report"], "failed_slices": run["failed"]}
    return summary_payload(site, counts_of(dataset), plan, params.classifiers, tables, where)


def load_records(path: Path) -> pd.DataFrame:
    """A run's records TSV (permutation, signature, classifier, auc, accuracy, error)."""
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])


@flow(name="site-search", flow_run_name=site_run_name, validate_parameters=False)
@with_site_arguments
def site_search(site: str, federation_run: str, plan_sha256: str, **fields) -> dict:
    """Run the shared plan on the site's data; publish the summaries, keep the rest here."""
    redact_http_logs()
    params = search_parameters(fields)
    if not params.probesets:
        raise ValueError("site-search needs the federation's probesets (parameter probesets)")
    dataset = prepare_dataset_step(
        Path(params.input_path), preparation_options(params), Path(params.data_dir)
    )
    check_plan(dataset, params, plan_sha256)
    run = signature_search(**fields)
    payload = summarise_site(site, dataset, params, run, plan_sha256)
    publish_payload(payload, dataset.sample_ids, payload_key(site, federation_run, SUMMARY_KIND))
    return {"site": site, "report": run["report"], "failed": run["failed"]}
