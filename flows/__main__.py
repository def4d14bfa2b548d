"""`python -m flows`: run the signature-search flow once, without a deployment."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from flows.cli import PROG, SetupError, UsageError, check_inputs, parse_parameters
from flows.params import flow_arguments
from tasks.redact import redact_http_logs
from tasks.science.dataset import DatasetError

# The temporary Prefect server this starts has nobody to report to: without these it logs
# "Failed to send telemetry" offline, and its telemetry service can hit "database is locked".
# A loaded machine starts Prefect's temporary server in more than its default 20 s (seen: a
# run failing "Timed out while attempting to connect to ephemeral Prefect API server").
QUIET_PREFECT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}


def fail(message: str, code: int) -> int:
    """Say what went wrong in one line; return the exit code."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


class WithoutTraceback(logging.Formatter):
    """A console formatter that leaves tracebacks out (the run's log in Prefect keeps them)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        """The record's line as the inner formatter writes it, without exception or stack."""
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_tracebacks() -> None:
    """Terminal logs without tracebacks: a failure ends in one line saying what to do."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, WithoutTraceback
            ):
                handler.setFormatter(WithoutTraceback(handler.formatter))


def failure_advice(exc: BaseException) -> str:
    """What failed, in one line, and what to do about it."""
    from tasks.steps import failure_line

    line = failure_line(exc)
    # requests' errors are OSErrors too, but they are the network's, not the disk's.
    import requests

    network = isinstance(exc, ConnectionError | requests.RequestException)
    if isinstance(exc, OSError) and not network:
        return f"{line}; fix that (disk space, permissions, the folder) and run the same command again: it resumes"
    return f"{line}; the run's results so far are kept: run the same command again to resume it"


def main(argv: list[str] | None = None) -> int:
    """Check the options and inputs, run the flow once, and print where the report is."""
    redact_http_logs()  # worker URLs carry run tokens; urllib3 logs them at DEBUG
    try:
        params = parse_parameters(sys.argv[1:] if argv is None else argv)
        check_inputs(params)
    except SetupError as exc:  # nothing --help would answer
        return fail(str(exc), 2)
    except UsageError as exc:
        return fail(f"{exc}; see {PROG} --help", 2)
    except DatasetError as exc:
        return fail(str(exc), 2)
    for name, value in QUIET_PREFECT.items():
        os.environ.setdefault(name, value)
    from flows.contrasts import ContrastsFailed
    from flows.signature_search import NothingComputed, SlicesFailed, signature_search

    quiet_tracebacks()
    # Ends what the run started if it is killed (its temporary Prefect server, workers).
    subprocess.Popen(
        [sys.executable, "-m", "flows.watchdog", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        result = signature_search(**flow_arguments(params))
    except DatasetError as exc:  # found only once the data is prepared (validation_fraction)
        return fail(str(exc), 2)
    except (SlicesFailed, NothingComputed, ContrastsFailed) as exc:
        return fail(str(exc), 1)
    except Exception as exc:  # said in one line; the traceback is in the run's log
        return fail(failure_advice(exc), 1)
    if "contrasts" not in result:
        print_verdict(Path(result["report"]))
        print(f"Report: {result['report']}")
        return 0
    for name, report in result["contrasts"].items():  # a run of several contrasts
        print(f"Contrast {name}:")
        print_verdict(Path(report))
        print(f"Report: {report}")
    print(f"Index: {result['report']}")
    return 0


def print_verdict(report_html: Path) -> None:
    """The run's answer, from the report.json beside the report (skipped if unreadable)."""
    from tasks.report.verdict import verdict_lines

    try:
        record = json.loads(report_html.with_name("report.json").read_text())
    except (OSError, ValueError):
        return
    print("\n".join(verdict_lines(record)))


if __name__ == "__main__":
    sys.exit(main())
