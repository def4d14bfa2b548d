"""SQLite storage of runs and slice results (WAL; a result is acknowledged after commit)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from tasks.status import RunStatus, SliceConflict, SliceError

from . import state

log = logging.getLogger(__name__)
# SQLite's INTEGER range: larger numbers are refused as input, never sent to a query.
MAX_INTEGER = 2**63 - 1
# Reads in WAL mode are never blocked by a writer; this only bounds rare recovery waits.
READ_BUSY_MS = 5000
# Short: a database write-locked by another process answers 503 soon, not after 30 s.
WRITE_BUSY_MS = 2000
# How long a request waits for its queued write (config WRITE_WAIT_SECONDS) before it is
# dropped and answered 503; a write the writer has started is waited for to its outcome.
WRITE_WAIT_SECONDS = 30.0
# The readiness check's write attempt waits at most this long for the writer.
READY_WAIT_SECONDS = 5.0


# The run_inputs rows of a run's config and of its work function's source: slice numbers
# are never negative.
CONFIG_SLICE = -1
WORK_SLICE = -2


class DatabaseBusy(Exception):
    """The database cannot take a write now (locked by another process): retry later."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    expected TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    closed_at REAL  -- intake closed (POST /runs/<id>/close) until registered again
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    attempt INTEGER NOT NULL,
    slices TEXT NOT NULL,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE IF NOT EXISTS run_inputs (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    slice INTEGER NOT NULL,  -- CONFIG_SLICE: the run's config; WORK_SLICE: its work function
    content TEXT NOT NULL,
    PRIMARY KEY (run_id, slice)
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    slice INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    element_type TEXT,
    content TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (run_id, slice)
);
CREATE TABLE IF NOT EXISTS slice_errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    slice INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS slice_errors_run ON slice_errors (run_id, slice);
CREATE TABLE IF NOT EXISTS slice_conflicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    slice INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


def connect(path: Path, busy_ms: int = READ_BUSY_MS) -> sqlite3.Connection:
    """Open the database with durable WAL settings."""
    conn = sqlite3.connect(
        path, timeout=busy_ms / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we acknowledge it, even across power loss.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    return conn


def init_db(path: Path) -> None:
    """Create the database file (owner-only) and schema if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # SQLite creates the -wal and -shm files with the database file's mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
        # Databases from before runs could be finished, or their intake closed.
        for column in ("finished_at", "closed_at"):
            if column not in columns:
                conn.execute(f"ALTER TABLE runs ADD COLUMN {column} REAL")
    finally:
        conn.close()


class GroupWriter:
    """The one writer of an app's database: runs queued writes in shared transactions.

    Concurrent writers through SQLite's busy handler sleep in steps of up to 100 ms (a
    0.8 s p99 at 32 clients); a single writer that commits whatever has queued up pays one
    fsync for many results. A write's caller is answered only after its COMMIT returned.
    """

    MAX_BATCH = 256

    def __init__(self, path: Path) -> None:
        self._conn = connect(path, WRITE_BUSY_MS)
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, name=f"writer:{path.name}", daemon=True).start()

    def submit(self, write: Callable[[sqlite3.Connection], object], timeout: float):
        """Run `write(conn)` in a transaction; its value once committed, TimeoutError if dropped."""
        # After `timeout` an unstarted write is dropped (nothing stored); one the writer has
        # claimed is waited for, so that a timeout never hides a commit.
        future: Future = Future()
        self._queue.put((write, future))
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            if future.cancel():  # atomic: fails once the writer has claimed the write
                raise
        log.info("a write outlasted the %.1f s wait after it started: waiting for it", timeout)
        return future.result()

    def _run(self) -> None:
        while True:
            batch = self._claim([self._queue.get()])
            while len(batch) < self.MAX_BATCH:
                try:
                    batch += self._claim([self._queue.get_nowait()])
                except queue.Empty:
                    break
            if not batch:  # every caller gave up before the writer came to it
                continue
            try:
                self._commit(batch)
            except Exception as exc:  # the writer lives on; this batch's callers hear it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    @staticmethod
    def _claim(items: list) -> list:
        """The items whose callers still wait, each marked started (then not cancellable)."""
        return [item for item in items if item[1].set_running_or_notify_cancel()]

    def _commit(self, batch: list) -> None:
        outcomes: list[tuple[object, Exception | None]] = []  # (value, error) of each write
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for write, _ in batch:
                # A savepoint per write: one failing write does not undo the others.
                self._conn.execute("SAVEPOINT one")
                try:
                    outcomes.append((write(self._conn), None))
                    self._conn.execute("RELEASE one")
                except Exception as exc:  # handed to that write's caller
                    self._conn.execute("ROLLBACK TO one")
                    self._conn.execute("RELEASE one")
                    outcomes.append((None, exc))
            self._conn.execute("COMMIT")
        except Exception as exc:  # nothing of the batch is committed: all callers hear it
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            outcomes = [(None, exc)] * len(batch)
        for (_, future), (value, error) in zip(batch, outcomes):
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Store:
    """One app's database: its group writer, per-thread read connections, expected slices."""

    def __init__(self, path: Path, write_wait: float = WRITE_WAIT_SECONDS) -> None:
        init_db(path)
        self.path = path
        self.write_wait = write_wait
        self.writer = GroupWriter(path)
        self._local = threading.local()
        self._expected: dict[str, frozenset[int]] = {}

    def reader(self) -> sqlite3.Connection:
        """This thread's connection, opened once and kept.

        Opening per request cost more than the insert itself: connecting, the pragmas, and
        the WAL checkpoint SQLite runs when the last connection closes.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    def write(self, operation: Callable[[sqlite3.Connection], object], wait: float | None = None):
        """Run a write through the group writer; DatabaseBusy (nothing stored) if it cannot."""
        wait = self.write_wait if wait is None else min(wait, self.write_wait)
        try:
            return self.writer.submit(operation, timeout=wait)
        except TimeoutError as exc:
            raise DatabaseBusy("the database writer is backed up") from exc
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise DatabaseBusy("the database is locked by another process") from exc
            raise

    def expected_slices(self, run: sqlite3.Row) -> frozenset[int]:
        """A run's expected slice numbers (registration is immutable, so cached)."""
        if run["run_id"] not in self._expected:
            self._expected[run["run_id"]] = frozenset(json.loads(run["expected"]))
        return self._expected[run["run_id"]]


def write(operation: Callable[[sqlite3.Connection], object]):
    """Run a write through the app database's group writer."""
    return state.current().store.write(operation)


def check_writable() -> None:
    """Take the write lock once through the writer (an empty transaction); DatabaseBusy if not."""
    state.current().store.write(lambda conn: None, wait=READY_WAIT_SECONDS)


def get_db() -> sqlite3.Connection:
    """This thread's connection to the app's database."""
    return state.current().store.reader()


def expected_slices(run: sqlite3.Row) -> frozenset[int]:
    """A run's expected slice numbers."""
    return state.current().store.expected_slices(run)


def get_run(run_id: str) -> sqlite3.Row | None:
    """A registered run, or None."""
    return get_db().execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()


def register_run(run_id: str, dataset: str, token_sha256: str, expected: list[int]) -> bool:
    """Insert a run; True if new or registered with the same dataset and slices before.

    Registering an unfinished run again (a resumed flow run) gives it the new token: the
    earlier token, in the earlier jobs' URLs, stops working; a closed intake opens again.
    """
    row = (run_id, dataset, token_sha256, json.dumps(expected), time.time())

    def insert_or_rotate(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO runs (run_id, dataset, token_sha256, expected, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            row,
        )
        conn.execute(
            "UPDATE runs SET token_sha256 = ?, closed_at = NULL"
            " WHERE run_id = ? AND dataset = ? AND expected = ? AND finished_at IS NULL",
            (token_sha256, run_id, dataset, row[3]),
        )

    write(insert_or_rotate)
    stored = get_run(run_id)
    assert stored is not None, "written or already there just now; runs are never deleted"
    return (stored["dataset"], stored["token_sha256"], stored["expected"]) == row[1:4]


def revoke_token(run_id: str) -> None:
    """Give a run a token nobody holds (the hash of a discarded random value)."""
    unusable = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
    write(
        lambda conn: conn.execute(
            "UPDATE runs SET token_sha256 = ? WHERE run_id = ?", (unusable, run_id)
        )
    )


def finish_run(run_id: str) -> None:
    """Mark a run finished (once; later calls keep the first time) and drop its inputs."""

    def finish(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE runs SET finished_at = COALESCE(finished_at, ?) WHERE run_id = ?",
            (time.time(), run_id),
        )
        conn.execute("DELETE FROM run_inputs WHERE run_id = ?", (run_id,))

    write(finish)


def close_intake(run_id: str) -> None:
    """Refuse the run's further results and errors (until it is registered again)."""
    write(
        lambda conn: conn.execute(
            "UPDATE runs SET closed_at = COALESCE(closed_at, ?) WHERE run_id = ?",
            (time.time(), run_id),
        )
    )


class IntakeClosed(Exception):
    """The run takes no more results (closed or finished): nothing was stored."""


def intake_refusal(run: sqlite3.Row) -> str | None:
    """Why a run takes no more results (finished, or its intake closed), or None."""
    if run["finished_at"] is not None:
        return f"run {run['run_id']!r} is finished and takes no more results"
    if run["closed_at"] is not None:
        return (
            f"run {run['run_id']!r} has closed its intake (its results were collected);"
            " nothing was stored"
        )
    return None


def _check_intake(conn: sqlite3.Connection, run_id: str) -> None:
    """Raise IntakeClosed inside a write, so that a close and a result are ordered."""
    refusal = intake_refusal(
        conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    )
    if refusal:
        raise IntakeClosed(refusal)


class InputConflict(Exception):
    """Inputs already registered with other content (the request stored nothing)."""

    def __init__(self, slices: list[int]) -> None:
        super().__init__(f"slices {slices} registered with other content")
        self.slices = slices


def store_inputs(run_id: str, inputs: dict[int, str]) -> list[int]:
    """Store a run's inputs (slice -> text), all or none; the slices stored differently."""

    def insert(conn: sqlite3.Connection) -> None:
        conflicts = []
        for slice_no, content in inputs.items():
            row = conn.execute(
                "SELECT content FROM run_inputs WHERE run_id = ? AND slice = ?", (run_id, slice_no)
            ).fetchone()
            if row is None:
                conn.execute("INSERT INTO run_inputs VALUES (?, ?, ?)", (run_id, slice_no, content))
            elif row["content"] != content:
                conflicts.append(slice_no)
        if conflicts:  # the group writer rolls back this write's savepoint
            raise InputConflict(conflicts)

    try:
        write(insert)
    except InputConflict as exc:
        return exc.slices
    return []


def get_input(run_id: str, slice_no: int) -> str | None:
    """A registered input's text (CONFIG_SLICE: the config, WORK_SLICE: the work), or None."""
    row = (
        get_db()
        .execute(
            "SELECT content FROM run_inputs WHERE run_id = ? AND slice = ?", (run_id, slice_no)
        )
        .fetchone()
    )
    return None if row is None else row["content"]


def register_attempt(run_id: str, attempt: int, slices: list[int]) -> bool:
    """Map a deployment's job elements (1..n) to plan slices; False on a conflict."""
    row = (run_id, attempt, json.dumps(slices))
    write(lambda conn: conn.execute("INSERT OR IGNORE INTO attempts VALUES (?, ?, ?)", row))
    return attempt_slices(run_id, attempt) == slices


def attempt_slices(run_id: str, attempt: int) -> list[int] | None:
    """The plan slices of a registered attempt, or None."""
    row = (
        get_db()
        .execute("SELECT slices FROM attempts WHERE run_id = ? AND attempt = ?", (run_id, attempt))
        .fetchone()
    )
    return None if row is None else json.loads(row["slices"])


def store_result(
    run_id: str,
    slice_no: int,
    attempt: int,
    element_type: str | None,
    content: str,
    content_sha256: str,
) -> str:
    """Store a slice result once: 'stored', 'duplicate' or 'conflict'."""

    def insert(conn: sqlite3.Connection) -> str:
        _check_intake(conn, run_id)
        row = conn.execute(
            "SELECT content_sha256 FROM results WHERE run_id = ? AND slice = ?",
            (run_id, slice_no),
        ).fetchone()
        if row is not None:
            return "duplicate" if row["content_sha256"] == content_sha256 else "conflict"
        conn.execute(
            "INSERT INTO results (run_id, slice, attempt, element_type, content,"
            " content_sha256, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, slice_no, attempt, element_type, content, content_sha256, time.time()),
        )
        return "stored"

    return write(insert)


def store_error(run_id: str, slice_no: int, attempt: int, error: str) -> None:
    """Record a slice's error report."""
    row = (run_id, slice_no, attempt, error, time.time())

    def insert(conn: sqlite3.Connection) -> None:
        _check_intake(conn, run_id)
        conn.execute(
            "INSERT INTO slice_errors (run_id, slice, attempt, error, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            row,
        )

    write(insert)


def store_conflict(run_id: str, slice_no: int, attempt: int, content_sha256: str) -> None:
    """Record a refused result that differed from the stored one (a re-executed slice)."""
    row = (run_id, slice_no, attempt, content_sha256, time.time())

    def insert(conn: sqlite3.Connection) -> None:
        _check_intake(conn, run_id)
        conn.execute(
            "INSERT INTO slice_conflicts (run_id, slice, attempt, content_sha256, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            row,
        )

    write(insert)


def run_status(run: sqlite3.Row) -> RunStatus:
    """Expected, received, errored (without a later result) and missing slices."""
    db = get_db()
    expected = json.loads(run["expected"])
    received = {
        r[0] for r in db.execute("SELECT slice FROM results WHERE run_id = ?", (run["run_id"],))
    }
    errors: dict[int, SliceError] = {}
    for r in db.execute(
        "SELECT slice, attempt, error FROM slice_errors WHERE run_id = ? ORDER BY id",
        (run["run_id"],),
    ):
        if r["slice"] not in received:
            errors[r["slice"]] = {"slice": r["slice"], "attempt": r["attempt"], "error": r["error"]}
    missing = [s for s in expected if s not in received and s not in errors]
    attempts = [
        r[0] for r in db.execute("SELECT attempt FROM attempts WHERE run_id = ?", (run["run_id"],))
    ]
    conflicts: list[SliceConflict] = [
        {"slice": r["slice"], "attempt": r["attempt"]}
        for r in db.execute(
            "SELECT slice, attempt FROM slice_conflicts WHERE run_id = ? ORDER BY id",
            (run["run_id"],),
        )
    ]
    return {
        "run_id": run["run_id"],
        "dataset": run["dataset"],
        "expected": len(expected),
        "received": sorted(received),
        "errored": [errors[s] for s in sorted(errors)],
        "missing": missing,
        "conflicts": conflicts,
        "complete": len(received) == len(expected),
        "finished": run["finished_at"] is not None,
        # Intake closed: the sink takes nothing more (closed, or finished).
        "closed": run["closed_at"] is not None or run["finished_at"] is not None,
        "next_attempt": 1 + max(attempts, default=0),
    }


def results_page(run_id: str, after: int, limit: int) -> tuple[list[dict], int]:
    """Results with a cursor greater than `after`, and the next cursor."""
    rows = (
        get_db()
        .execute(
            "SELECT id, slice, attempt, content FROM results WHERE run_id = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (run_id, after, limit),
        )
        .fetchall()
    )
    items = [
        {
            "cursor": r["id"],
            "slice": r["slice"],
            "attempt": r["attempt"],
            "content": json.loads(r["content"]),
        }
        for r in rows
    ]
    return items, (rows[-1]["id"] if rows else after)
