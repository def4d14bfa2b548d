"""`python -m flows.federated deploy|run --sites sites.yaml`: a consortium's two commands.

`deploy` registers each site's `site-universe` and `site-search` deployments on that site's
work pool (a site then runs `prefect worker start --pool <its pool>` in its checkout);
`run` starts the coordinating flow, which needs the same Prefect server (PREFECT_API_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from flows.cli import StrictParser, add_option, describe, flag
from tasks.federation.parameters import FederationParameters
from tasks.federation.sites import Federation, SitesError

PROG = "python -m flows.federated"
PULL_STEPS: list[dict] = [{"flows.deploy_steps.set_project_directory": {}}]
SITE_FLOWS = {
    "site-universe": "flows/site.py:site_universe",
    "site-search": "flows/site.py:site_search",
}


def deploy_sites(federation: Federation) -> list[str]:
    """Create or update every site's two deployments (and a missing process pool)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from flows.site import site_search, site_universe

    flows = {"site-universe": site_universe, "site-search": site_search}
    made = []
    with get_client(sync_client=True) as client:
        for pool in sorted({s.work_pool for s in federation.sites}):
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        for name, entrypoint in SITE_FLOWS.items():
            flow_id = client.create_flow_from_name(name)
            schema = flows[name].parameters.model_dump_for_openapi()
            for site in federation.sites:
                client.create_deployment(
                    flow_id=flow_id,
                    name=site.name,
                    entrypoint=entrypoint,
                    work_pool_name=site.work_pool,
                    parameters={"site": site.name, **site.flow_parameters()},
                    parameter_openapi_schema=schema,
                    pull_steps=PULL_STEPS,
                    enforce_parameter_schema=False,
                    tags=["federation", federation.name],
                    description=f"{name} of site {site.name} (federation {federation.name})",
                )
                made.append(f"{name}/{site.name} on pool {site.work_pool}")
    return made


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`deploy --sites F` and `run --sites F [search options]`: the parser and `run`'s."""
    parser = argparse.ArgumentParser(prog=PROG, allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    deploy = commands.add_parser("deploy", help="register the sites' deployments")
    deploy.add_argument("--sites", dest="sites_path", required=True, help="the sites file (YAML)")
    run = commands.add_parser("run", help="run the coordinating flow once", allow_abbrev=False)
    for name, field in FederationParameters.model_fields.items():
        option = "--sites" if name == "sites_path" else flag(name)
        add_option(run, option, name, field)
    return parser, run


def main(argv: list[str]) -> int:
    """Deploy or run; a mistake is one line on stderr and exit code 2."""
    parser, run = build_parser()
    parsed, unknown = parser.parse_known_args(argv)
    if unknown:  # named with the nearest of `run`'s options, as `python -m flows` does
        message = f"unrecognized arguments: {' '.join(unknown)}"
        return _fail(message + StrictParser.nearest_option(run, message), 2)  # type: ignore[arg-type]
    args = vars(parsed)
    command = args.pop("command")
    if not os.environ.get("PREFECT_API_URL"):
        return _fail("a federated search needs a Prefect server: set PREFECT_API_URL", 2)
    try:
        params = FederationParameters(**args)
        from flows.federation import load_sites

        federation = load_sites(Path(params.sites_path))
    except ValidationError as exc:
        return _fail(describe(exc), 2)
    except (SitesError, ValueError, OSError) as exc:
        return _fail(str(exc), 2)
    if command == "deploy":
        for line in deploy_sites(federation):
            sys.stdout.write(f"deployed {line}\n")
        return 0
    from flows.federation import federated_search

    result = federated_search(**params.model_dump())
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
