"""The real DCP SDK without a network: a dcp-config that points every service at a closed port."""

from __future__ import annotations

from pathlib import Path

CLOSED = "http://127.0.0.1:9"
OFFLINE_CONFIG = """({
  scheduler: {
    location: new URL('%(s)s/'), configLocation: false,
    services: {
      eventRouter: { location: new URL('%(s)s/') }, jobSubmit: { location: new URL('%(s)s/') },
      taskDistributor: { location: new URL('%(s)s/') }, resultSubmitter: { location: new URL('%(s)s/') },
      computeGroups: { location: new URL('%(s)s/') }, pheme: { location: new URL('%(s)s/') },
    },
  },
  bank: { location: new URL('%(s)s/'), services: { bankTeller: { location: new URL('%(s)s/') } } },
  packageManager: { location: new URL('%(s)s/') },
  dcp: { connectionOptions: { default: { connectTimeout: 2, lingerTimeout: 1 } } },
})"""


def offline_sdk_env(directory: Path) -> dict[str, str]:
    """Environment for `dcp.init()` to run offline (config file written into `directory`)."""
    config = directory / "dcp-config.js"
    config.write_text(OFFLINE_CONFIG % {"s": CLOSED})
    return {"DCP_CONFIG_LOCATION": config.as_uri(), "DCP_SCHEDULER_LOCATION": CLOSED}


def describe_job(job) -> dict:
    """What the built job would ship: work function, arguments, storage, modules, groups."""
    import pythonmonkey as pm

    js = job.js_ref
    href = pm.eval("(u) => (u && u.href) || String(u)")
    return {
        "work_function": job._get_raw_work_function(),
        "slices": list(pm.eval("(data) => Array.from(data, String)")(js.jobInputData)),
        "remote_inputs": bool(
            pm.eval("(d) => d instanceof dcp.compute.RemoteDataSet")(js.jobInputData)
        ),
        "arguments": [href(js.jobArguments[0]), href(js.jobArguments[1])],
        "result_storage": href(js.resultStorageDetails),
        "result_params": dict(js.resultStorageParams),
        "modules": list(js.modules),
        "compute_groups": [dict(g) for g in js.computeGroups],
        "public": dict(js.public),
        "slice_payment_offer": pm.eval(
            "(o) => o && o.paymentOffer !== undefined ? Number(o.paymentOffer) : null"
        )(js.slicePaymentOffer),
    }
