"""The `dcp` backend: the real DCP SDK (`dcp` + `pythonmonkey`), every call bounded in time.

The SDK runs in a child process: it can hang forever (seen: `job.exec()` never returns
when a keystore is missing), and a child process can always be killed. Preflight checks
fail fast, with what to do, before anything is deployed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import json
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tasks.execution.jobs import JobSpec, SliceEvent, drain
from tasks.science.work import WORK_MODULES

DEFAULT_SCHEDULER = "https://scheduler.distributed.computer"


class DcpOptions(BaseModel):
    """Options of the `dcp` backend; credentials come from blocks or environment, not here."""

    compute_group_block: str = Field(
        "", description="Prefect Secret block holding 'joinKey:joinSecret' (else DCP_COMPUTE_GROUP)"
    )
    id_keystore: str = Field("~/.dcp/id.keystore", description="identity keystore path")
    payment_keystore: str = Field("~/.dcp/default.keystore", description="payment keystore path")
    slice_payment_offer: float | None = Field(
        None, ge=0, description="compute credits offered per slice (empty: market rate)"
    )
    job_name: str = Field("signature-search", description="public job name")
    remote_workers: bool = Field(
        True, description="workers run elsewhere, so the server URL must not be loopback"
    )
    sdk_timeout: float = Field(60.0, gt=0, description="seconds allowed for each call into the SDK")
    cancel_timeout: float = Field(
        30.0, gt=0, description="seconds allowed to cancel a job on DCP when a round ends"
    )
    parallel_slices: int = Field(
        8, ge=1, description="slices expected to run at once on DCP (bounds each round's time)"
    )
    remote_inputs: bool = Field(
        True,
        description="slices and config are URLs on the server that workers fetch, so the "
        "scheduler never sees probesets, labels, folds or seed",
    )


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


RESOURCES = Path(__file__).parent / "resources"
WORKTIME_SOURCE = "js/node_modules/dcp-client/libexec/sandbox/pyodide-worktime.js"


def requested_worktime() -> str:
    """The Pyodide worktime version jobs request (`^<version>`), read from the installed SDK.

    dcp-client registers the worktime in its sandbox code; the job asks for `^` that version.
    The SDK's own `resources/pyodide-lock.json` is an older Pyodide, not what workers run.
    """
    spec = importlib.util.find_spec("dcp")
    if spec is None or not spec.submodule_search_locations:
        raise DcpError("the 'dcp' package is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / WORKTIME_SOURCE
    found = re.search(r"name:\s*'pyodide',\s*version:\s*'([0-9.]+)'", source.read_text())
    if found is None:
        raise DcpError(f"cannot read the Pyodide worktime version from {source}")
    return found.group(1)


def pyodide_packages(worktime: str) -> dict[str, str]:
    """name -> version of the packages DCP workers of a worktime version can load.

    From the official lock file of the Pyodide release workers run for that worktime
    (kept in tasks/resources/ with its provenance: workers cannot be asked).
    """
    major_minor = ".".join(worktime.split(".")[:2])
    locks = sorted(RESOURCES.glob(f"pyodide-{major_minor}.*-packages.json"))
    if not locks:
        raise DcpError(
            f"DCP workers run Pyodide {worktime}, for which no package list is bundled "
            f"(tasks/resources/): this release of signature-search does not support it"
        )
    return json.loads(locks[-1].read_text())["packages"]


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


def preflight(
    opts: DcpOptions, server_url: str, group: ComputeGroup | None, timeout: float = 5.0
) -> None:
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
    try:
        worktime = requested_worktime()
        missing = [m for m in WORK_MODULES if m not in pyodide_packages(worktime)]
        if missing:
            problems.append(f"modules {missing} are not in Pyodide {worktime}'s lock file")
    except DcpError as exc:
        problems.append(str(exc))
    location = scheduler_location()
    parts = urlsplit(location)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        problems.append(f"scheduler {location} unreachable within {timeout:g}s ({exc})")
    if problems:
        raise DcpError("DCP preflight failed:\n- " + "\n- ".join(problems))


def build_job(dcp, spec: JobSpec, opts: DcpOptions, group: ComputeGroup | None):
    """Create the real job with `compute_for`, as the original example did (SDK initialised)."""
    import pythonmonkey as pm

    from tasks.science import work

    make_url = pm.eval("(href) => new URL(href)")
    if spec.remote_inputs:  # DCP's remote input set: each worker fetches its slice's URL
        inputs, config = dcp.compute.RemoteDataSet(list(spec.slices)), make_url(spec.config_json)
    else:
        inputs, config = list(spec.slices), spec.config_json
    job = dcp.compute_for(inputs, work.evaluate_slice, [make_url(spec.dataset_url), config])
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


def slice_number_of(event) -> int | None:
    """The slice number of a job event, or None: schedulers do not always send one."""
    try:
        value = event.get("sliceNumber")
        return None if value is None else int(value)
    except (AttributeError, TypeError, ValueError):
        return None


async def supervise(job, offer, stop_reason, emit, cancel_timeout: float) -> None:
    """Deploy a job, then wait until it completes or `stop_reason()` says why to end it.

    Nothing ties a DCP job to its client: when the round ends or the flow process goes,
    the job is cancelled here, bounded by `cancel_timeout`.
    """
    job_id = await job.aio.exec(offer)
    emit("accepted", message=str(job_id))
    complete = job.aio.wait()
    while not complete.done():
        await asyncio.wait([complete], timeout=0.5)
        reason = stop_reason()
        if reason is not None and not complete.done():
            try:
                await asyncio.wait_for(job.js_ref.cancel(reason), cancel_timeout)
                emit("cancelled", message=f"{job_id}: {reason}")
            except Exception as exc:  # noqa: BLE001 - reported; the parent falls back
                emit("cancel_failed", message=f"{job_id}: {type(exc).__name__}: {exc}")
            return
    emit("done", message=str(job_id))


def stop_reasons(control: Connection, parent_pid: int):
    """A `stop_reason()` for `supervise`: a request from the parent, SIGTERM, or its death."""
    terminated = []
    signal.signal(signal.SIGTERM, lambda *_: terminated.append("the DCP client was terminated"))

    def stop_reason() -> str | None:
        if control.poll():
            return control.recv()
        if terminated:
            return terminated[0]
        if os.getppid() != parent_pid:
            return "the flow process ended"
        return None

    return stop_reason


def _client_main(
    spec: JobSpec, opts: DcpOptions, group, events, control: Connection, parent_pid: int
):
    """Child process: initialise the SDK, deploy, forward job events, end the job."""

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
        job.on("result", lambda ev: emit("result", slice_number_of(ev)))
        job.on("error", lambda ev: emit("error", slice_number_of(ev), _message_of(ev)))
        job.on("nofunds", lambda ev: emit("nofunds", message="payment account out of funds"))
        offer = opts.slice_payment_offer
        offer = offer if offer is not None else dcp.compute.marketValue().js_ref
        stop_reason = stop_reasons(control, parent_pid)
        # The SDK's own event loop (dcp.dry.aio), on which its futures resolve.
        asyncio.get_event_loop().run_until_complete(
            supervise(job, offer, stop_reason, emit, opts.cancel_timeout)
        )
    except Exception as exc:  # reported to the flow, which ends the round
        emit("failed", message=f"{type(exc).__name__}: {exc}")


def _message_of(event) -> str:
    try:
        return str(event.get("message") or event.get("code") or "")
    except AttributeError:
        return str(event)


def cancel_job_by_id(job_id: str, opts: DcpOptions) -> None:
    """Child process: cancel a deployed job by id with the owner's keystore."""
    import dcp

    dcp.init()
    from dcp import wallet

    owner = wallet.get(str(Path(opts.id_keystore).expanduser())).js_ref
    dcp.compute.cancel(job_id, owner)


@dataclass
class DcpJob:
    """A job deployed through the SDK in a child process; every wait is bounded."""

    spec: JobSpec
    opts: DcpOptions
    group: ComputeGroup | None
    job_id: str = field(default_factory=lambda: "dcp-pending-" + uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._control, child_control = ctx.Pipe()
        self._local: queue.Queue = queue.Queue()
        self._process = ctx.Process(
            target=_client_main,
            daemon=True,
            args=(self.spec, self.opts, self.group, self._queue, child_control, os.getpid()),
        )
        self._started = time.monotonic()
        self._accepted = False
        self._finished = False
        self._ending = ""
        self._ended = threading.Event()
        self._process.start()
        self._pump = threading.Thread(target=self._forward, daemon=True)
        self._pump.start()

    def _forward(self) -> None:
        while not self._ended.is_set():
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
            if event.kind in ("done", "failed", "cancelled", "cancel_failed"):
                self._ending = event.kind
                self._finished = True
                self._ended.set()

    def _fail(self, message: str) -> None:
        self._local.put(SliceEvent("failed", message=message))
        self._finished = True
        self._ended.set()
        self._process.kill()

    def events(self, timeout: float) -> list[SliceEvent]:
        """Events since the last call."""
        return drain(self._local, timeout)

    def done(self) -> bool:
        """True once the job completed, failed or was cancelled."""
        return self._finished and self._local.empty()

    def cancel(self, reason: str = "the round ended") -> None:
        """End the job on DCP (bounded), then the client process."""
        if self._process.is_alive() and not self._finished:
            self._control.send(reason)
            self._ended.wait(self.opts.cancel_timeout + 5)
        self._finished = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=10)
        if self._accepted and self._ending not in ("done", "cancelled"):
            self._cancel_by_id()

    def _cancel_by_id(self) -> None:
        """The client could not cancel: cancel the job by id from a fresh SDK (bounded)."""
        process = mp.get_context("spawn").Process(
            target=cancel_job_by_id, args=(self.job_id, self.opts), daemon=True
        )
        process.start()
        process.join(self.opts.cancel_timeout)
        ok = process.exitcode == 0
        if process.is_alive():
            process.kill()
        self._ending = "cancelled" if ok else "cancel_failed"
        self._local.put(SliceEvent(self._ending, message=f"{self.job_id}: cancel by id"))


@dataclass
class DcpBackend:
    """Deploys jobs on DCP; the preflight runs when it is made, before any deployment."""

    opts: DcpOptions
    server_url: str
    group: ComputeGroup | None

    def __post_init__(self) -> None:
        preflight(self.opts, self.server_url, self.group)

    @property
    def parallelism(self) -> int:
        """Slices expected to run at once (DCP does not say in advance)."""
        return self.opts.parallel_slices

    @property
    def remote_inputs(self) -> bool:
        """Whether jobs carry URLs of slice data and config instead of the data."""
        return self.opts.remote_inputs

    def deploy(self, spec: JobSpec) -> DcpJob:
        """Deploy through the SDK in a child process."""
        return DcpJob(spec, self.opts, self.group)
