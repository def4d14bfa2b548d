import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.science.plan import (
    SearchProtocol,
    batch_seed,
    null_panel,
    pack_slices,
    permutation_slices,
    plan_batch,
    plan_signatures,
    signature_lengths,
    stratified_split,
)

EXPECTED = Path(__file__).with_name("expected_plan.json")
PROBESETS = [f"p{i}" for i in range(200)]


def test_plan_matches_committed_expected_plan():
    plan = plan_signatures(PROBESETS, 12, 5, 9, seed=7)
    got = [{"id": s.id, "probesets": list(s.probesets)} for s in plan]
    assert got == json.loads(EXPECTED.read_text())


@pytest.mark.parametrize(("n", "lo", "hi"), [(9, 5, 9), (100, 5, 9), (7, 3, 3), (10, 1, 20)])
def test_lengths_spread_evenly_within_bounds(n, lo, hi):
    lengths = signature_lengths(n, lo, hi)
    assert min(lengths) >= lo and max(lengths) <= hi
    counts = Counter(lengths)
    if n >= hi - lo + 1:
        assert set(counts) == set(range(lo, hi + 1))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_signatures_are_distinct_and_deterministic():
    a = plan_signatures(PROBESETS, 500, 5, 9, seed=1)
    b = plan_signatures(PROBESETS, 500, 5, 9, seed=1)
    c = plan_signatures(PROBESETS, 500, 5, 9, seed=2)
    assert a == b and a != c
    assert all(len(set(s.probesets)) == len(s.probesets) for s in a)


def test_pack_slices_numbers_from_one_and_keeps_every_signature():
    slices = pack_slices(plan_signatures(PROBESETS, 23, 2, 4, 0), 5)
    assert [s["slice"] for s in slices] == [1, 2, 3, 4, 5]
    assert [x["id"] for s in slices for x in s["signatures"]] == list(range(23))
    assert len(json.dumps(slices[0])) < 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_signatures": 0}, "n_signatures"),
        ({"min_len": 6, "max_len": 5}, "min_len"),
        ({"max_len": 201}, "exceeds"),
        ({"min_len": 0}, "min_len"),
    ],
)
def test_bad_plan_arguments(kwargs, message):
    args = {"n_signatures": 5, "min_len": 2, "max_len": 4, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_signatures(PROBESETS, **args)


def test_null_panel_is_a_seeded_subset_or_everything():
    signatures = plan_signatures([f"p{i}" for i in range(50)], 40, 2, 4, seed=1)
    panel = null_panel(signatures, 7, seed=1)
    assert len(panel) == 7 and len({s.id for s in panel}) == 7
    assert panel == null_panel(signatures, 7, seed=1) != null_panel(signatures, 7, seed=2)
    assert set(panel) <= set(signatures)
    assert null_panel(signatures, 0, seed=1) == signatures == null_panel(signatures, 40, seed=1)


def test_permutation_slices_pack_the_panel_once_per_permutation():
    signatures = plan_signatures([f"p{i}" for i in range(50)], 5, 2, 4, seed=1)
    slices = permutation_slices(signatures, 3, seed=9, signatures_per_slice=2)
    assert [s["slice"] for s in slices] == list(range(1, 10))
    seeds = [s["permutation_seed"] for s in slices]
    assert seeds == [seeds[0]] * 3 + [seeds[3]] * 3 + [seeds[6]] * 3
    assert len(set(seeds)) == 3
    ids = [[sig["id"] for sig in s["signatures"]] for s in slices]
    assert ids[:3] == [[0, 1], [2, 3], [4]] and ids[3:6] == ids[:3]


def test_batch_one_is_the_plain_plan_and_later_batches_add_new_signatures():
    plain = plan_signatures(PROBESETS, 30, 3, 6, seed=8)
    assert plan_batch(PROBESETS, 30, 3, 6, seed=8, batch=1) == plain
    second = plan_batch(PROBESETS, 30, 3, 6, seed=8, batch=2)
    assert [s.id for s in second] == list(range(30, 60))
    assert {s.probesets for s in second}.isdisjoint({s.probesets for s in plain})
    assert second == plan_batch(PROBESETS, 30, 3, 6, seed=8, batch=2)
    assert len({batch_seed(8, b) for b in range(1, 50)}) == 49
    with pytest.raises(ValueError, match="numbered from 1"):
        batch_seed(8, 0)


def test_search_key_depends_on_every_protocol_field():
    protocol = SearchProtocol("ab", "AML", "ALL", ("svm",), 10, 1, 30, 3, 6, 20, 5)
    assert (
        protocol.key() == SearchProtocol("ab", "AML", "ALL", ("svm",), 10, 1, 30, 3, 6, 20, 5).key()
    )
    for field in dataclasses.fields(protocol):
        changed = {"classifiers": ("logistic",), "validation_fraction": 0.3}.get(
            field.name, getattr(protocol, field.name) * 2
        )
        assert dataclasses.replace(protocol, **{field.name: changed}).key() != protocol.key()
    assert protocol.plan(PROBESETS, 2) == plan_batch(PROBESETS, 30, 3, 6, seed=1, batch=2)


def test_stratified_split_keeps_label_shares_and_is_seeded():
    labels = ["ALL"] * 27 + ["AML"] * 11
    discovery, validation = stratified_split(labels, 0.3, seed=42)
    assert sorted(discovery + validation) == list(range(38))
    assert [labels[i] for i in validation].count("AML") == 3  # round(0.3 * 11)
    assert [labels[i] for i in validation].count("ALL") == 8  # round(0.3 * 27)
    assert stratified_split(labels, 0.3, seed=42) == (discovery, validation)
    assert stratified_split(labels, 0.3, seed=43)[1] != validation


@pytest.mark.parametrize(
    ("labels", "fraction", "message"),
    [
        (["a"] * 5 + ["b"] * 5, 0.0, "must lie in"),
        (["a"] * 5 + ["b"] * 5, 1.0, "must lie in"),
        (["a"] * 20 + ["b"] * 2, 0.1, "label 'b' \\(2 samples\\)"),
    ],
)
def test_stratified_split_refuses_splits_that_empty_a_side(labels, fraction, message):
    with pytest.raises(ValueError, match=message):
        stratified_split(labels, fraction, seed=1)
