"""A run's status as the server answers `GET /runs/<id>/status`: one type for both sides."""

from __future__ import annotations

from typing import TypedDict


class SliceError(TypedDict):
    """A slice's last error, when no result came after it."""

    slice: int
    attempt: int
    error: str


class SliceConflict(TypedDict):
    """A re-execution whose result disagreed with the one stored."""

    slice: int
    attempt: int


class RunStatus(TypedDict):
    """Expected, received, errored and missing slices of a server run, and its state."""

    run_id: str
    dataset: str
    expected: int
    received: list[int]
    errored: list[SliceError]
    missing: list[int]
    conflicts: list[SliceConflict]
    complete: bool
    finished: bool
    closed: bool  # intake closed: the sink takes nothing more (closed, or finished)
    next_attempt: int
