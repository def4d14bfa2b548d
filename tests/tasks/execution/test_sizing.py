"""Signatures per DCP slice from a target duration (tasks/execution/sizing.py)."""

import pytest

from tasks.execution import sizing
from tasks.execution.dcp import DcpOptions
from tasks.science.worker import CLASSIFIERS

ALL = list(CLASSIFIERS)


def test_every_classifier_the_work_function_knows_has_a_cost():
    assert set(sizing.FIT_SECONDS) == set(CLASSIFIERS)


def test_the_dcp_option_defaults_to_the_sizing_default():
    assert DcpOptions().target_slice_seconds == sizing.DEFAULT_TARGET_SLICE_SECONDS


@pytest.mark.parametrize("shape", [(38, 3051), (200, 20_000)])
def test_the_default_keeps_the_fixed_cost_under_a_tenth_of_a_fresh_slice(shape):
    n_samples, n_probesets = shape
    k = sizing.signatures_per_slice(sizing.DEFAULT_TARGET_SLICE_SECONDS, n_samples, ALL, 10)
    assert sizing.fresh_useful_share(k, n_samples, n_probesets, ALL, 10) >= 0.9


def test_a_signature_costs_folds_times_each_classifiers_fit():
    one = sizing.signature_seconds(40, ["svm"], 10)
    a, b = sizing.FIT_SECONDS["svm"]
    assert one == pytest.approx(10 * (a + b * 36), rel=1e-12)
    both = sizing.signature_seconds(40, ["svm", "logistic"], 10)
    assert both == pytest.approx(one + sizing.signature_seconds(40, ["logistic"], 10), rel=1e-12)
    # A validation slice fits once, on every discovery row.
    assert sizing.signature_seconds(40, ["svm"], 10, held_out=True) == pytest.approx(a + b * 40)


def test_more_samples_folds_or_classifiers_never_pack_more_signatures():
    pack = sizing.signatures_per_slice
    assert pack(200, 38, ALL, 10) >= pack(200, 200, ALL, 10)
    assert pack(200, 38, ALL, 5) >= pack(200, 38, ALL, 10)
    assert pack(200, 38, ["logistic"], 10) >= pack(200, 38, ALL, 10)
    assert pack(400, 38, ALL, 10) >= 2 * pack(200, 38, ALL, 10) - 1


def test_the_target_is_filled_without_being_exceeded_by_a_signature():
    per = sizing.signature_seconds(38, ALL, 10)
    k = sizing.signatures_per_slice(100.0, 38, ALL, 10)
    assert k * per <= 100.0 < (k + 1) * per


def test_bounds_one_signature_at_least_and_the_flows_maximum_at_most():
    assert sizing.signatures_per_slice(1e-6, 200, ALL, 10) == 1
    assert sizing.signatures_per_slice(1e9, 38, ["decision_tree"], 2) == 10_000


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 38, ALL, 10),
        (-5.0, 38, ALL, 10),
        (float("nan"), 38, ALL, 10),
        (100.0, 38, [], 10),
        (100.0, 38, ["knn"], 10),
        (100.0, 38, ALL, 1),
        (100.0, 1, ALL, 10),
    ],
)
def test_impossible_requests_are_refused(args):
    with pytest.raises(ValueError):
        sizing.signatures_per_slice(*args)


def test_the_fixed_cost_grows_with_the_dataset():
    assert sizing.fixed_seconds(200, 20_000) > sizing.fixed_seconds(38, 3051) > 0
