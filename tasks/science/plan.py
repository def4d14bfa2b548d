"""The signature plan: a pure, deterministic function from probesets and a seed to slices.

The generator is a pure-Python SplitMix64 so that the same plan comes out on every
machine, Python and numpy version (numpy's and Python's own generators promise no
stream stability across versions).
"""

from __future__ import annotations

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


def permutation_slices(top: list[dict], n_permutations: int, seed: int) -> list[dict]:
    """One slice per label permutation, each re-evaluating the top signatures."""
    return [
        {"slice": j + 1, "signatures": top, "permutation_seed": (seed * 1_000_003 + j) % 2**32}
        for j in range(n_permutations)
    ]
