"""Flow-run names: descriptive, stable across attempts, and kept by a retry."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from prefect import flow

from flows import signature_search as module
from tasks.steps import rename_flow_run_task

STARTED = datetime(2026, 12, 2, 7, 30, 5, tzinfo=UTC)
ID = "454d57aa-0000-4000-8000-000000000000"


def runtime(name: str | None, **parameters) -> SimpleNamespace:
    """What prefect.runtime.flow_run says about a run (its name before the engine sets ours)."""
    params = {"input_path": "input/golub_all_aml.tsv", "n_signatures": 300} | parameters
    return SimpleNamespace(name=name, id=ID, parameters=params, scheduled_start_time=STARTED)


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, "golub_all_aml-auto-vs-auto-300sig-20261202-073005-454d57"),
        (
            {"case": "AML", "control": "ALL"},
            "golub_all_aml-AML-vs-ALL-300sig-20261202-073005-454d57",
        ),
        ({"contrasts": "c.tsv"}, "golub_all_aml-contrasts-300sig-20261202-073005-454d57"),
    ],
)
def test_a_new_run_is_named_by_its_data_contrast_size_and_start(monkeypatch, parameters, expected):
    # `prefect deployment run` created it as "spiffy-macaw"; the first attempt names it.
    monkeypatch.setattr(module, "flow_run", runtime("spiffy-macaw", **parameters))
    assert module.run_name() == expected
    # The start is the run's scheduled one, not the clock: a second attempt gives the same.
    assert module.run_name() == expected


def test_a_retry_keeps_the_name_an_earlier_attempt_resolved(monkeypatch):
    named = "golub_all_aml-AML-vs-ALL-300sig-20261202-073005-454d57"
    monkeypatch.setattr(module, "flow_run", runtime(named))
    assert module.run_name() == named  # not renamed back to auto-vs-auto
    other = runtime("golub_all_aml-AML-vs-ALL-300sig-20261202-073005-ffffff")
    monkeypatch.setattr(module, "flow_run", other)
    assert module.run_name().endswith("-454d57")  # another run's name is not taken over


def test_the_engine_lines_after_a_rename_carry_the_new_name(caplog):
    @flow(name="renamed-run", flow_run_name="before-the-rename")
    def renamed_run() -> None:
        rename_flow_run_task("after-the-rename")

    with caplog.at_level("INFO", logger="prefect.flow_runs"):
        renamed_run()
    finished = [r for r in caplog.records if r.getMessage().startswith("Finished in state")]
    names = [r.flow_run_name for r in finished if r.name == "prefect.flow_runs"]
    assert names == ["after-the-rename"]
