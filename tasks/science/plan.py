"""The signature plan: a pure, deterministic function from probesets and a seed to slices.

The generator is a pure-Python SplitMix64 so that the same plan comes out on every
machine, Python and numpy version (numpy's and Python's own generators promise no
stream stability across versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

_MASK64 = (1 << 64) - 1


class SplitMix64:
    """A tiny, portable 64-bit generator (Steele, Lea and Flood 2014)."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def next_u64(self) -> int:
        """Return the next 64-bit unsigned integer."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
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
    span = max_len - min_len + 1
    return [min_len + (i * span) // n_signatures for i in range(n_signatures)]


def plan_signatures(
    probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int, seed: int
) -> list[Signature]:
    """Draw `n_signatures` signatures of distinct probesets, deterministically from `seed`."""
    if n_signatures < 1:
        raise ValueError(f"n_signatures must be >= 1, got {n_signatures}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if max_len > len(probesets):
        raise ValueError(f"max_len={max_len} exceeds the {len(probesets)} probesets available")
    if len(set(probesets)) != len(probesets):
        raise ValueError("probesets must be unique")
    rng = SplitMix64(seed)
    pool = list(probesets)
    signatures = []
    for sig_id, length in enumerate(signature_lengths(n_signatures, min_len, max_len)):
        # Partial Fisher-Yates on a persistent pool: O(length) per signature, all distinct.
        for j in range(length):
            k = j + rng.below(len(pool) - j)
            pool[j], pool[k] = pool[k], pool[j]
        signatures.append(Signature(id=sig_id, probesets=tuple(pool[:length])))
    return signatures


def batch_seed(seed: int, batch: int) -> int:
    """The plan seed of a search's batch: the run's seed for batch 1, derived for later ones."""
    if batch < 1:
        raise ValueError(f"batches are numbered from 1, got {batch}")
    if batch == 1:
        return seed
    return SplitMix64(seed ^ (batch * 0x9E3779B97F4A7C15)).next_u64() % 2**32


def plan_batch(
    probesets: Sequence[str], n_signatures: int, min_len: int, max_len: int, seed: int, batch: int
) -> list[Signature]:
    """Batch `batch` of a search: its own signatures, ids following the earlier batches'."""
    signatures = plan_signatures(probesets, n_signatures, min_len, max_len, batch_seed(seed, batch))
    offset = (batch - 1) * n_signatures
    return [dataclasses.replace(s, id=s.id + offset) for s in signatures]


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

    def key(self) -> str:
        """A short stable name for the protocol."""
        canonical = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def plan(self, probesets: Sequence[str], batch: int) -> list[Signature]:
        """The signatures of batch `batch` of this search."""
        return plan_batch(
            probesets, self.n_signatures, self.min_len, self.max_len, self.seed, batch
        )


def stratified_split(
    labels: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Row indices of a seeded split keeping each label's share: (discovery, validation)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    rng = SplitMix64(seed ^ 0x0DD_5EED)
    validation = []
    for label in sorted(set(labels)):
        rows = [i for i, value in enumerate(labels) if value == label]
        n_validation = round(fraction * len(rows))
        if not 1 <= n_validation < len(rows):
            raise ValueError(
                f"a validation fraction of {fraction} leaves label {label!r} "
                f"({len(rows)} samples) without discovery or validation samples"
            )
        for j in range(n_validation):
            k = j + rng.below(len(rows) - j)
            rows[j], rows[k] = rows[k], rows[j]
        validation.extend(rows[:n_validation])
    held_out = set(validation)
    return [i for i in range(len(labels)) if i not in held_out], sorted(validation)


def pack_slices(signatures: Sequence[Signature], signatures_per_slice: int) -> list[dict]:
    """Pack signatures into slice data `{"slice": k, "signatures": [...]}`, k from 1."""
    if signatures_per_slice < 1:
        raise ValueError(f"signatures_per_slice must be >= 1, got {signatures_per_slice}")
    slices = []
    for start in range(0, len(signatures), signatures_per_slice):
        chunk = signatures[start : start + signatures_per_slice]
        slices.append(
            {
                "slice": len(slices) + 1,
                "signatures": [{"id": s.id, "probesets": list(s.probesets)} for s in chunk],
            }
        )
    return slices


def null_panel(signatures: Sequence[Signature], n_null: int, seed: int) -> list[Signature]:
    """The signatures re-evaluated on permuted labels: all, or a seeded subset of `n_null`."""
    if n_null <= 0 or n_null >= len(signatures):
        return list(signatures)
    rng = SplitMix64(seed ^ 0x5EED_0F_A11)
    order = list(range(len(signatures)))
    for j in range(n_null):
        k = j + rng.below(len(order) - j)
        order[j], order[k] = order[k], order[j]
    return [signatures[i] for i in sorted(order[:n_null])]


def permutation_seeds(n_permutations: int, seed: int) -> list[int]:
    """The label-permutation seeds of a run, derived from its seed."""
    return [(seed * 1_000_003 + j) % 2**32 for j in range(n_permutations)]


def permutation_slices(
    panel: Sequence[Signature], n_permutations: int, seed: int, signatures_per_slice: int
) -> list[dict]:
    """The null panel packed into slices once per label permutation, numbered from 1."""
    slices = []
    for permutation_seed in permutation_seeds(n_permutations, seed):
        for chunk in pack_slices(panel, signatures_per_slice):
            slices.append({**chunk, "slice": len(slices) + 1, "permutation_seed": permutation_seed})
    return slices
