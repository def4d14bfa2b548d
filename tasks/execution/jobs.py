"""What every backend is given (a job spec) and what it reports (events), behind one interface."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class JobSpec:
    """One deployment: the slices, the shipped work function and where data and results go."""

    name: str
    # Job element k (from 1) is slices[k - 1]: JSON slice data, or with `remote_inputs` the
    # URL (with the run token) a worker fetches it from.
    slices: tuple[str, ...]
    work_source: str
    dataset_url: str  # carries the run token; fetched by workers, never read from disk
    config_json: str  # the config as JSON, or with `remote_inputs` the URL it is fetched from
    result_url: str  # the sink, with the run token
    result_params: dict = field(default_factory=dict)
    attempt: int = 0  # the round of retries this job is (0: the first deployment)
    slice_numbers: tuple[int, ...] = ()  # plan slice of each element, as `slices`
    remote_inputs: bool = False  # slices and config are URLs on the server, not the data
    # Where a remote work stub (`work_source`) fetches the work function's source, with the
    # run token: the job's last argument. None: `work_source` is the whole work function.
    work_url: str | None = None


@dataclass(frozen=True)
class SliceEvent:
    """Something a backend observed: accepted, result, error, lost, done, log."""

    kind: str
    element: int | None = None
    seconds: float | None = None
    message: str = ""


class JobHandle(Protocol):
    """A deployed job."""

    job_id: str

    def events(self, timeout: float) -> list[SliceEvent]:
        """Events since the last call, waiting at most `timeout` seconds for the first."""

    def done(self) -> bool:
        """True when the backend will report nothing more."""

    def cancel(self) -> None:
        """Stop the job; bounded in time."""


class Backend(Protocol):
    """Deploys jobs, at most `parallelism` slices at a time (what bounds a round's time).

    With `remote_inputs` its jobs carry URLs of slice data and config, registered on the
    server, instead of the data: the DCP scheduler then never sees them. With
    `remote_work_function` they carry a stub and the URL of the work function's source.
    """

    # Read-only: a backend may give them as properties (computed from its options).
    @property
    def parallelism(self) -> int: ...

    @property
    def remote_inputs(self) -> bool: ...

    @property
    def remote_work_function(self) -> bool: ...

    def deploy(self, spec: JobSpec) -> JobHandle:
        """Start a job and return its handle."""


def drain(events: queue.Queue, timeout: float) -> list[SliceEvent]:
    """Take every queued event, waiting up to `timeout` for the first one."""
    try:
        items = [events.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            items.append(events.get_nowait())
        except queue.Empty:
            return items
