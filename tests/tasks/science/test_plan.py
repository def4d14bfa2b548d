import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.science.plan import pack_slices, plan_signatures, signature_lengths

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
