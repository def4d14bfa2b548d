"""Rounds of deployment and retry, with a fake backend and a fake server: milliseconds."""

import json
import time

import pytest

from tasks.execution.client import Outage
from tasks.execution.jobs import JobSpec, SliceEvent
from tasks.execution.rounds import JobContext, ListedSlices, PlannedSlices, job_spec, run_slices
from tasks.science.work import source_sha256


class FakeServer:
    """The sink as the orchestrator sees it: received, errored, conflicts; attempts."""

    def __init__(self, expected: list[int]) -> None:
        self.expected, self.received, self.errored, self.attempts = expected, set(), [], {}
        self.inputs: list[tuple] = []  # (run, config, slices) of each registration
        self.works: list[tuple] = []  # (run, work source) of each registration that gave one
        self.outages: list[Outage] = []  # what ServerClient.ride_out recorded
        self.away: list[str] = []  # what wait_until_serving finds at each call ('' = serving)

    def wait_until_serving(self, name: str, token: str, sha256: str) -> str:
        return self.away.pop(0) if self.away else ""

    def status(self, run_id: str) -> dict:
        errored = [e for e in self.errored if e["slice"] not in self.received]
        return {
            "expected": len(self.expected),
            "received": sorted(self.received),
            "errored": errored,
            "conflicts": [],
            "next_attempt": 1 + max(self.attempts, default=0),
        }

    def register_attempt(self, run_id: str, attempt: int, slices: list[int]) -> None:
        self.attempts[attempt] = slices

    def register_inputs(self, run_id: str, config_json, slices, work=None) -> None:
        pairs = dict(slices)  # (number, text) pairs, as ServerClient takes them
        if config_json is not None or pairs:
            config = None if config_json is None else json.loads(config_json)
            self.inputs.append((run_id, config, {k: json.loads(v) for k, v in pairs.items()}))
        if work is not None:
            self.works.append((run_id, work))

    def dataset_url(self, name: str, token: str) -> str:
        return f"http://127.0.0.1:1/datasets/{name}?token={token}"

    def slice_url(self, run_id: str, slice_no: int, token: str) -> str:
        return f"http://127.0.0.1:1/inputs/{run_id}/slices/{slice_no}?token={token}"

    def config_url(self, run_id: str, token: str) -> str:
        return f"http://127.0.0.1:1/inputs/{run_id}/config?token={token}"

    def work_url(self, run_id: str, token: str) -> str:
        return f"http://127.0.0.1:1/inputs/{run_id}/work?token={token}"

    def sink_url(self, run_id: str, token: str) -> str:
        return f"http://127.0.0.1:1/dcp-results/{run_id}?token={token}"


class ScriptedJob:
    """Plays a job at once: each slice posts a result, posts an error, or stays silent."""

    def __init__(self, spec: JobSpec, server: FakeServer, outcome_of) -> None:
        self.job_id, self.cancelled = spec.name, False
        self._events = [SliceEvent("accepted", message=spec.name)]
        silent = False
        for element, number in enumerate(spec.slice_numbers, start=1):
            outcome = outcome_of(spec.attempt, number)
            if outcome == "result":
                server.received.add(number)
                self._events.append(SliceEvent("result", element, 0.01))
            elif outcome == "error":
                error = {"slice": number, "attempt": spec.attempt, "error": "ValueError: boom"}
                server.errored.append(error)
                self._events.append(SliceEvent("error", element, 0.01, "boom"))
            else:
                silent = True
        if not silent:
            self._events.append(SliceEvent("done", message=spec.name))
        self._finished = not silent

    def events(self, timeout: float) -> list[SliceEvent]:
        events, self._events = self._events, []
        return events

    def done(self) -> bool:
        return self._finished and not self._events

    def cancel(self) -> None:
        self.cancelled, self._finished = True, True
        self._events.append(SliceEvent("cancelled", message=f"{self.job_id}: the round ended"))


class ScriptedBackend:
    parallelism = 2

    def __init__(self, server: FakeServer, outcome_of, remote_inputs: bool) -> None:
        self.server, self.outcome_of, self.specs, self.jobs = server, outcome_of, [], []
        self.remote_inputs = remote_inputs

    def deploy(self, spec: JobSpec) -> ScriptedJob:
        self.specs.append(spec)
        self.jobs.append(ScriptedJob(spec, self.server, self.outcome_of))
        return self.jobs[-1]


SLICES = {k: {"slice": k, "signatures": [{"id": k, "probesets": ["a", "b"]}]} for k in (1, 2, 3)}
CONFIG = {"case": "AML", "dataset_sha256": "ab" * 32}


def context(
    outcome_of, max_retries=2, seconds=30.0, backoff=0.0, remote_inputs=False, work_text=""
):
    server = FakeServer(sorted(SLICES))
    backend = ScriptedBackend(server, outcome_of, remote_inputs)
    ctx = JobContext(
        backend=backend,
        client=server,
        token="t0k3n-xxxxxxxxxxxxxxxx",
        dataset_name="golub",
        config=CONFIG,
        work_source="def f(): pass",
        max_retries=max_retries,
        slice_timeout=5.0,
        deadline=time.monotonic() + seconds,
        retry_backoff=backoff,
        work_text=work_text,
    )
    return ctx, backend, server


def run(ctx):
    return run_slices(ctx, "run", "run-main", SLICES, poll_interval=0.001)


def test_a_clean_run_takes_one_round():
    ctx, backend, _ = context(lambda attempt, number: "result")
    outcome = run(ctx)
    assert outcome.failed == {} and outcome.job_ids == ["run-main#0"]
    assert outcome.rounds[0].ended == "done" and outcome.slices_retried == 0


def test_failed_slices_are_redeployed_alone_as_elements_of_a_new_job():
    ctx, backend, server = context(lambda a, n: "error" if (a, n) == (0, 2) else "result")
    outcome = run(ctx)
    assert outcome.failed == {} and len(outcome.rounds) == 2
    assert outcome.rounds[0].failed == {2: "error: boom"}
    assert server.attempts == {1: [2]}
    retry = backend.specs[1]
    assert retry.attempt == 1 and retry.slice_numbers == (2,)
    assert json.loads(retry.slices[0])["slice"] == 2
    assert retry.result_params == {"elementType": "results", "attempt": "1"}


def test_a_resumed_run_deploys_only_the_slices_without_a_result_in_a_new_round():
    ctx, backend, server = context(lambda a, n: "result")
    server.received.add(1)  # what an earlier flow run got: 1 stored, 2 errored twice
    server.errored.append({"slice": 2, "attempt": 1, "error": "ValueError: boom"})
    server.attempts[1] = [2, 3]
    outcome = run(ctx)
    assert outcome.failed == {} and [a.attempt for a in outcome.rounds] == [2]
    assert backend.specs[0].slice_numbers == (2, 3) and server.attempts[2] == [2, 3]
    assert backend.specs[0].result_params["attempt"] == "2"


def test_a_run_registered_but_never_answered_starts_at_round_zero():
    ctx, backend, server = context(lambda a, n: "result")
    outcome = run(ctx)
    assert [a.attempt for a in outcome.rounds] == [0] and server.attempts == {}


def test_slices_that_keep_failing_are_reported_with_their_last_reason():
    ctx, _, _ = context(lambda a, n: "error" if n == 3 else "result", max_retries=2)
    outcome = run(ctx)
    assert [a.slices for a in outcome.rounds] == [[1, 2, 3], [3], [3]]
    assert outcome.failed == {3: "error: boom"} and outcome.slices_retried == 2


def test_a_silent_job_is_ended_at_the_deadline_and_its_slices_count_as_failed():
    ctx, backend, _ = context(lambda a, n: "silent" if n == 1 else "result", seconds=0.2)
    started = time.monotonic()
    outcome = run(ctx)
    assert time.monotonic() - started < 30  # the round's own bound is 40 s
    assert backend.jobs[0].cancelled
    assert outcome.rounds[0].ended.startswith("cancelled")
    assert outcome.failed == {1: "no result before the round's time bound"}


def test_nothing_is_deployed_after_the_deadline():
    ctx, backend, _ = context(lambda a, n: "result", seconds=-1)
    outcome = run(ctx)
    assert backend.specs == [] and set(outcome.failed) == {1, 2, 3}
    assert all(r == "deadline passed before deployment" for r in outcome.failed.values())


@pytest.mark.parametrize("attempt", [0, 3])
def test_job_spec_maps_elements_to_plan_slices(attempt):
    ctx, _, _ = context(lambda a, n: "result")
    spec = job_spec(ctx, "run", "run-main", ListedSlices(SLICES), attempt, [3, 1])
    assert spec.name == f"run-main#{attempt}" and spec.slice_numbers == (3, 1)
    assert [json.loads(s)["slice"] for s in spec.slices] == [3, 1]
    assert "token=t0k3n" in spec.dataset_url and spec.result_url.endswith(
        "token=t0k3n-xxxxxxxxxxxxxxxx"
    )


def test_rounds_back_off_doubling_and_never_past_the_deadline():
    ctx, backend, _ = context(lambda a, n: "error", max_retries=3, backoff=0.1)
    started = time.monotonic()
    outcome = run(ctx)
    assert len(outcome.rounds) == 4
    assert 0.1 + 0.2 + 0.4 <= time.monotonic() - started
    ctx, backend, _ = context(lambda a, n: "error", max_retries=3, backoff=60, seconds=0.3)
    started = time.monotonic()
    outcome = run(ctx)
    assert time.monotonic() - started < 30 and len(outcome.rounds) == 1  # not 60 s


def test_remote_inputs_are_registered_once_and_every_job_carries_only_their_urls():
    ctx, backend, server = context(
        lambda a, n: "error" if (a, n) == (0, 2) else "result", remote_inputs=True
    )
    outcome = run(ctx)
    assert outcome.failed == {} and len(backend.specs) == 2
    assert server.inputs == [("run", CONFIG, SLICES)]
    first, retry = backend.specs
    assert first.remote_inputs and retry.remote_inputs
    assert first.slices == tuple(
        f"http://127.0.0.1:1/inputs/run/slices/{k}?token=t0k3n-xxxxxxxxxxxxxxxx" for k in (1, 2, 3)
    )
    assert retry.slices == (first.slices[1],) and retry.slice_numbers == (2,)
    assert (
        first.config_json
        == retry.config_json
        == ("http://127.0.0.1:1/inputs/run/config?token=t0k3n-xxxxxxxxxxxxxxxx")
    )
    for spec in backend.specs:
        assert "AML" not in repr(spec) and '"probesets"' not in repr(spec)


def test_inline_inputs_register_nothing():
    ctx, backend, server = context(lambda a, n: "result")
    run(ctx)
    assert server.inputs == server.works == [] and not backend.specs[0].remote_inputs
    assert json.loads(backend.specs[0].config_json) == CONFIG
    assert backend.specs[0].work_url is None


WORK = "def evaluate_slice(datum, dataset, config):\n    return '{}'\n"


@pytest.mark.parametrize("remote_inputs", [True, False])
def test_a_remote_work_function_is_registered_and_named_by_url_and_sha256(remote_inputs):
    ctx, backend, server = context(
        lambda a, n: "error" if (a, n) == (0, 2) else "result",
        remote_inputs=remote_inputs,
        work_text=WORK,
    )
    assert run(ctx).failed == {} and len(backend.specs) == 2
    assert server.works == [("run", WORK)]  # once per run, with its inputs
    expected = {**CONFIG, "worker_sha256": source_sha256(WORK)}
    if remote_inputs:
        assert server.inputs == [("run", expected, SLICES)]
    else:  # only the work is registered; the config travels in the job, sha256 and all
        assert server.inputs == []
        assert all(json.loads(spec.config_json) == expected for spec in backend.specs)
    work_url = "http://127.0.0.1:1/inputs/run/work?token=t0k3n-xxxxxxxxxxxxxxxx"
    assert [spec.work_url for spec in backend.specs] == [work_url, work_url]
    assert all(WORK not in repr(spec) for spec in backend.specs)


def test_a_round_interrupted_by_an_outage_does_not_use_up_a_retry():
    ctx, backend, server = context(lambda a, n: "error" if a < 2 else "result", max_retries=0)
    # Rounds 0 and 1 lose their slices while the server is away (seen by the client's
    # ride-out, then by the check that the dataset is served again); round 2 gets them.
    server.away = ["dataset 'golub' is served with sha256 0000, not abab"]
    original_status = server.status

    def status_during_outage(run_id):
        if len(backend.specs) == 2 and not server.outages:
            server.outages.append(Outage(0.0, 0.0, "ConnectionError on GET /runs/run/status"))
        return original_status(run_id)

    server.status = status_during_outage
    outcome = run(ctx)
    assert [a.attempt for a in outcome.rounds] == [0, 1, 2] and outcome.failed == {}
    assert "served with sha256" in outcome.rounds[0].outage
    assert "ConnectionError" in outcome.rounds[1].outage
    assert outcome.rounds[2].outage == ""
    assert all(a.started_at and a.seconds >= 0 for a in outcome.rounds)


def test_without_an_outage_a_failed_round_uses_up_a_retry():
    ctx, backend, server = context(lambda a, n: "error" if a < 2 else "result", max_retries=1)
    outcome = run(ctx)
    assert [a.attempt for a in outcome.rounds] == [0, 1] and set(outcome.failed) == {1, 2, 3}


class FailingJob(ScriptedJob):
    """A job that fails as a whole (no funds, refused deployment): one job-level event."""

    def __init__(self, spec: JobSpec, server: FakeServer, outcome_of) -> None:
        self.job_id, self.cancelled, self._finished = spec.name, False, True
        self._events = [SliceEvent("failed", message="the payment account has no funds")]


def test_a_job_that_fails_as_a_whole_ends_its_round_with_that_reason():
    ctx, backend, _ = context(lambda a, n: "silent", max_retries=0)
    backend.deploy = lambda spec: (
        backend.jobs.append(FailingJob(spec, None, None)) or backend.jobs[-1]
    )
    started = time.monotonic()
    outcome = run(ctx)
    assert time.monotonic() - started < 30  # not the round's 40 s bound
    assert outcome.failed == {n: "job failed: the payment account has no funds" for n in SLICES}
    assert outcome.rounds[0].ended == "failed: the payment account has no funds"
    assert outcome.job_failure == "the payment account has no funds"


def test_planned_slices_are_the_listed_slices_of_the_same_packing():
    from tasks.science.plan import pack_slices, plan_compact

    plan = plan_compact([f"p{i}" for i in range(40)], 23, 2, 5, seed=3)
    planned = PlannedSlices(plan, 4)
    listed = ListedSlices({s["slice"]: s for s in pack_slices(list(plan), 4)})
    assert list(planned.numbers()) == listed.numbers() == list(range(1, 7))
    assert list(planned.texts()) == list(listed.texts())
    assert list(planned.texts([5, 2])) == list(listed.texts([5, 2]))
