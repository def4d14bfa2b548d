"""Build a job with the real DCP SDK, offline, and export what DCP would hand a worker.

Usage: python -m tests.worktime.export_job SPEC_JSON OUT_FILE
(with SIGSEARCH_EXPORT_WORK_FUNCTION set to a function's text, that text is shipped)

The job is built exactly as the `dcp` backend builds it (`build_job`), then the SDK's own
`Job._before_exec()` turns it into what `exec()` submits: the BiFrost2 wrapper work
function, its argument vector and its input set (values, or URLs for a remote input set).
The record is written with dcp-client's KVIN, the serialization DCP itself uses between
client, scheduler and worker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXPORT = """(job, kvin) => kvin.serialize({
  workFunctionURI: String(job.workFunctionURI),
  worktime: { name: job.worktime, version: job.worktimeVersion },
  arguments: Array.from(job.jobArguments).map((a) => a instanceof URL ? { $url: a.href } : a),
  /* A RemoteDataSet holds hrefs; the job submits them as URLs (job/index.js marshalInputData). */
  inputData: job.jobInputData instanceof dcp.compute.RemoteDataSet
    ? Array.from(job.jobInputData, (href) => ({ $url: new URL(href).href }))
    : Array.from(job.jobInputData),
  resultStorageDetails: String(job.resultStorageDetails.href || job.resultStorageDetails),
  resultStorageParams: Object.assign({}, job.resultStorageParams),
  modules: Array.from(job.modules || []),
})"""


def export_job(spec: dict, out: Path) -> None:
    """Build the job from a JobSpec dict and write its worker-facing record."""
    import dcp
    import pythonmonkey as pm

    from tasks.execution.dcp import DcpOptions, build_job
    from tasks.execution.jobs import JobSpec

    if os.environ.get("SIGSEARCH_EXPORT_WORK_FUNCTION"):
        spec = {**spec, "work_source": os.environ["SIGSEARCH_EXPORT_WORK_FUNCTION"]}
    dcp.init()
    job = build_job(dcp, JobSpec(**spec), DcpOptions(job_name="worktime conformance"), None)
    job._before_exec()
    record = pm.eval(EXPORT)(job.js_ref, pm.globalThis.dcp["kvin"])
    out.write_text(record)


if __name__ == "__main__":
    export_job(json.loads(sys.argv[1]), Path(sys.argv[2]))
