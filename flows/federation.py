"""The `federated-search` flow: the coordinator of several sites' searches.

Each site runs `site-universe` and `site-search` as deployments on its own work pool
(`run_deployment`); the coordinator sends names, the plan's recipe and digest, and reads
back only the summaries each site run publishes as an artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Cancelling

from flows.params import takes_fields_of
from tasks.federation.exchange import SUMMARY_KIND, UNIVERSE_KIND, plan_sha256
from tasks.federation.meta import Universe, common_universe
from tasks.federation.parameters import FederationParameters
from tasks.federation.report import FederatedInputs, write_federated_report
from tasks.federation.sites import Federation, Site, parse_sites
from tasks.io import read_text
from tasks.redact import redact_http_logs
from tasks.science.plan import plan_batch


class SiteFailed(RuntimeError):
    """A site's flow run did not complete (or published no summary)."""


class FederationRefused(RuntimeError):
    """Too few sites answered for a federated result."""


def load_sites(path: Path) -> Federation:
    """The checked sites file."""
    return parse_sites(read_text(path), path)


def read_payload(run_id: UUID, kind: str) -> dict:
    """The payload a site's flow run published (its artifact of that kind)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=[kind])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
        )
    if not artifacts:
        raise SiteFailed(f"its run {run_id} published no {kind}")
    data = artifacts[0].data  # stored as the JSON text of the payload
    return json.loads(data) if isinstance(data, str) else cast(dict, data)


def cancel_run(run: FlowRun) -> None:
    """Ask a site run that outlived its time to stop."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(message="timed out at the coordinator"))


@task(name="run-site")
def run_site(site: Site, flow_name: str, kind: str, parameters: dict, timeout: float, poll: float):
    """One site's flow run to its end, on the site's pool; its published payload."""
    run = cast(
        FlowRun,
        run_deployment(
            f"{flow_name}/{site.name}",
            parameters=parameters,
            timeout=timeout,
            poll_interval=poll,
            tags=["federation", site.name],
        ),
    )  # sync: called from a task's thread
    state = run.state
    if state is None or not state.is_final():
        cancel_run(run)
        raise SiteFailed(f"site {site.name}: {flow_name} did not finish in {timeout:.0f} s")
    if not state.is_completed():
        raise SiteFailed(f"site {site.name}: {flow_name} {state.name}: {state.message}")
    return read_payload(run.id, kind)


def gather(futures: dict[str, PrefectFuture]) -> tuple[dict[str, dict], dict[str, str]]:
    """Each site's payload, or why it has none (a failed site does not lose the others)."""
    payloads, failures = {}, {}
    for name, future in futures.items():
        future.wait()
        if future.state.is_completed():
            payloads[name] = future.result()
        else:
            failures[name] = str(future.state.message or future.state.name)
            get_run_logger().error("site %s left out: %s", name, failures[name])
    return payloads, failures


def on_sites(
    federation: Federation,
    names: list[str],
    flow_name: str,
    kind: str,
    parameters: dict,
    params: FederationParameters,
) -> tuple[dict[str, dict], dict[str, str]]:
    """Run one site flow at each named site at once; payloads and failures by site."""
    attempt = run_site.with_options(retries=params.site_retries, retry_delay_seconds=2)
    timeout = params.site_timeout_minutes * 60
    futures = {
        name: attempt.submit(
            federation.site(name), flow_name, kind, parameters, timeout, params.poll_seconds
        )
        for name in names
    }
    return gather(futures)


def federation_run_id() -> str:
    """The short id that names this federated run's site runs and artifacts."""
    return (flow_run.id or "local")[:8]


def federated_run_name() -> str:
    """`federated-<sites file stem>-<n>sig-<id>`."""
    stem = Path(flow_run.parameters.get("sites_path") or "sites").stem
    return f"federated-{stem}-{flow_run.parameters.get('n_signatures')}sig-{federation_run_id()}"


def enough_sites(payloads: dict, failures: dict, step: str) -> None:
    """Refuse to go on with fewer than two sites."""
    if len(payloads) < 2:
        said = "; ".join(f"{site}: {why}" for site, why in failures.items())
        raise FederationRefused(
            f"{step}: {len(payloads)} site(s) answered, a federated search needs 2 ({said})"
        )


def agree_universe(payloads: dict[str, dict]) -> Universe:
    """The common probesets; what each site lacked goes to the log and the report."""
    universe = common_universe({site: p["probesets"] for site, p in payloads.items()})
    logger = get_run_logger()
    logger.info("common universe: %d probesets", len(universe.probesets))
    for site, lacked in universe.lacked.items():
        if lacked:
            logger.warning("site %s lacks %d probesets the others have", site, len(lacked))
    return universe


# Top-level parameters (as the signature search's): a run's --params merges key by key.
@flow(name="federated-search", flow_run_name=federated_run_name, validate_parameters=False)
@takes_fields_of(FederationParameters, hidden=frozenset())
def federated_search(**fields) -> dict:
    """Search one plan at several sites; combine their summaries in one global report."""
    redact_http_logs()
    params = FederationParameters(**fields)
    federation = load_sites(Path(params.sites_path))
    run_id = federation_run_id()
    common = {"federation_run": run_id, **params.site_search_fields()}
    names = [s.name for s in federation.sites]
    universes, failures = on_sites(
        federation, names, "site-universe", UNIVERSE_KIND, common, params
    )
    enough_sites(universes, failures, "universe")
    universe = agree_universe(universes)
    signatures = plan_batch(
        universe.probesets, params.n_signatures, params.min_len, params.max_len, params.seed, 1
    )
    plan = plan_sha256(signatures)
    search = {**common, "probesets": universe.probesets, "plan_sha256": plan}
    summaries, search_failures = on_sites(
        federation, sorted(universes), "site-search", SUMMARY_KIND, search, params
    )
    failures |= search_failures
    enough_sites(summaries, failures, "search")
    inputs = FederatedInputs(
        federation=federation,
        params=params,
        run_id=run_id,
        universe=universe,
        signatures=signatures,
        plan_sha256=plan,
        summaries=summaries,
        failures=failures,
    )
    report = write_federated_report(Path(params.results_dir), inputs)
    get_run_logger().info("global report: %s", report)
    return {"report": str(report), "sites": sorted(summaries), "failed_sites": failures}
