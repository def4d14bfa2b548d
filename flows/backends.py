"""Backend selection from the flow's parameters."""

from __future__ import annotations

import os

from prefect import get_run_logger

from tasks.execution.jobs import Backend
from tasks.execution.local import FaultPlan, LocalBackend
from tasks.parameters import FAULTS_VARIABLE, SearchParameters


def make_backend(params: SearchParameters, server_url: str) -> Backend:
    """The configured backend (each says how many slices it runs at once)."""
    if params.backend == "local":
        if params.faults:
            get_run_logger().warning("injecting faults %s (%s)", params.faults, FAULTS_VARIABLE)
        workers = params.workers or os.cpu_count() or 1
        backend = LocalBackend(
            workers=workers,
            allowed_origins=(server_url,),
            slice_timeout=params.slice_timeout,
            faults=FaultPlan.from_dict(params.faults),
        )
        return backend
    from tasks.execution.dcp import DcpBackend, compute_group_from

    group = compute_group_from(params.dcp.compute_group_block)
    return DcpBackend(params.dcp, server_url, group)
