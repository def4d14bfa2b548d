"""The signature plan: a pure, deterministic function from probesets and a seed to slices.

The generator is SplitMix64, so that the same plan comes out on every machine, Python and
numpy version. numpy's legacy `RandomState` would too (its stream is frozen by numpy's
policy, NEP 19; the work function's label permutations rely on that), unlike numpy's
`Generator` methods and most of Python's `random`. SplitMix64 is chosen because it is
counter-based: output k is a closed form of the seed and k, so outputs are computed in bulk
with numpy's wrapping uint64 arithmetic (exact on every version) and any chunk on its own,
and a dozen lines reproduce it anywhere. The swaps stay sequential, and a plan is held
compactly (probeset indices, `SignaturePlan`), so a search of millions of signatures costs
tens of MB; slices can be streamed (`iter_slice_inputs`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the worker's types, without loading scikit-learn
    from tasks.science.worker import SliceDatum

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
# Probeset draws per numpy pass: bounds the temporaries (about 2 MB of uint64 per array).
_DRAW_CHUNK = 262_144


class SplitMix64:
    """A tiny, portable 64-bit generator (Steele, Lea and Flood 2014)."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def next_u64(self) -> int:
        """Return the next 64-bit unsigned integer."""
        self.state = (self.state + _GAMMA) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Return an unbiased integer in [0, n) by rejection sampling."""
        limit = _MASK64 - (_MASK64 + 1) % n
        while True:
            x = self.next_u64()
            if x <= limit:
                return x % n


@dataclass(frozen=True)
class Signature:
    """One random gene signature."""

    id: int
    probesets: tuple[str, ...]


def signature_lengths(n_signatures: int, min_len: int, max_len: int) -> list[int]:
    """Spread lengths evenly over [min_len, max_len]; each length occurs n/k times (+-1)."""
    return _length_array(n_signatures, min_len, max_len).tolist()


def _check_plan(probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int) -> None:
    """Raise ValueError for a plan that cannot be drawn."""
    if n_signatures < 1:
        raise ValueError(f"n_signatures must be >= 1, got {n_signatures}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if max_len > len(probesets):
        raise ValueError(f"max_len={max_len} exceeds the {len(probesets)} probesets available")
    if len(set(probesets)) != len(probesets):
        raise ValueError("probesets must be unique")


def splitmix64_outputs(seed: int, first: int, count: int) -> np.ndarray:
    """Outputs `first`..`first + count - 1` (the first call is 1) of `SplitMix64(seed)`."""
    counters = np.arange(first, first + count, dtype=np.uint64)
    z = np.uint64(seed & _MASK64) + counters * np.uint64(_GAMMA)  # wraps mod 2**64, exactly
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _rejection_limits(bounds: np.ndarray) -> np.ndarray:
    """`SplitMix64.below`'s largest accepted output for each bound: 2**64 - 1 - 2**64 % n."""
    mask = np.uint64(_MASK64)
    return mask - (mask % bounds + np.uint64(1)) % bounds


def uniform_below(seed: int, used: int, bounds: np.ndarray) -> tuple[np.ndarray, int]:
    """`SplitMix64.below(n)` for each n of `bounds` after `used` outputs; and outputs used then."""
    draws = np.empty(len(bounds), dtype=np.uint64)
    done = 0
    while done < len(bounds):
        outputs = splitmix64_outputs(seed, used + 1, len(bounds) - done)
        rest = bounds[done:]
        rejected = np.flatnonzero(outputs > _rejection_limits(rest))
        accepted = int(rejected[0]) if rejected.size else len(rest)
        draws[done : done + accepted] = outputs[:accepted] % rest[:accepted]
        # A rejected output is consumed and its draw retried with the next one, as in below().
        done, used = done + accepted, used + accepted + (1 if rejected.size else 0)
    return draws, used


def _length_array(n_signatures: int, min_len: int, max_len: int) -> np.ndarray:
    """`signature_lengths` as an int64 array (exact: no product exceeds 2**63)."""
    span = max_len - min_len + 1
    return min_len + (np.arange(n_signatures, dtype=np.int64) * span) // n_signatures


def partial_shuffle(pool: list, positions: np.ndarray, seed: int, used: int) -> tuple[list, int]:
    """Partial Fisher-Yates on `pool` (changed): the values drawn into `positions`, outputs used."""
    # The one shuffle of plans, splits and null panels: each position j in turn gets a
    # uniform draw of pool[j:]; positions restart for each of several draws on one pool.
    draws, used = uniform_below(seed, used, (len(pool) - positions).astype(np.uint64))
    picks = (positions + draws.astype(np.int64)).tolist()
    drawn = []
    for j, k in zip(positions.tolist(), picks, strict=True):
        value = pool[k]
        pool[k] = pool[j]
        pool[j] = value
        drawn.append(value)
    return drawn, used


def _draw_chunk(pool: list[int], lengths: np.ndarray, seed: int, used: int) -> tuple[list, int]:
    """Some signatures' draws from the persistent `pool`, in order: O(length) each, distinct."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.arange(int(lengths.sum()), dtype=np.int64) - starts  # j within a signature
    return partial_shuffle(pool, positions, seed, used)


def plan_indices(
    n_probesets: int, n_signatures: int, min_len: int, max_len: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The plan as probeset indices (int32, signature after signature) and offsets (int64)."""
    lengths = _length_array(n_signatures, min_len, max_len)
    offsets = np.zeros(n_signatures + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    indices = np.empty(int(offsets[-1]), dtype=np.int32)
    pool, used, step = list(range(n_probesets)), 0, max(1, _DRAW_CHUNK // max_len)
    for start in range(0, n_signatures, step):
        stop = min(start + step, n_signatures)
        drawn, used = _draw_chunk(pool, lengths[start:stop], seed, used)
        indices[offsets[start] : offsets[stop]] = drawn
    return indices, offsets


@dataclass(frozen=True, eq=False)
class SignaturePlan(Sequence[Signature]):
    """A plan held compactly: a read-only sequence of `Signature`, built on access."""

    probesets: tuple[str, ...]
    indices: np.ndarray  # int32 probeset indices, signature after signature
    offsets: np.ndarray  # int64, len(self) + 1: signature i is indices[offsets[i]:offsets[i+1]]
    first_id: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self._signature(i) for i in range(*item.indices(len(self)))]
        i = item + len(self) if item < 0 else item
        if not 0 <= i < len(self):
            raise IndexError(f"signature {item} of a plan of {len(self)}")
        return self._signature(i)

    def __iter__(self) -> Iterator[Signature]:
        return (self._signature(i) for i in range(len(self)))

    def _signature(self, i: int) -> Signature:
        names = self.probesets
        chosen = self.indices[self.offsets[i] : self.offsets[i + 1]].tolist()
        return Signature(id=self.first_id + i, probesets=tuple(names[k] for k in chosen))

    def with_first_id(self, first_id: int) -> SignaturePlan:
        """The same signatures numbered from `first_id` (arrays shared, not copied)."""
        return dataclasses.replace(self, first_id=first_id)

    @functools.cached_property
    def quoted_probesets(self) -> list[str]:
        """Each probeset name as JSON text (computed once)."""
        return [json.dumps(name) for name in self.probesets]

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return int(self.indices.nbytes + self.offsets.nbytes)


def plan_compact(
    probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int, seed: int
) -> SignaturePlan:
    """`plan_signatures` held compactly: the same signatures, a few bytes a probeset."""
    _check_plan(probesets, n_signatures, min_len, max_len)
    indices, offsets = plan_indices(len(probesets), n_signatures, min_len, max_len, seed)
    return SignaturePlan(tuple(probesets), indices, offsets)


def plan_signatures(
    probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int, seed: int
) -> list[Signature]:
    """Draw `n_signatures` signatures of distinct probesets, deterministically from `seed`."""
    return list(plan_compact(probesets, n_signatures, min_len, max_len, seed))


def batch_seed(seed: int, batch: int) -> int:
    """The plan seed of a search's batch: the run's seed for batch 1, derived for later ones."""
    if batch < 1:
        raise ValueError(f"batches are numbered from 1, got {batch}")
    if batch == 1:
        return seed
    return SplitMix64(seed ^ (batch * 0x9E3779B97F4A7C15)).next_u64() % 2**32


def plan_batch_compact(
    probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int, seed: int, batch: int
) -> SignaturePlan:
    """Batch `batch` of a search, compactly: ids following the earlier batches'."""
    plan = plan_compact(probesets, n_signatures, min_len, max_len, batch_seed(seed, batch))
    return plan.with_first_id((batch - 1) * n_signatures)


def plan_batch(
    probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int, seed: int, batch: int
) -> list[Signature]:
    """Batch `batch` of a search: its own signatures, ids following the earlier batches'."""
    return list(plan_batch_compact(probesets, n_signatures, min_len, max_len, seed, batch))


@dataclass(frozen=True)
class SearchProtocol:
    """Everything that must match for batches of a search to be pooled in one report."""

    dataset_sha256: str
    case: str
    control: str
    classifiers: tuple[str, ...]
    cv_folds: int
    seed: int
    n_signatures: int
    min_len: int
    max_len: int
    n_permutations: int
    null_signatures: int
    validation_fraction: float = 0.0
    null_candidates: int = 0

    def key(self) -> str:
        """A short stable name for the protocol."""
        canonical = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def plan(self, probesets: Sequence[str], batch: int) -> list[Signature]:
        """The signatures of batch `batch` of this search."""
        return plan_batch(
            probesets, self.n_signatures, self.min_len, self.max_len, self.seed, batch
        )

    def permutations(self, batch: int) -> list[int]:
        """The label-permutation seeds after batch `batch`: each batch adds its own when
        candidates are screened (a permutation then costs them only), else the first batch's."""
        grows = self.null_signatures > 0 and self.null_candidates > 0
        return permutation_seeds(self.n_permutations * (batch if grows else 1), self.seed)

    def plan_compact(self, probesets: Sequence[str], batch: int) -> SignaturePlan:
        """The signatures of batch `batch` of this search, held compactly."""
        return plan_batch_compact(
            probesets, self.n_signatures, self.min_len, self.max_len, self.seed, batch
        )


def stratified_split(
    labels: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Row indices of a seeded split keeping each label's share: (discovery, validation)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    split_seed, used = seed ^ 0x0DD_5EED, 0
    validation = []
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        n_validation = round(fraction * len(rows))
        if not 1 <= n_validation < len(rows):
            raise ValueError(
                f"a validation fraction of {fraction} leaves label {label!r} "
                f"({len(rows)} samples) without discovery or validation samples"
            )
        drawn, used = partial_shuffle(rows, np.arange(n_validation), split_seed, used)
        validation.extend(drawn)
    held_out = set(validation)
    return [i for i in range(len(labels)) if i not in held_out], sorted(validation)


def _check_per_slice(signatures_per_slice: int) -> None:
    if signatures_per_slice < 1:
        raise ValueError(f"signatures_per_slice must be >= 1, got {signatures_per_slice}")


def slice_count(n_signatures: int, signatures_per_slice: int) -> int:
    """How many slices `n_signatures` make at `signatures_per_slice` a slice."""
    _check_per_slice(signatures_per_slice)
    return -(-n_signatures // signatures_per_slice)


def slice_signature_ids(
    signatures: Sequence[Signature], signatures_per_slice: int, slice_numbers: Sequence[int]
) -> set[int]:
    """Ids of the signatures packed into the given slices (numbered from 1), without packing."""
    _check_per_slice(signatures_per_slice)
    ids: set[int] = set()
    for number in slice_numbers:
        start = (number - 1) * signatures_per_slice
        chunk = signatures[start : start + signatures_per_slice] if number >= 1 else []
        ids.update(s.id for s in chunk)
    return ids


def iter_slices(signatures: Sequence[Signature], signatures_per_slice: int) -> Iterator[SliceDatum]:
    """`pack_slices`, one slice at a time (a compact plan stays compact)."""
    _check_per_slice(signatures_per_slice)
    for number, start in enumerate(range(0, len(signatures), signatures_per_slice), start=1):
        chunk = signatures[start : start + signatures_per_slice]
        yield {
            "slice": number,
            "signatures": [{"id": s.id, "probesets": list(s.probesets)} for s in chunk],
        }


def iter_slice_inputs(
    signatures: Sequence[Signature],
    signatures_per_slice: int,
    numbers: Iterable[int] | None = None,
) -> Iterator[tuple[int, str]]:
    """(slice number, datum as the JSON text registered), one at a time: all, or `numbers`."""
    n_slices = slice_count(len(signatures), signatures_per_slice)
    for number in range(1, n_slices + 1) if numbers is None else numbers:
        if not 1 <= number <= n_slices:
            raise ValueError(f"slice {number} is not in 1..{n_slices}")
        start = (number - 1) * signatures_per_slice
        if isinstance(signatures, SignaturePlan):
            yield number, _plan_slice_text(signatures, start, signatures_per_slice, number)
        else:
            chunk = signatures[start : start + signatures_per_slice]
            datum = {
                "slice": number,
                "signatures": [{"id": s.id, "probesets": list(s.probesets)} for s in chunk],
            }
            yield number, json.dumps(datum, sort_keys=True)


def _plan_slice_text(plan: SignaturePlan, start: int, size: int, number: int) -> str:
    """`json.dumps(datum, sort_keys=True)` of a slice, written from the index arrays."""
    quoted = plan.quoted_probesets
    bounds = plan.offsets[start : start + size + 1].tolist()
    chosen = plan.indices[bounds[0] : bounds[-1]].tolist()
    items = []
    for i in range(len(bounds) - 1):
        names = ", ".join(
            [quoted[k] for k in chosen[bounds[i] - bounds[0] : bounds[i + 1] - bounds[0]]]
        )
        items.append(f'{{"id": {plan.first_id + start + i}, "probesets": [{names}]}}')
    return f'{{"signatures": [{", ".join(items)}], "slice": {number}}}'


def pack_slices(signatures: Sequence[Signature], signatures_per_slice: int) -> list[SliceDatum]:
    """Pack signatures into slice data `{"slice": k, "signatures": [...]}`, k from 1."""
    return list(iter_slices(signatures, signatures_per_slice))


def null_panel(signatures: Sequence[Signature], n_null: int, seed: int) -> list[Signature]:
    """The signatures re-evaluated on permuted labels: all, or a seeded subset of `n_null`."""
    if n_null <= 0 or n_null >= len(signatures):
        return list(signatures)
    drawn, _ = partial_shuffle(
        list(range(len(signatures))), np.arange(n_null), seed ^ 0x5EED_0F_A11, 0
    )
    return [signatures[i] for i in sorted(drawn)]


def permutation_seeds(n_permutations: int, seed: int) -> list[int]:
    """The label-permutation seeds of a run, derived from its seed."""
    return [(seed * 1_000_003 + j) % 2**32 for j in range(n_permutations)]


def permutation_slices(
    per_permutation: Sequence[tuple[int, Sequence[Signature]]], signatures_per_slice: int
) -> list[SliceDatum]:
    """Each permutation's signatures packed into slices, numbered from 1 in that order."""
    slices: list[SliceDatum] = []
    for permutation_seed, signatures in per_permutation:
        for chunk in pack_slices(signatures, signatures_per_slice):
            slices.append({**chunk, "slice": len(slices) + 1, "permutation_seed": permutation_seed})
    return slices
