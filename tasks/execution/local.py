"""The `local` backend: worker processes that behave as DCP workers started with --allow-origin.

Each worker fetches the job's URLs (the dataset; with remote inputs the slice's datum and
the config too; with a remote work function the work function's source) over HTTP (allowed
origins only) and decodes them by Content-Type, runs the shipped work-function text (the
remote stub, by default) on a slice with a `dcp` module that counts progress,
and POSTs the DCP result envelope to the result-storage URL, as DCP's Pyodide worktime
does: no progress is a failed slice (ENOPROGRESS), and an exception is posted as the
slice's result. A manager thread hands out slices, replaces dead workers and kills slices
that run past the timeout; every wait is bounded.
"""

from __future__ import annotations

import collections
import json
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
import traceback
import types
import uuid
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from urllib.parse import urlsplit

from tasks.execution.client import ca_verify, redact_tokens, retrying_session
from tasks.execution.jobs import JobSpec, SliceEvent, drain

HTTP_TIMEOUT = 30.0


class OriginNotAllowed(PermissionError):
    """A URL whose origin the worker was not told to allow."""


@dataclass(frozen=True)
class FaultPlan:
    """Injected faults by plan slice number, applied on a slice's first attempt only."""

    fail: frozenset[int] = frozenset()
    kill: frozenset[int] = frozenset()
    hang: frozenset[int] = frozenset()

    @classmethod
    def from_dict(cls, faults: dict | None) -> FaultPlan:
        """Build from `{"fail": [k], "kill": [k], "hang": [k]}`; ValueError for other kinds."""
        faults = faults or {}
        kinds = [f.name for f in fields(cls)]  # the fault kinds' one definition
        unknown = sorted(set(faults) - set(kinds))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(kinds)}")
        return cls(**{kind: frozenset(int(k) for k in faults.get(kind, ())) for kind in kinds})


def origin_of(url: str) -> str:
    """scheme://host:port of a URL, with the default port made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def check_origin(url: str, allowed: tuple[str, ...]) -> None:
    """Refuse a URL whose origin is not allowed, as a DCP worker does."""
    if origin_of(url) not in {origin_of(a) for a in allowed}:
        raise OriginNotAllowed(f"origin {origin_of(url)} is not in the worker's allowed origins")


def post_envelope(session, url: str, fields: dict, allowed: tuple[str, ...]) -> None:
    """POST the DCP result envelope; a non-2xx answer after retries fails the slice."""
    check_origin(url, allowed)
    # Explicitly: requests lets $REQUESTS_CA_BUNDLE override a session's own `verify`.
    session.post(url, data=fields, timeout=HTTP_TIMEOUT, verify=session.verify).raise_for_status()


class JsStringObject:
    """What Pyodide hands Python for a JS `String` object: a proxy, not a `str`.

    `str()` gives its text; `encode`, slicing and the other `str` methods are missing,
    as on a real `JsProxy`.
    """

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return self._text


def decode_fetched(text: str, content_type: str):
    """A fetched URL's body as a DCP worker passes it on (dcp-client utils/fetch-uri.js)."""
    mime = content_type.split(";")[0]
    if mime == "text/plain":
        return text
    if mime == "application/json":
        return json.loads(text)
    if mime.startswith("text"):
        return JsStringObject(text)
    return text


def fetch_argument(url: str, allowed: tuple[str, ...]):
    """GET a URL argument from an allowed origin and decode it as a worker does."""
    import requests

    check_origin(url, allowed)
    # An https:// server's certificate is checked against $SIGSEARCH_CA_BUNDLE, as the flow's.
    response = requests.get(url, timeout=HTTP_TIMEOUT, verify=ca_verify())
    response.raise_for_status()
    return decode_fetched(response.text, response.headers.get("Content-Type", "text/plain"))


class ProgressCounter:
    """The `dcp` module of DCP's Pyodide worktime, as far as work functions use it."""

    def __init__(self) -> None:
        self.calls = 0

    def progress(self, value=None) -> bool:
        """Count a progress event (DCP's `progress()` takes a fraction or nothing)."""
        self.calls += 1
        return True

    def install(self) -> None:
        """Register as `sys.modules['dcp']`, as the worktime registers its JS module."""
        module = types.ModuleType("dcp")
        module.__dict__["progress"] = self.progress  # a module made at run time
        sys.modules["dcp"] = module


def exception_result(exc: BaseException) -> dict:
    """The result a DCP worker reports for a work function that raised.

    Pyodide raises a `PythonError` whose message is the traceback; the sandbox wraps it in
    an UncaughtExceptionError and resolves the slice with it (`sandbox2.js`, 'workError').
    """
    text = "".join(traceback.format_exception(exc))
    return {"errorCode": "EUNCAUGHT", "name": "PythonError", "message": text, "stack": text}


def slice_arguments(spec: dict, datum: str, allowed: tuple[str, ...]) -> tuple:
    """(datum, dataset, config[, work]) of a slice as the worktime passes them: URLs fetched.

    The work function's source is the job's last argument when the job ships the remote stub.
    """
    config = spec["config_json"]
    if spec["remote_inputs"]:
        datum, config = fetch_argument(datum, allowed), fetch_argument(config, allowed)
    arguments = [datum, fetch_argument(spec["dataset_url"], allowed), config]
    if spec.get("work_url"):
        arguments.append(fetch_argument(spec["work_url"], allowed))
    return tuple(arguments)


def _run_slice(
    work, spec: dict, element: int, datum: str, allowed, counter: ProgressCounter
) -> tuple:
    """Run one slice as a worker does; (outcome, envelope fields or None, reason)."""
    fields = {**spec["result_params"], "element": str(element), "contentType": "application/json"}
    arguments = slice_arguments(spec, datum, allowed)
    counter.calls = 0
    try:
        result = work(*arguments)
    except Exception as exc:  # the worktime resolves the slice with the error as its result
        fields["content"] = json.dumps(exception_result(exc))
        return "error", fields, f"{type(exc).__name__}: {exc}"
    if counter.calls == 0:
        return "error", None, "ENOPROGRESS: Sandbox never emitted a progress event."
    # The worker sends JSON.stringify(result): a str result is a JSON string of JSON.
    fields["content"] = json.dumps(result)
    return "result", fields, ""


def _worker_main(conn: Connection, allowed: tuple[str, ...], work_source: str) -> None:
    """Worker process: run slices sent over `conn` until told to stop."""
    from tasks.science.work import load_work_function

    counter = ProgressCounter()
    counter.install()
    work = load_work_function(work_source)
    session = retrying_session(allowed_methods=None)  # the sink acknowledges repeats
    while True:
        message = conn.recv()
        if message is None:
            return
        element, spec, datum, inject = message
        started = time.perf_counter()
        try:
            if inject == "kill":
                os._exit(17)
            if inject == "hang":
                time.sleep(10**6)
            run = _injected_failure if inject == "fail" else work
            outcome, fields, reason = _run_slice(run, spec, element, datum, allowed, counter)
            if fields is not None:
                post_envelope(session, spec["result_url"], fields, allowed)
        except Exception as exc:  # a fetch or post failed: the slice is lost
            # One line (the exception, not its traceback): it is the slice's reason in the log.
            outcome, reason = "error", "".join(traceback.format_exception_only(exc)).strip()
        conn.send((outcome, element, time.perf_counter() - started, redact_tokens(reason)))


def _injected_failure(datum, *args):
    """A work function that raises after reporting progress (an injected fault)."""
    sys.modules["dcp"].progress(0.0)
    raise RuntimeError(f"injected fault in slice {json.loads(datum)['slice']}")


@dataclass
class _Worker:
    process: BaseProcess  # made by a spawn context: not an mp.Process
    conn: Connection
    element: int | None = None
    started: float = 0.0


@dataclass
class LocalJob:
    """A job running on local worker processes."""

    spec: JobSpec
    workers: int
    allowed_origins: tuple[str, ...]
    slice_timeout: float
    faults: FaultPlan = field(default_factory=FaultPlan)
    job_id: str = field(default_factory=lambda: "local-" + uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._ctx = mp.get_context("spawn")
        self._thread = threading.Thread(target=self._run, name=self.job_id, daemon=True)
        self._thread.start()

    def events(self, timeout: float) -> list[SliceEvent]:
        """Events since the last call."""
        return drain(self._events, timeout)

    def done(self) -> bool:
        """True when every slice was reported (or the job was cancelled)."""
        return self._finished.is_set() and self._events.empty()

    def cancel(self) -> None:
        """Stop all workers now."""
        self._cancel.set()
        self._thread.join(timeout=30)

    def _inject(self, element: int) -> str | None:
        if self.spec.attempt != 0:
            return None
        slice_no = self.spec.slice_numbers[element - 1]
        for kind in ("kill", "hang", "fail"):
            if slice_no in getattr(self.faults, kind):
                return kind
        return None

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(child, self.allowed_origins, self.spec.work_source),
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _run(self) -> None:
        spec = {
            "dataset_url": self.spec.dataset_url,
            "config_json": self.spec.config_json,
            "result_url": self.spec.result_url,
            "result_params": self.spec.result_params,
            "remote_inputs": self.spec.remote_inputs,
            "work_url": self.spec.work_url,
        }
        # Each worker is sent its element's datum only: a job's slices may be many.
        pending = collections.deque(range(1, len(self.spec.slices) + 1))
        pool = [self._spawn() for _ in range(min(self.workers, len(pending)))]
        self._events.put(SliceEvent("accepted", message=self.job_id))
        try:
            while (pending or any(w.element for w in pool)) and not self._cancel.is_set():
                for i, worker in enumerate(pool):
                    if worker.element is None and pending:
                        element = pending.popleft()
                        try:
                            datum = self.spec.slices[element - 1]
                            worker.conn.send((element, spec, datum, self._inject(element)))
                        except OSError:  # died while idle: replace it, the slice waits
                            pending.appendleft(element)
                            _stop(worker)
                            pool[i] = self._spawn()
                            continue
                        worker.element, worker.started = element, time.perf_counter()
                self._collect(pool)
        finally:
            for worker in pool:
                _stop(worker)
            self._events.put(SliceEvent("done", message=self.job_id))
            self._finished.set()

    def _collect(self, pool: list[_Worker]) -> None:
        """Wait (bounded) for messages, deaths and timeouts; replace lost workers."""
        busy = [w for w in pool if w.element]
        ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.2)
        for i, worker in enumerate(pool):
            if worker.element is None:
                continue
            if worker.conn in ready:
                try:
                    kind, element, seconds, message = worker.conn.recv()
                except (EOFError, OSError):
                    kind = None
                else:
                    self._events.put(SliceEvent(kind, element, seconds, message))
                    worker.element = None
                    continue
            elapsed = time.perf_counter() - worker.started
            if worker.process.is_alive() and elapsed <= self.slice_timeout:
                continue
            reason = "worker died" if not worker.process.is_alive() else "slice timed out"
            self._events.put(SliceEvent("lost", worker.element, elapsed, reason))
            _stop(worker)
            pool[i] = self._spawn()


def _stop(worker: _Worker) -> None:
    """Stop a worker process within a bounded time."""
    if worker.process.is_alive():
        try:
            worker.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        worker.process.join(timeout=0.5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(timeout=5)
    worker.conn.close()


@dataclass(frozen=True)
class LocalBackend:
    """Deploys jobs on local worker processes."""

    workers: int = max(1, os.cpu_count() or 1)
    allowed_origins: tuple[str, ...] = ()
    slice_timeout: float = 600.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    remote_inputs: bool = True  # fetch slice data and config by URL, as DCP jobs do
    remote_work_function: bool = True  # ship the stub; workers fetch the source, as on DCP

    @property
    def parallelism(self) -> int:
        """One slice per worker at a time."""
        return self.workers

    def deploy(self, spec: JobSpec) -> LocalJob:
        """Start the job's workers and return its handle."""
        return LocalJob(spec, self.workers, self.allowed_origins, self.slice_timeout, self.faults)
