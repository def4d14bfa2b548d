"""HTTP(S) client of the data server for the flow (admin token in a header)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, overload
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tasks.redact import redact as redact_tokens  # the name this module's callers use
from tasks.status import RunStatus

log = logging.getLogger(__name__)


# Slices per registration request: about 1 MB at 10 signatures a slice, under the server's limit.
INPUT_BATCH = 500


# A CA bundle (PEM) that signs an https:// server's certificate, when the system's CAs do not.
CA_BUNDLE_VARIABLE = "SIGSEARCH_CA_BUNDLE"


def ca_verify(ca_bundle: str | None = None) -> str | bool:
    """What requests' `verify` takes: `ca_bundle`, else $SIGSEARCH_CA_BUNDLE, else the system CAs.

    A bundle that is not a readable file is a ValueError naming it, at once, not a TLS
    error on the first request.
    """
    bundle = ca_bundle or os.environ.get(CA_BUNDLE_VARIABLE) or None
    if bundle is None:
        return True
    if not os.path.isfile(bundle) or not os.access(bundle, os.R_OK):
        source = "ca_bundle" if ca_bundle else CA_BUNDLE_VARIABLE
        raise ValueError(f"CA bundle {bundle} ({source}) is not a readable file")
    return bundle


def retrying_session(
    allowed_methods=Retry.DEFAULT_ALLOWED_METHODS, verify: str | bool | None = None
) -> requests.Session:
    """A session that retries refused connections and 502/503/504 answers with backoff.

    Certificates are verified against `verify`, by default `ca_verify()`.
    """
    retry = Retry(
        total=4,
        backoff_factor=0.5,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=allowed_methods,
        raise_on_status=False,
    )
    session = requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, HTTPAdapter(max_retries=retry))
    session.verify = ca_verify() if verify is None else verify
    return session


class ServerNotReady(RuntimeError):
    """The server did not become ready in time; the message lists its reasons."""


class ServerCertificateRefused(ConnectionError):
    """An https:// server's certificate failed verification: not an outage to wait out."""


def certificate_refused(
    base_url: str, exc: requests.exceptions.SSLError
) -> ServerCertificateRefused:
    """The error for a TLS failure, saying where the CA that signed the server's goes."""
    return ServerCertificateRefused(
        f"{base_url}: TLS with the server failed ({redact_tokens(str(exc))[:300]}); if its"
        f" certificate is signed by your own CA, give that CA's PEM file in {CA_BUNDLE_VARIABLE}"
    )


class ServerUnreachable(ConnectionError):
    """The server did not answer (or answered 503) for as long as the client may wait."""


# What a server that went away mid-request raises: refused or reset connections, timeouts,
# and a body cut off while it was read (seen: IncompleteRead when the server was killed).
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
# An outage is waited out with pauses doubling from 1 s up to this.
MAX_OUTAGE_PAUSE = 30.0
Logger = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class Outage:
    """A stretch of time (time.monotonic()) in which the server did not serve the run."""

    started: float
    ended: float
    problem: str


@dataclass
class ServerClient:
    """Talks to the data server; the only place (with the workers) that does HTTP."""

    base_url: str
    admin_token: str = field(repr=False)
    timeout: float = 30.0
    # Until this time.monotonic() value, an unreachable server is waited for, not an error.
    ride_out_until: float | None = None
    logger: Logger = field(default=log, repr=False, compare=False)
    outages: list[Outage] = field(default_factory=list, repr=False, compare=False)
    registered: list[str] = field(default_factory=list, repr=False, compare=False)  # run ids
    # PEM CAs for an https:// server; None: $SIGSEARCH_CA_BUNDLE, else the system's CAs.
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        # Passed to each request, not only set on the session: $REQUESTS_CA_BUNDLE overrides
        # a session's CA bundle in requests, not one given to the request.
        self._verify = ca_verify(self.ca_bundle)
        # Registration and attempts are idempotent on the server: POSTs may be repeated too.
        self._session = retrying_session(allowed_methods=None, verify=self._verify)
        self._session.headers["Authorization"] = f"Bearer {self.admin_token}"

    @overload
    def _call(
        self, method: str, path: str, missing_ok: Literal[False] = False, **kwargs: Any
    ) -> dict: ...

    @overload
    def _call(self, method: str, path: str, missing_ok: bool, **kwargs: Any) -> dict | None: ...

    def _call(self, method: str, path: str, missing_ok: bool = False, **kwargs: Any) -> dict | None:
        """The JSON answer; None for a 404 with `missing_ok`, RuntimeError for other errors."""
        response = self.ride_out(lambda: self._answer(method, path, **kwargs))
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RuntimeError(
                f"{method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json()

    def _answer(self, method: str, path: str, **kwargs) -> tuple[requests.Response | None, str]:
        """The server's answer, or None and why there is none (unreachable or 503)."""
        try:
            response = self._session.request(
                method, self.base_url + path, timeout=self.timeout, verify=self._verify, **kwargs
            )
        except requests.exceptions.SSLError as exc:  # before TRANSPORT_ERRORS, its base class
            raise certificate_refused(self.base_url, exc) from None
        except TRANSPORT_ERRORS as exc:
            return None, f"{type(exc).__name__} on {method} {path}"
        if response.status_code == 503:
            return None, f"HTTP 503 on {method} {path}: {response.text[:200]}"
        return response, ""

    def ride_out(self, attempt):
        """`attempt()` -> (value, problem), repeated until it has no problem.

        Waits with pauses doubling up to MAX_OUTAGE_PAUSE until `ride_out_until`, says so
        once when the outage starts and once when it ends, and records it in `outages`.
        """
        value, problem = attempt()
        if not problem:
            return value
        started, since, pause = time.monotonic(), datetime.now().strftime("%H:%M:%S"), 1.0
        first = problem
        self.logger.warning(
            "server %s unreachable since %s, waiting (%s)", self.base_url, since, problem
        )
        while problem:
            if self.ride_out_until is None or time.monotonic() + pause > self.ride_out_until:
                raise ServerUnreachable(
                    f"server {self.base_url} unreachable since {since} ({problem}); "
                    "start it again (its results are kept) and retry the flow run"
                )
            time.sleep(pause)
            pause = min(2 * pause, MAX_OUTAGE_PAUSE)
            value, problem = attempt()
        ended = time.monotonic()
        self.outages.append(Outage(started, ended, first))
        self.logger.warning("server %s back after %.0f s", self.base_url, ended - started)
        return value

    def admin_token_refused(self) -> str:
        """Why the server refuses the admin token ('' when it takes it, or cannot be asked now).

        One request, no retries: an unreachable server is the run's to wait out, not this.
        """
        try:
            response = requests.get(
                f"{self.base_url}/runs/sigsearch-admin-check/status",
                headers={"Authorization": f"Bearer {self.admin_token}"},
                timeout=5,
                verify=self._verify,
            )
        except requests.RequestException:
            return ""
        if response.status_code in (401, 403):
            return f"{self.base_url} refuses the admin token (HTTP {response.status_code})"
        return ""

    def serving_problem(self, name: str, token: str, sha256: str) -> str:
        """Why workers cannot get this run's dataset now ('' when they can)."""
        try:
            response = requests.get(self.base_url + "/ready", timeout=5, verify=self._verify)
            if response.status_code != 200:
                return f"/ready answers {response.status_code}: {response.text[:200]}"
            served = self.served_sha256(name, token)
        except (requests.RequestException, ConnectionError, RuntimeError) as exc:
            return redact_tokens(f"{type(exc).__name__}: {exc}")
        if served != sha256:
            return f"dataset {name!r} is served with sha256 {served[:12]}, not {sha256[:12]}"
        return ""

    def wait_until_serving(self, name: str, token: str, sha256: str) -> str:
        """Wait (as `ride_out`) until the run's dataset is served again; what was wrong, or ''."""
        problem = self.serving_problem(name, token, sha256)
        if problem:
            self.ride_out(lambda: (None, self.serving_problem(name, token, sha256)))
        return problem

    def wait_ready(self, timeout: float, interval: float = 0.5) -> None:
        """Poll /ready until 200; raise ServerNotReady with the last reasons after `timeout`."""
        deadline, reasons = time.monotonic() + timeout, ["no answer"]
        while time.monotonic() < deadline:
            try:
                response = requests.get(self.base_url + "/ready", timeout=5, verify=self._verify)
                if response.status_code == 200:
                    return
                reasons = response.json().get("reasons", [response.text[:200]])
            except requests.exceptions.SSLError as exc:  # waiting will not mend it
                raise certificate_refused(self.base_url, exc) from None
            except requests.RequestException as exc:
                reasons = [type(exc).__name__]
            time.sleep(interval)
        raise ServerNotReady(f"{self.base_url} not ready after {timeout:.0f}s: {reasons}")

    def register_run(self, run_id: str, dataset: str, token: str, expected: list[int]) -> None:
        """Register a run and its worker token."""
        body = {"run_id": run_id, "dataset": dataset, "token": token, "expected": expected}
        self._call("POST", "/runs", json=body)
        if run_id not in self.registered:
            self.registered.append(run_id)

    def find_run(self, run_id: str) -> RunStatus | None:
        """A run's status, or None when the server has no run of that id."""
        status = self._call("GET", f"/runs/{quote(run_id)}/status", missing_ok=True)
        return cast("RunStatus | None", status)  # the server's RunStatus, as JSON

    def register_attempt(self, run_id: str, attempt: int, slices: list[int]) -> None:
        """Declare which plan slices a retry job's elements stand for."""
        self._call("POST", f"/runs/{run_id}/attempts", json={"attempt": attempt, "slices": slices})

    def register_inputs(
        self,
        run_id: str,
        config_json: str | None,
        slices: dict[int, str] | Iterator[tuple[int, str]],
        batch: int = INPUT_BATCH,
        work: str | None = None,
    ) -> int:
        """Register a run's config and slice data (JSON text each), `batch` slices a request.

        `slices` is slice -> text, or (slice, text) pairs sent as they come (an iterator
        is read one request at a time, never whole); `work` is the work function's source;
        returns the slices registered.
        """
        # The counts only grow: their max is the last, and taking it sends every request.
        batches = self.register_input_batches(run_id, config_json, slices, batch, work)
        return max(batches, default=0)

    def register_input_batches(
        self,
        run_id: str,
        config_json: str | None,
        slices: dict[int, str] | Iterator[tuple[int, str]],
        batch: int = INPUT_BATCH,
        work: str | None = None,
    ) -> Iterator[int]:
        """`register_inputs` a request at a time: yields the slices registered after each one.

        The config and the work source (those given) go with the first request (alone when
        there are no slices), so a caller may deploy the slices registered so far and go on
        registering the rest.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        pairs = iter(sorted(slices.items()) if isinstance(slices, dict) else slices)
        path, registered, first = f"/inputs/{quote(run_id)}", 0, True
        once = {
            key: value
            for key, value in (("config", config_json), ("work", work))
            if value is not None
        }
        while True:
            chunk = []
            for number, datum in pairs:
                chunk.append({"slice": number, "datum": datum})
                if len(chunk) == batch:
                    break
            if not chunk and not (first and once):
                return
            body = {"slices": chunk, **(once if first else {})}
            self._call("POST", path, json=body)
            registered, first = registered + len(chunk), False
            yield registered
            if len(chunk) < batch:
                return

    def finish_run(self, run_id: str) -> None:
        """Mark a run finished: the server takes no more results for it (idempotent)."""
        self._call("POST", f"/runs/{quote(run_id)}/finish")

    def close_intake(self, run_id: str) -> None:
        """Close a run's intake before the final fetch: later results get 409 (idempotent)."""
        self._call("POST", f"/runs/{quote(run_id)}/close")

    def suspend_run(self, run_id: str) -> None:
        """Revoke a run's token (a failed run, left to be resumed): its URLs stop working."""
        self._call("POST", f"/runs/{quote(run_id)}/suspend")

    def status(self, run_id: str) -> RunStatus:
        """Expected, received, errored and missing slices."""
        return cast("RunStatus", self._call("GET", f"/runs/{run_id}/status"))

    def iter_results(self, run_id: str, page: int = 500) -> Iterator[dict]:
        """Every stored result of a run, page by page."""
        cursor = 0
        while True:
            body = self._call(
                "GET", f"/runs/{run_id}/results", params={"cursor": cursor, "limit": page}
            )
            yield from body["results"]
            if len(body["results"]) < page:
                return
            cursor = body["cursor"]

    def dataset_url(self, name: str, token: str) -> str:
        """The URL workers fetch the dataset from."""
        return f"{self.base_url}/datasets/{quote(name)}?token={quote(token)}"

    def slice_url(self, run_id: str, slice_no: int, token: str) -> str:
        """The URL a worker fetches a registered slice's datum from."""
        return f"{self.base_url}/inputs/{quote(run_id)}/slices/{slice_no}?token={quote(token)}"

    def config_url(self, run_id: str, token: str) -> str:
        """The URL a worker fetches a run's registered config from."""
        return f"{self.base_url}/inputs/{quote(run_id)}/config?token={quote(token)}"

    def work_url(self, run_id: str, token: str) -> str:
        """The URL a worker fetches a run's registered work function source from."""
        return f"{self.base_url}/inputs/{quote(run_id)}/work?token={quote(token)}"

    def sink_url(self, run_id: str, token: str) -> str:
        """The result-storage URL workers post to."""
        return f"{self.base_url}/dcp-results/{quote(run_id)}?token={quote(token)}"

    def served_sha256(self, name: str, token: str) -> str:
        """sha256 of the dataset as the server serves it (computed here, not trusted)."""
        try:
            response = requests.get(
                self.dataset_url(name, token), timeout=self.timeout, verify=self._verify
            )
        except requests.RequestException as exc:  # its message holds the URL, token and all
            raise ConnectionError(f"GET dataset {name!r}: {redact_tokens(str(exc))}") from None
        if response.status_code != 200:
            raise RuntimeError(f"GET dataset {name!r}: HTTP {response.status_code}")
        return hashlib.sha256(response.content).hexdigest()
