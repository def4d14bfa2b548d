"""`python -m flows`: run the signature-search flow once, without a deployment."""

from __future__ import annotations

import os
import sys

from flows.cli import PROG, UsageError, check_inputs, parse_parameters
from flows.params import flow_arguments
from tasks.science.dataset import DatasetError

# The temporary Prefect server this starts has nobody to report to: without these it logs
# "Failed to send telemetry" offline, and its telemetry service can hit "database is locked".
QUIET_PREFECT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def fail(message: str, code: int) -> int:
    """Say what went wrong in one line; return the exit code."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """Check the options and inputs, run the flow once, and print where the report is."""
    try:
        params = parse_parameters(sys.argv[1:] if argv is None else argv)
        check_inputs(params)
    except UsageError as exc:
        return fail(f"{exc}; see {PROG} --help", 2)
    except DatasetError as exc:
        return fail(str(exc), 2)
    for name, value in QUIET_PREFECT.items():
        os.environ.setdefault(name, value)
    from flows.signature_search import SlicesFailed, signature_search

    try:
        result = signature_search(**flow_arguments(params))
    except DatasetError as exc:  # found only once the data is prepared (validation_fraction)
        return fail(str(exc), 2)
    except SlicesFailed as exc:
        return fail(str(exc), 1)
    print(f"Report: {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
