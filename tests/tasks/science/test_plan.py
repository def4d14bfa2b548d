import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tasks.science import plan as plan_module
from tasks.science.plan import (
    SearchProtocol,
    Signature,
    SignaturePlan,
    SplitMix64,
    batch_seed,
    iter_slice_inputs,
    iter_slices,
    null_panel,
    pack_slices,
    permutation_seeds,
    permutation_slices,
    plan_batch,
    plan_batch_compact,
    plan_compact,
    plan_signatures,
    signature_lengths,
    slice_count,
    slice_signature_ids,
    splitmix64_outputs,
    stratified_split,
    uniform_below,
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


def test_permutation_slices_pack_each_permutations_signatures_in_order():
    signatures = plan_signatures([f"p{i}" for i in range(50)], 5, 2, 4, seed=1)
    seeds = permutation_seeds(3, seed=9)
    per_permutation = [(seeds[0], signatures), (seeds[1], signatures[1:3]), (seeds[2], [])]
    slices = permutation_slices(per_permutation, signatures_per_slice=2)
    assert [s["slice"] for s in slices] == list(range(1, 5))
    assert [s["permutation_seed"] for s in slices] == [seeds[0]] * 3 + [seeds[1]]
    ids = [[sig["id"] for sig in s["signatures"]] for s in slices]
    assert ids == [[0, 1], [2, 3], [4], [1, 2]]
    assert len(set(seeds)) == 3


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
        changed = {
            "classifiers": ("logistic",),
            "validation_fraction": 0.3,
            "null_candidates": 3,
        }.get(field.name, getattr(protocol, field.name) * 2)
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


def reference_plan(probesets, n_signatures, min_len, max_len, seed, rng=None) -> list[Signature]:
    """The plan as first written: one SplitMix64 call at a time, swaps on a list of names."""
    rng = rng or SplitMix64(seed)
    pool, signatures = list(probesets), []
    span = max_len - min_len + 1
    for sig_id in range(n_signatures):
        length = min_len + (sig_id * span) // n_signatures
        for j in range(length):
            k = j + rng.below(len(pool) - j)
            pool[j], pool[k] = pool[k], pool[j]
        signatures.append(Signature(id=sig_id, probesets=tuple(pool[:length])))
    return signatures


class StrictSplitMix64(SplitMix64):
    """SplitMix64 whose below() rejects every output above 2**62: a third of them or more."""

    calls = 0

    def below(self, n: int) -> int:
        while True:
            x = self.next_u64()
            self.calls += 1
            if x <= 2**62:
                return x % n


def test_bulk_outputs_are_the_generators_stream():
    for seed in (0, 7, 2**64 - 1, -3):
        rng = SplitMix64(seed)
        stream = [rng.next_u64() for _ in range(40)]
        assert splitmix64_outputs(seed, 1, 40).tolist() == stream
        assert splitmix64_outputs(seed, 11, 30).tolist() == stream[10:]


@pytest.mark.parametrize(
    ("n_probesets", "n_signatures", "min_len", "max_len", "seed"),
    [
        (200, 12, 5, 9, 7),
        (3051, 2000, 5, 9, 1),
        (50, 500, 1, 50, 3),
        (12, 300, 1, 12, 2**64 - 1),
        (9, 40, 9, 9, 0),
        (1, 3, 1, 1, 5),
        (1000, 777, 2, 30, 123456789),
    ],
)
def test_the_compact_plan_is_the_reference_plan(n_probesets, n_signatures, min_len, max_len, seed):
    probesets = [f"p{i}" for i in range(n_probesets)]
    expected = reference_plan(probesets, n_signatures, min_len, max_len, seed)
    assert list(plan_compact(probesets, n_signatures, min_len, max_len, seed)) == expected
    assert plan_signatures(probesets, n_signatures, min_len, max_len, seed) == expected


def test_the_plan_is_the_same_across_chunk_boundaries(monkeypatch):
    expected = reference_plan(PROBESETS, 300, 3, 8, seed=11)
    for draws in (1, 7, 8, 100):
        monkeypatch.setattr(plan_module, "_DRAW_CHUNK", draws)
        assert plan_signatures(PROBESETS, 300, 3, 8, seed=11) == expected


def test_rejected_outputs_are_skipped_as_below_skips_them(monkeypatch):
    monkeypatch.setattr(
        plan_module, "_rejection_limits", lambda bounds: np.full(len(bounds), 2**62, np.uint64)
    )
    for seed in (1, 2, 3):
        expected = reference_plan(PROBESETS, 150, 2, 9, seed, rng=StrictSplitMix64(seed))
        assert plan_signatures(PROBESETS, 150, 2, 9, seed) == expected
    rng = StrictSplitMix64(4)
    bounds = np.array([5, 3, 200, 1, 7] * 20, dtype=np.uint64)
    draws, used = uniform_below(4, 0, bounds)
    assert draws.tolist() == [rng.below(int(n)) for n in bounds]
    assert used == rng.calls > len(bounds)


def reference_split(labels, fraction, seed, rng=None) -> list[int]:
    """stratified_split's held-out rows as first written: one SplitMix64 call at a time."""
    rng = rng or SplitMix64(seed ^ 0x0DD_5EED)
    validation = []
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        n_validation = round(fraction * len(rows))
        for j in range(n_validation):
            k = j + rng.below(len(rows) - j)
            rows[j], rows[k] = rows[k], rows[j]
        validation.extend(rows[:n_validation])
    return sorted(validation)


def reference_panel(n_signatures, n_null, seed, rng=None) -> list[int]:
    """null_panel's signature positions as first written: one SplitMix64 call at a time."""
    rng = rng or SplitMix64(seed ^ 0x5EED_0F_A11)
    order = list(range(n_signatures))
    for j in range(n_null):
        k = j + rng.below(len(order) - j)
        order[j], order[k] = order[k], order[j]
    return sorted(order[:n_null])


@pytest.mark.parametrize("strict", [False, True])
def test_the_split_and_the_null_panel_are_the_one_at_a_time_draws(monkeypatch, strict):
    if strict:  # a third of the outputs or more rejected, by the bulk and the single draws
        monkeypatch.setattr(
            plan_module, "_rejection_limits", lambda bounds: np.full(len(bounds), 2**62, np.uint64)
        )
        monkeypatch.setattr(plan_module, "SplitMix64", StrictSplitMix64)
    labels = ["ALL"] * 27 + ["AML"] * 11 + ["X"] * 5
    signatures = plan_signatures(PROBESETS, 300, 2, 4, seed=1)
    for seed in (0, 1, 42, 2**64 - 1, -7):
        split_rng = StrictSplitMix64(seed ^ 0x0DD_5EED) if strict else None
        assert stratified_split(labels, 0.3, seed)[1] == reference_split(
            labels, 0.3, seed, split_rng
        )
        panel_rng = StrictSplitMix64(seed ^ 0x5EED_0F_A11) if strict else None
        expected = [signatures[i] for i in reference_panel(300, 37, seed, panel_rng)]
        assert null_panel(signatures, 37, seed) == expected


def test_unbiased_limits_are_below_s():
    bounds = np.array([1, 2, 3, 7, 3051, 2**32 + 1, 2**63 + 5], dtype=np.uint64)
    expected = [2**64 - 1 - 2**64 % int(n) for n in bounds]
    assert plan_module._rejection_limits(bounds).tolist() == expected


def test_a_compact_plan_is_a_sequence_of_signatures():
    plan = plan_compact(PROBESETS, 30, 2, 5, seed=4)
    signatures = plan_signatures(PROBESETS, 30, 2, 5, seed=4)
    assert len(plan) == 30 and isinstance(plan, SignaturePlan)
    assert plan[0] == signatures[0] and plan[-1] == signatures[-1] == plan[29]
    assert plan[3:9] == signatures[3:9] and plan[::7] == signatures[::7]
    assert signatures[5] in plan and plan.index(signatures[5]) == 5
    with pytest.raises(IndexError):
        plan[30]
    assert plan.indices.dtype == np.int32 and plan.nbytes == plan.indices.nbytes + 31 * 8
    shifted = plan.with_first_id(100)
    assert [s.id for s in shifted] == list(range(100, 130)) and plan[0].id == 0


def test_compact_batches_are_the_batches():
    for batch in (1, 2, 5):
        compact = plan_batch_compact(PROBESETS, 30, 3, 6, seed=8, batch=batch)
        assert list(compact) == plan_batch(PROBESETS, 30, 3, 6, seed=8, batch=batch)
    protocol = SearchProtocol("ab", "AML", "ALL", ("svm",), 10, 1, 30, 3, 6, 20, 5)
    assert list(protocol.plan_compact(PROBESETS, 3)) == protocol.plan(PROBESETS, 3)


@pytest.mark.parametrize("per_slice", [1, 3, 7, 30, 31])
def test_streamed_slice_inputs_are_the_registered_json_texts(per_slice):
    names = PROBESETS[:-1] + ['quote"back\\slash\u00e9']
    plan = plan_batch_compact(names, 30, 2, 5, seed=4, batch=2)
    packed = pack_slices(list(plan), per_slice)
    expected = [(s["slice"], json.dumps(s, sort_keys=True)) for s in packed]
    assert list(iter_slice_inputs(plan, per_slice)) == expected
    assert list(iter_slice_inputs(list(plan), per_slice)) == expected
    assert list(iter_slices(plan, per_slice)) == packed == pack_slices(plan, per_slice)
    assert slice_count(len(plan), per_slice) == len(packed)


def test_slices_are_made_one_at_a_time():
    plan = plan_compact(PROBESETS, 40, 2, 5, seed=4)
    stream = iter_slice_inputs(plan, 10)
    assert next(stream)[0] == 1 and next(stream)[0] == 2
    with pytest.raises(ValueError, match="signatures_per_slice"):
        next(iter_slice_inputs(plan, 0))
    with pytest.raises(ValueError, match="signatures_per_slice"):
        slice_count(10, 0)


def test_null_panel_takes_a_compact_plan():
    plan = plan_compact([f"p{i}" for i in range(50)], 40, 2, 4, seed=1)
    assert null_panel(plan, 7, seed=1) == null_panel(list(plan), 7, seed=1)
    assert null_panel(plan, 0, seed=1) == list(plan)


def test_the_signatures_of_slices_are_those_packed_into_them():
    plan = plan_batch_compact(PROBESETS, 23, 2, 4, seed=0, batch=3)
    packed = pack_slices(plan, 5)
    wanted = [2, 5, 9]
    expected = {s["id"] for sl in packed if sl["slice"] in wanted for s in sl["signatures"]}
    assert slice_signature_ids(plan, 5, wanted) == expected == set(range(51, 56)) | {66, 67, 68}
    assert slice_signature_ids(list(plan), 5, wanted) == expected
    assert slice_signature_ids(plan, 5, []) == set()


def test_slice_inputs_of_chosen_slices_are_those_of_the_whole_stream():
    plan = plan_batch_compact(PROBESETS, 23, 2, 4, seed=0, batch=2)
    every = dict(iter_slice_inputs(plan, 5))
    for signatures in (plan, list(plan)):
        assert list(iter_slice_inputs(signatures, 5, [4, 2])) == [(4, every[4]), (2, every[2])]
        with pytest.raises(ValueError, match="slice 6 is not in 1..5"):
            list(iter_slice_inputs(signatures, 5, [6]))
