"""The `dcp` backend: the real DCP SDK (`dcp` + `pythonmonkey`), every call bounded in time.

The SDK runs in a child process: it can hang forever (seen: `job.exec()` never returns
when a keystore is missing), and a child process can always be killed. Preflight checks
fail fast, with what to do, before anything is deployed.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import multiprocessing as mp
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .jobs import JobSpec, SliceEvent, drain
from .work import WORK_MODULES

DEFAULT_SCHEDULER = "https://scheduler.distributed.computer"


class DcpError(RuntimeError):
    """A DCP deployment problem, with what to do about it."""


@dataclass(frozen=True)
class ComputeGroup:
    """A compute group's join credentials (never logged)."""

    join_key: str
    join_secret: str = field(repr=False)


def compute_group_from(block_name: str) -> ComputeGroup | None:
    """Credentials from a Prefect Secret block ('key:secret'), else DCP_COMPUTE_GROUP, else None."""
    value = os.environ.get("DCP_COMPUTE_GROUP", "")
    if block_name:
        from prefect.blocks.system import Secret

        value = Secret.load(block_name).get()
    if not value:
        return None
    key, sep, secret = str(value).partition(":")
    if not sep or not key or not secret:
        raise DcpError("compute group credentials must look like 'joinKey:joinSecret'")
    return ComputeGroup(key, secret)


def pyodide_packages() -> set[str]:
    """Package names in the SDK's Pyodide lock file (what DCP workers can load)."""
    spec = importlib.util.find_spec("dcp")
    if spec is None or not spec.submodule_search_locations:
        raise DcpError("the 'dcp' package is not installed")
    lock = Path(next(iter(spec.submodule_search_locations))) / "resources" / "pyodide-lock.json"
    return set(json.loads(lock.read_text())["packages"])


def scheduler_location() -> str:
    """The scheduler the SDK will talk to."""
    return os.environ.get("DCP_SCHEDULER_LOCATION") or DEFAULT_SCHEDULER


def is_loopback(url: str) -> bool:
    """True for localhost/127.x/::1 URLs, which remote workers cannot reach."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preflight(opts, server_url: str, group: ComputeGroup | None, timeout: float = 5.0) -> None:
    """Check keystores, credentials, the server URL and the scheduler; raise DcpError listing all."""
    problems = []
    for label, path in (("identity", opts.id_keystore), ("payment", opts.payment_keystore)):
        full = Path(path).expanduser()
        if not full.is_file() or not os.access(full, os.R_OK):
            problems.append(
                f"{label} keystore {full} is missing or unreadable "
                "(get keystores from your DCP account; see README 'Running on DCP')"
            )
    if group is None:
        problems.append(
            "no compute group: set the Prefect Secret block named by "
            "dcp.compute_group_block, or DCP_COMPUTE_GROUP='joinKey:joinSecret'"
        )
    if opts.remote_workers and is_loopback(server_url):
        problems.append(
            f"server URL {server_url} is loopback; remote workers cannot reach it: "
            "run `python -m server --host 0.0.0.0 --public-url ...` and set server_url"
        )
    missing = [m for m in WORK_MODULES if m not in pyodide_packages()]
    if missing:
        problems.append(f"modules {missing} are not in DCP's Pyodide lock file")
    location = scheduler_location()
    parts = urlsplit(location)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        problems.append(f"scheduler {location} unreachable within {timeout:g}s ({exc})")
    if problems:
        raise DcpError("DCP preflight failed:\n- " + "\n- ".join(problems))


def build_job(dcp, spec: JobSpec, opts, group: ComputeGroup | None):
    """Create the real job with `compute_for`, as the original example did (SDK initialised)."""
    import pythonmonkey as pm

    from . import work

    make_url = pm.eval("(href) => new URL(href)")
    job = dcp.compute_for(
        list(spec.slices), work.evaluate_slice, [make_url(spec.dataset_url), spec.config_json]
    )
    job.public = {
        "name": opts.job_name,
        "description": spec.name,
        "link": "https://github.com/Distributive-Network",
    }
    if group is not None:
        job.computeGroups = [{"joinKey": group.join_key, "joinSecret": group.join_secret}]
    job.modules = list(WORK_MODULES)
    job.setResultStorage(spec.result_url, dict(spec.result_params))
    if opts.slice_payment_offer is not None:
        job.js_ref.setSlicePaymentOffer(opts.slice_payment_offer)
    return job


def describe_job(job) -> dict:
    """What the built job would ship: work function, arguments, storage, modules, groups."""
    import pythonmonkey as pm

    js = job.js_ref
    href = pm.eval("(u) => (u && u.href) || String(u)")
    return {
        "work_function": job._get_raw_work_function(),
        "slices": list(js.jobInputData),
        "arguments": [href(js.jobArguments[0]), js.jobArguments[1]],
        "result_storage": href(js.resultStorageDetails),
        "result_params": dict(js.resultStorageParams),
        "modules": list(js.modules),
        "compute_groups": [dict(g) for g in js.computeGroups],
        "public": dict(js.public),
        "slice_payment_offer": pm.eval(
            "(o) => o && o.paymentOffer !== undefined ? Number(o.paymentOffer) : null"
        )(js.slicePaymentOffer),
    }


def _client_main(spec: JobSpec, opts, group, events) -> None:
    """Child process: initialise the SDK, deploy, forward job events, wait for completion."""

    def emit(kind, element=None, message=""):
        events.put(SliceEvent(kind, element, None, str(message)[:500]))

    try:
        import dcp

        dcp.init()
        from dcp import wallet

        dcp.identity.set(wallet.get(str(Path(opts.id_keystore).expanduser())).js_ref)
        wallet.add(wallet.get(str(Path(opts.payment_keystore).expanduser())).js_ref)
        job = build_job(dcp, spec, opts, group)
        job.on("readystatechange", lambda state: emit("log", message=f"state {state}"))
        job.on("accepted", lambda _: emit("accepted", message=job.id))
        job.on("result", lambda ev: emit("result", int(ev["sliceNumber"])))
        job.on("error", lambda ev: emit("error", int(ev["sliceNumber"]), ev.get("message", "")))
        job.on("nofunds", lambda ev: emit("nofunds", message="payment account out of funds"))
        offer = opts.slice_payment_offer
        job.exec(offer if offer is not None else dcp.compute.marketValue().js_ref)
        job.wait()
        emit("done", message=job.id)
    except Exception as exc:  # reported to the flow, which ends the round
        emit("failed", message=f"{type(exc).__name__}: {exc}")


@dataclass
class DcpJob:
    """A job deployed through the SDK in a child process; every wait is bounded."""

    spec: JobSpec
    opts: object
    group: ComputeGroup | None
    job_id: str = field(default_factory=lambda: "dcp-pending-" + uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._local: queue.Queue = queue.Queue()
        self._process = ctx.Process(
            target=_client_main,
            daemon=True,
            args=(self.spec, self.opts, self.group, self._queue),
        )
        self._started = time.monotonic()
        self._accepted = False
        self._finished = False
        self._process.start()
        self._pump = threading.Thread(target=self._forward, daemon=True)
        self._pump.start()

    def _forward(self) -> None:
        while not self._finished:
            try:
                event = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._accepted and time.monotonic() - self._started > self.opts.sdk_timeout:
                    self._fail(
                        f"no 'accepted' from the scheduler within {self.opts.sdk_timeout:g}s"
                    )
                elif not self._process.is_alive() and self._queue.empty():
                    self._fail("DCP client process ended without completing the job")
                continue
            if event.kind == "accepted":
                self._accepted, self.job_id = True, event.message
            self._local.put(event)
            if event.kind in ("done", "failed"):
                self._finished = True

    def _fail(self, message: str) -> None:
        self._local.put(SliceEvent("failed", message=message))
        self._finished = True
        self._process.kill()

    def events(self, timeout: float) -> list[SliceEvent]:
        """Events since the last call."""
        return drain(self._local, timeout)

    def done(self) -> bool:
        """True once the job completed or failed."""
        return self._finished and self._local.empty()

    def cancel(self) -> None:
        """Stop the client process (DCP stops the job when its client goes)."""
        self._finished = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=10)


@dataclass
class DcpBackend:
    """Deploys jobs on DCP; the preflight runs when it is made, before any deployment."""

    opts: object
    server_url: str
    group: ComputeGroup | None

    def __post_init__(self) -> None:
        preflight(self.opts, self.server_url, self.group)

    def deploy(self, spec: JobSpec, first_attempt: bool = True) -> DcpJob:
        """Deploy through the SDK in a child process."""
        return DcpJob(spec, self.opts, self.group)
