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
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from tasks.execution.jobs import JobSpec, SliceEvent, drain
from tasks.schema import optional_fields_as_their_types
from tasks.science.work import WORK_MODULES

DEFAULT_SCHEDULER = "https://scheduler.distributed.computer"


class DcpOptions(BaseModel):
    """Options of the `dcp` backend; credentials come from blocks or environment, not here."""

    model_config = ConfigDict(json_schema_extra=optional_fields_as_their_types)
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
    target_slice_seconds: float = Field(
        250.0,
        gt=0,
        description="compute seconds a slice is packed to fill on a worker (Pyodide), so that "
        "a fresh sandbox's fixed cost stays under 10% of it (tasks/execution/sizing.py)",
    )
    remote_inputs: bool = Field(
        True,
        description="slices and config are URLs on the server that workers fetch, so the "
        "scheduler never sees probesets, labels, folds or seed",
    )
    remote_work_function: bool = Field(
        True,
        description="the job carries a stub; workers fetch the work function's source from the "
        "server (checked by sha256), so the scheduler never sees the method or classifiers",
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

        block = Secret.load(block_name)
        # Prefect's async_dispatch types it `Secret | Coroutine`; called from sync code, a block.
        assert isinstance(block, Secret), "compute group loaded from async code"
        value = block.get()
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

    make_url = pm.eval("(href) => new URL(href)")
    if spec.remote_inputs:  # DCP's remote input set: each worker fetches its slice's URL
        inputs, config = dcp.compute.RemoteDataSet(list(spec.slices)), make_url(spec.config_json)
    else:
        inputs, config = list(spec.slices), spec.config_json
    arguments = [make_url(spec.dataset_url), config]
    if spec.work_url is not None:  # the remote stub's source: fetched by workers like the data
        arguments.append(make_url(spec.work_url))
    job = dcp.compute_for(inputs, spec.work_source, arguments)
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


def slice_number_of(event) -> int | None:
    """The slice number of a job event, or None: schedulers do not always send one."""
    try:
        value = event.get("sliceNumber")
        return None if value is None else int(value)
    except (AttributeError, TypeError, ValueError):
        return None


# --- The client (child process) -------------------------------------------------------------
# Events the child sends. "deploying" carries the job id before the job can exist on DCP;
# "done" and "cancelled" confirm the job's end on DCP; "stopped" says nothing was deployed.
CONFIRMED_END = ("done", "cancelled")
CHILD_END = ("done", "cancelled", "cancel_failed", "failed", "stopped")
EPERM_ORIGIN_ERRORS = 3  # this many slice errors in a row, all EPERM_ORIGIN, none a result


@dataclass
class ClientSession:
    """The child's side of a job: events to the parent and why to stop."""

    events: Connection
    stop_reason: Callable[[], str | None]
    job_id: str | None = None

    def emit(self, kind: str, element: int | None = None, message: str = "") -> None:
        """Send an event; a pipe write, so it has left this process once this returns."""
        try:
            self.events.send(SliceEvent(kind, element, None, str(message)[:500]))
        except OSError:  # the flow process is gone; stop_reason() says so
            pass

    def deploying(self, job_id: str) -> None:
        """Report the job id before the job is submitted, so that it can always be cancelled."""
        self.job_id = str(job_id)
        self.emit("deploying", message=self.job_id)


async def supervise(execution, cancel, session: ClientSession, cancel_timeout: float) -> None:
    """Wait for a job's execution to end; end it on DCP when `session.stop_reason()` says why.

    `execution` completes with the job (or raises why it failed); `cancel(reason)` cancels it
    on DCP. Before the id was reported nothing is on DCP, so stopping needs no cancel.
    """
    execution = asyncio.ensure_future(execution)
    while not execution.done():
        await asyncio.wait([execution], timeout=0.5)
        reason = session.stop_reason()
        if reason is not None and not execution.done():
            await end_job(cancel, reason, session, cancel_timeout)
            return
    if execution.exception() is not None:
        session.emit("failed", message=job_failure_reason(execution.exception()))
    else:
        session.emit("done", message=str(session.job_id))


async def end_job(cancel, reason: str, session: ClientSession, cancel_timeout: float) -> None:
    """Cancel the job on DCP (bounded) if it was submitted; report how it ended."""
    if session.job_id is None:
        session.emit("stopped", message=f"before deployment: {reason}")
        return
    try:
        await asyncio.wait_for(cancel(reason), cancel_timeout)
        session.emit("cancelled", message=f"{session.job_id}: {reason}")
    except Exception as exc:  # reported; the parent cancels by id
        session.emit("cancel_failed", message=f"{session.job_id}: {type(exc).__name__}: {exc}")


# Known DCP failure codes -> what happened and what to do (one line each).
FAILURE_ADVICE = (
    ("ENOFUNDS", "the payment account has no funds to deploy the job: add compute credits to it"),
    (
        "DCPL-1100",
        "the job could not join its compute group: check the join key and secret "
        "(README 'Running on DCP', step 2)",
    ),
    (
        "ENOPROGRESS",
        "DCP cancelled the job: a slice reported no progress (ENOPROGRESS)",
    ),
    (
        "ETOOMANYERRORS",
        "DCP cancelled the job: too many slices failed (ETOOMANYERRORS); see the slice errors",
    ),
    (
        "ESLICETOOSLOW",
        "DCP cancelled the job: its slices run longer than DCP allows (ESLICETOOSLOW); "
        "use fewer --signatures-per-slice",
    ),
    ("unlock", "a keystore could not be unlocked: check the keystores (README 'Running on DCP')"),
)


def job_failure_reason(exc: BaseException | str) -> str:
    """One line saying why a job failed as a whole, with what to do where that is known."""
    text = " ".join(str(exc).split())
    if isinstance(exc, DcpError):
        return text[:400]
    for code, advice in FAILURE_ADVICE:
        if code.lower() in text.lower():
            return f"{advice} ({text[:200]})"
    return f"DCP refused or ended the job: {text[:300]}"


def stop_reasons(control: Connection, parent_pid: int):
    """A `stop_reason()` for `supervise`: a request from the parent, SIGTERM, or its death."""
    terminated = []
    signal.signal(signal.SIGTERM, lambda *_: terminated.append("the DCP client was terminated"))

    def stop_reason() -> str | None:
        try:
            if control.poll():
                return control.recv()
        except (EOFError, OSError):
            return "the flow process ended"
        if terminated:
            return terminated[0]
        if os.getppid() != parent_pid:
            return "the flow process ended"
        return None

    return stop_reason


def _client_main(client, spec: JobSpec, opts: DcpOptions, group, events, control, parent_pid):
    """Child process: run `client` (the SDK, or a stand-in) with a session to the parent."""
    session = ClientSession(events, stop_reasons(control, parent_pid))
    try:
        client(spec, opts, group, session)
    except Exception as exc:  # reported to the flow, which ends the round
        session.emit("failed", message=job_failure_reason(exc))


def _keystore(wallet, path: str, label: str):
    """A keystore from a file, or DcpError saying which one and what to do."""
    full = Path(path).expanduser()
    try:
        return wallet.get(str(full)).js_ref
    except Exception as exc:  # the SDK raises JS errors of many kinds
        first = " ".join(str(exc).split())[:200]
        raise DcpError(
            f"the {label} keystore {full} could not be loaded ({first}): "
            "check the file (README 'Running on DCP', step 1)"
        ) from None


def listen(job, session: ClientSession) -> None:
    """Forward the SDK job's events; report its id when it is about to be submitted."""
    js = job.js_ref

    def on_state(state) -> None:
        # dcp-client's deployJob() sets 'deploying' right before it submits the job (job/index.js)
        if str(state) == "deploying":
            session.deploying(str(js.id))
        session.emit("log", message=f"state {state}")

    js.on("readyStateChange", on_state)
    js.on("accepted", lambda *_: session.emit("accepted", message=str(js.id)))
    js.on(
        "cancel", lambda *ev: session.emit("cancelled", message=f"{js.id}: on DCP: {_reason(ev)}")
    )
    js.on("nofunds", lambda *_: session.emit("nofunds", message="payment account out of funds"))
    job.on("result", lambda ev: session.emit("result", slice_number_of(ev)))
    job.on("error", lambda ev: session.emit("error", slice_number_of(ev), _message_of(ev)))


def _reason(args) -> str:
    try:
        return str(args[0].get("reason") or args[0].get("code") or "")
    except (AttributeError, IndexError):
        return ""


def sdk_client(spec: JobSpec, opts: DcpOptions, group, session: ClientSession) -> None:
    """The real SDK: initialise, deploy, forward job events, end the job when told."""
    import dcp

    dcp.init()
    from dcp import wallet

    dcp.identity.set(_keystore(wallet, opts.id_keystore, "identity"))
    wallet.add(_keystore(wallet, opts.payment_keystore, "payment"))
    job = build_job(dcp, spec, opts, group)
    listen(job, session)
    offer = opts.slice_payment_offer
    offer = offer if offer is not None else dcp.compute.marketValue().js_ref

    async def run() -> None:
        # What the SDK's job.aio.exec does, but keeping exec's promise: the SDK's own drops it,
        # so a rejected deployment would never end its future.
        job._before_exec()
        job._wrapper_set_attribute("_exec_called", True)
        execution = job.js_ref.exec(offer)
        cancel = lambda reason: job.js_ref.cancel(reason)  # noqa: E731 - `this` stays the job
        await supervise(execution, cancel, session, opts.cancel_timeout)

    # The SDK's own event loop (dcp.dry.aio), on which its futures resolve.
    asyncio.get_event_loop().run_until_complete(run())


def _message_of(event) -> str:
    try:
        code = event.get("code") or event.get("errorCode") or ""
        message = event.get("message") or ""
        return " ".join(str(part) for part in (code, message) if part)
    except AttributeError:
        return str(event)


def cancel_job_by_id(job_id: str, opts: DcpOptions) -> None:
    """Child process: cancel a deployed job by id with a fresh SDK, as its owner."""
    import dcp

    dcp.init()
    from dcp import wallet

    dcp.identity.set(_keystore(wallet, opts.id_keystore, "identity"))
    # The job's owner is its payment account (dcp-client job/index.js cancel(): owner is
    # paymentAccountKeystore.address), so that keystore signs the cancel.
    owner = _keystore(wallet, opts.payment_keystore, "payment")
    dcp.compute.cancel(job_id, owner)


# --- The job handle (flow process) ----------------------------------------------------------


@dataclass
class DcpJob:
    """A job deployed by a client in a child process; every wait is bounded.

    Every job whose id the client reported and whose end on DCP was not confirmed is
    cancelled once: by the client, else by id from a fresh SDK. `done()` and `cancel()`
    return only after that, so no round redeploys slices that may still run.
    """

    spec: JobSpec
    opts: DcpOptions
    group: ComputeGroup | None
    client: Callable = sdk_client  # the child's SDK part (tests give a stand-in)
    canceller: Callable = cancel_job_by_id  # run in a fresh process: (job_id, opts)
    job_id: str = field(default_factory=lambda: "dcp-pending-" + uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._events, child_events = ctx.Pipe(duplex=False)
        child_control, self._control = ctx.Pipe(duplex=False)
        self._local: queue.Queue = queue.Queue()
        self._process = ctx.Process(
            target=_client_main,
            daemon=True,
            args=(self.client, self.spec, self.opts, self.group, child_events, child_control)
            + (os.getpid(),),
        )
        self._started = time.monotonic()
        self._deployed = self._accepted = self._confirmed = self._child_ended = False
        self._settled = False  # the client said it submitted nothing
        self._failure = ""  # the one job-level failure reported, if any
        self._stop, self._stop_sent = "", 0.0
        self._results = self._errors = self._eperm = 0
        self._finished = False
        self._ended = threading.Event()
        self._process.start()
        child_events.close()  # so that the parent sees EOF when the child is gone
        child_control.close()
        self._pump = threading.Thread(target=self._run, daemon=True)
        self._pump.start()

    def _run(self) -> None:
        try:
            while not self._child_ended:
                self._receive(0.5)
                self._check_time()
                self._apply_stop()
        finally:
            self._wind_up()

    def _receive(self, timeout: float) -> None:
        try:
            if self._events.poll(timeout):
                self._on_event(self._events.recv())
        except (EOFError, OSError):
            self._child_ended = True

    def _on_event(self, event: SliceEvent) -> None:
        kind = event.kind
        if kind in ("deploying", "accepted"):
            self._deployed, self.job_id = True, event.message or self.job_id
            self._accepted = self._accepted or kind == "accepted"
        elif kind == "result":
            self._results += 1
        elif kind == "error":
            self._note_error(event.message)
        elif kind == "nofunds":  # DCP pauses such a job: it would wait out the round
            self._job_failed(
                "the payment account has no funds: add compute credits to it, or lower "
                "--dcp.slice-payment-offer; the paused job is cancelled"
            )
            return
        elif kind == "stopped":  # the client went before submitting: nothing is on DCP
            self._settled = True
            event = SliceEvent("cancelled", message=event.message)
        if kind in CONFIRMED_END:
            self._confirmed = True
        if kind in CHILD_END:
            self._child_ended = True
        if kind == "failed" and not self._failure:
            self._failure = event.message
        elif self._failure and kind in ("failed", "cancelled", "stopped"):
            # After the one job-level failure, further ends are only logged: run.json keeps it.
            event = SliceEvent("log", message=f"{kind}: {event.message}")
        self._local.put(event)

    def _note_error(self, message: str) -> None:
        """A job no worker can reach the server from fails as a whole (EPERM_ORIGIN)."""
        self._errors += 1
        self._eperm += "EPERM_ORIGIN" in message
        limit = min(EPERM_ORIGIN_ERRORS, max(1, len(self.spec.slices)))
        if not self._results and self._eperm == self._errors >= limit:
            parts = urlsplit(self.spec.result_url)
            self._job_failed(
                f"workers could not reach {parts.scheme}://{parts.netloc}: add it to their "
                "allowed origins (README 'Running on DCP', step 4)"
            )

    def _job_failed(self, reason: str) -> None:
        """Report the job-level failure once, now; then end the job."""
        if not self._failure:
            self._failure = reason
            self._local.put(SliceEvent("failed", message=reason))
        self._stop = self._stop or reason

    def _check_time(self) -> None:
        late = time.monotonic() - self._started > self.opts.sdk_timeout
        if not self._accepted and late and not self._stop:
            self._job_failed(
                f"no 'accepted' from the scheduler within {self.opts.sdk_timeout:g}s: check "
                "the scheduler and the network, or raise --dcp.sdk-timeout"
            )

    def _apply_stop(self) -> None:
        if not self._stop or self._child_ended:
            return
        if not self._deployed:  # nothing on DCP yet: the client can simply go
            self._process.kill()
        elif not self._stop_sent:
            self._stop_sent = time.monotonic()
            try:
                self._control.send(self._stop)
            except OSError:
                self._process.kill()
        elif time.monotonic() - self._stop_sent > self.opts.cancel_timeout + 5:
            self._process.kill()  # it did not end its job in time; cancelled by id below

    def _wind_up(self) -> None:
        """The client is gone: read what it said last, cancel by id if needed, finish."""
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(10)
        self._drain()
        if not self._deployed and not self._failure and not self._stop:
            self._job_failed(f"the DCP client ended before deploying ({self._exit_status()})")
        elif not self._deployed and not self._settled:
            self._local.put(SliceEvent("cancelled", message=f"before deployment: {self._stop}"))
        elif not self._confirmed:
            if not self._failure and not self._stop:
                self._job_failed(f"the DCP client ended before the job did ({self._exit_status()})")
            self._cancel_by_id()
        self._finished = True
        self._ended.set()

    def _drain(self) -> None:
        """Read what the client wrote before it went (a job id, say)."""
        try:
            while self._events.poll(0):
                self._on_event(self._events.recv())
        except (EOFError, OSError):
            pass

    def _exit_status(self) -> str:
        return f"exit status {self._process.exitcode}"

    def _cancel_by_id(self) -> None:
        """The client could not end the job: cancel it by id from a fresh SDK (bounded)."""
        process = mp.get_context("spawn").Process(
            target=self.canceller, args=(self.job_id, self.opts), daemon=True
        )
        process.start()
        process.join(self.opts.cancel_timeout)
        if process.is_alive():
            process.kill()
            process.join(10)
        message = f"{self.job_id}: cancelled by id ({self._stop or self._failure})"
        if process.exitcode != 0:
            kind, message = "cancel_failed", f"{self.job_id}: cancel by id failed: {message}"
        else:
            kind = "log" if self._failure else "cancelled"
            self._confirmed = True
        self._local.put(SliceEvent(kind, message=message))

    def events(self, timeout: float) -> list[SliceEvent]:
        """Events since the last call."""
        return drain(self._local, timeout)

    def done(self) -> bool:
        """True once the job's end is settled (a cancel by id included) and all was read."""
        return self._finished and self._local.empty()

    def cancel(self, reason: str = "the round ended") -> None:
        """End the job on DCP and the client; returns once that is done or bounded out."""
        if not self._ended.is_set():
            self._stop = self._stop or reason
            self._ended.wait(2 * self.opts.cancel_timeout + 40)
        if self._process.is_alive():
            self._process.kill()


@dataclass
class DcpBackend:
    """Deploys jobs on DCP; the preflight runs when it is made, before any deployment."""

    opts: DcpOptions
    server_url: str
    group: ComputeGroup | None
    client: Callable = sdk_client  # what each job's child runs (tests give a stand-in)
    canceller: Callable = cancel_job_by_id

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

    @property
    def remote_work_function(self) -> bool:
        """Whether jobs carry the remote stub and the URL of the work source, not the source."""
        return self.opts.remote_work_function

    def deploy(self, spec: JobSpec) -> DcpJob:
        """Deploy through the SDK in a child process."""
        return DcpJob(spec, self.opts, self.group, self.client, self.canceller)
