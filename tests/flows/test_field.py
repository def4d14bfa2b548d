"""What a real week does to a run, staged with real processes: the command line, a dataset gone
bad for a while and a standalone server killed and started again in one run, a flow killed
mid-way, a full disk. Every wait is for a condition (a result stored, a process ended), never for the machine
to be fast enough.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from flows.cli import parse_parameters
from flows.params import flow_arguments
from flows.signature_search import signature_search
from flows.watchdog import alive, descendants
from server.embedded import free_loopback_port

from ..conftest import GOLUB, ROOT

# Whole runs on a loaded machine: bounded generously, against a hang only.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

# About 10 s of slices on one worker: long enough to break something while they run.
ARGV = [
    "--n-signatures", "40", "--signatures-per-slice", "2", "--min-len", "3", "--max-len", "6",
    "--classifiers", "logistic,decision_tree", "--cv-folds", "3", "--n-permutations", "0",
    "--workers", "1", "--seed", "7", "--retry-backoff", "0.2",
    "--max-slice-retries", "1", "--roc-signatures", "0", "--input", str(GOLUB),
]  # fmt: skip
# An outage lasts until the flow says it waits it out (so it has outlasted the client's own
# HTTP retries, however long they take here), then this long: the flow's next attempt, a
# second later, meets it too.
AFTER_NOTICE_SECONDS = 2.5


def flow_command(tmp_path: Path, *extra: str) -> tuple[list[str], dict]:
    """`python -m flows` on the small search with files under `tmp_path`, and its environment."""
    argv = [*ARGV, "--results-dir", str(tmp_path / "results"), "--data-dir", str(tmp_path / "data")]
    argv += ["--database", str(tmp_path / "db.sqlite3"), *extra]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    return [sys.executable, "-m", "flows", *argv], env


class PrefectHome:
    """A Prefect home whose database is migrated, made once (in the background) and copied.

    Each run's Prefect home is a copy: as after a first run on the machine, its temporary
    Prefect server starts without migrating a new database (some 5 s a start).
    """

    def __init__(self, root: Path) -> None:
        self.root, self.log = root / "home", root / "upgrade.log"
        self.root.mkdir()
        command = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
        env = {**os.environ, "PREFECT_HOME": str(self.root)}
        env.pop("PREFECT_API_URL", None)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def copy_to(self, home: Path) -> None:
        """Make `home` a copy of it, unless it is there already (a run resumed in its files)."""
        if home.exists():
            return
        assert self.process.wait(timeout=300) == 0, self.log.read_text()[-2000:]
        shutil.copytree(self.root, home)


HOME: PrefectHome | None = None  # set by the module's `prefect_home` fixture


@pytest.fixture(scope="module", autouse=True)
def prefect_home(tmp_path_factory):
    global HOME
    HOME = PrefectHome(tmp_path_factory.mktemp("prefect-home"))
    yield HOME
    HOME.process.kill()
    HOME.process.wait()
    HOME = None


def with_prefect_home(env: dict) -> dict:
    """`env`, once the Prefect home it names is there."""
    assert HOME is not None
    HOME.copy_to(Path(env["PREFECT_HOME"]))
    return env


class Background:
    """A command line run in the background, its output in files (a pipe would fill and block)."""

    def __init__(self, tmp_path: Path, command: list[str], env: dict) -> None:
        with_prefect_home(env)
        self.out, self.err = tmp_path / "flow.out", tmp_path / "flow.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        self.pid = self.process.pid

    def finish(self, timeout: float = 900) -> tuple[int, str, str]:
        """Wait for its end: (exit status, stdout, stderr)."""
        code = self.process.wait(timeout=timeout)
        return code, self.out.read_text(), self.err.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def outages_noticed(self) -> int:
        """How many outages the flow has said so far that it waits out."""
        return self.err.read_text().count("unreachable since")


def run_flow(tmp_path: Path, *extra: str, env_extra: dict | None = None, timeout=900):
    """Run the command line to its end."""
    command, env = flow_command(tmp_path, *extra)
    env.update(env_extra or {})
    return subprocess.run(
        command,
        cwd=ROOT,
        env=with_prefect_home(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tables(run_dir: Path) -> tuple[bytes, bytes]:
    return (run_dir / "signatures.tsv").read_bytes(), (run_dir / "genes.tsv").read_bytes()


def report_dir(done: subprocess.CompletedProcess) -> Path:
    assert done.returncode == 0, done.stderr[-4000:]
    return Path(done.stdout.split()[-1]).parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[bytes, bytes]:
    """The tables of the same search without any fault.

    The flow the command line runs, with the parameters it parses from the same options, run
    in this process (on the session's Prefect API): no second command line and temporary
    Prefect server for tables that do not depend on them.
    """
    command, _ = flow_command(tmp_path_factory.mktemp("reference"))
    result = signature_search(**flow_arguments(parse_parameters(command[3:])))
    return tables(Path(result["run_dir"]))


def results_stored(database: Path) -> int:
    """Results the server has acknowledged so far (0 while the database is not there)."""
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        try:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def wait_for(condition, what: str, timeout: float = 300.0) -> None:
    """Wait until `condition()` holds (the bound is only against a hung test)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


class StandaloneServer:
    """`python -m server` on a fixed loopback port, which can be killed and started again."""

    def __init__(self, tmp_path: Path) -> None:
        self.port, self.tmp = free_loopback_port(), tmp_path
        self.token = secrets.token_urlsafe(32)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "server", "--port", str(self.port)]
        command += ["--data-dir", str(self.tmp / "data"), "--db", str(self.tmp / "db.sqlite3")]
        env = {**os.environ, "SIGSEARCH_ADMIN_TOKEN": self.token}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self.answers, "the server to answer")

    def answers(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def outlast(flow: Background, noticed: int) -> None:
    """Keep an outage until the flow says it waits it out, and a while more.

    `noticed` is how many it had said before this one; a flow that ended instead is left to
    the test's assertions.
    """
    wait_for(
        lambda: flow.outages_noticed() > noticed or flow.process.poll() is not None,
        "the flow to notice the outage",
    )
    time.sleep(AFTER_NOTICE_SECONDS)


def corrupted(prepared: Path) -> bytes:
    """Make the served dataset file other data than the run prepared; return the good bytes."""
    good = prepared.read_bytes()
    prepared.write_bytes(good.replace(b"\t", b"\t9", 50))
    return good


def test_the_flow_rides_out_outages_of_its_dataset_and_of_its_server(tmp_path, reference):
    server = StandaloneServer(tmp_path)
    server.start()
    command, env = flow_command(tmp_path, "--server-url", server.url)
    env["SIGSEARCH_ADMIN_TOKEN"] = server.token
    flow = Background(tmp_path, command, env)
    database = tmp_path / "db.sqlite3"
    try:
        wait_for(lambda: results_stored(database) > 0, "a first result")
        (prepared,) = (tmp_path / "data").glob("dataset-*.tsv")
        noticed = flow.outages_noticed()
        good = corrupted(prepared)
        outlast(flow, noticed)  # each outage's length is the test's choice
        prepared.write_bytes(good)
        stored = results_stored(database)
        wait_for(lambda: results_stored(database) > stored, "results again")
        noticed = flow.outages_noticed()
        server.kill()
        outlast(flow, noticed)
        server.start()
        code, out, err = flow.finish()
    finally:
        flow.kill()
        server.kill()
    assert code == 0, err[-4000:]
    assert "unreachable since" in err and "back after" in err
    run_dir = Path(out.split()[-1]).parent
    assert tables(run_dir) == reference
    run = json.loads((run_dir / "run.json").read_text())
    outages = [a["outage"] for a in run["main"]["rounds"] if a["outage"]]
    assert any("served with sha256" in o or "/ready" in o for o in outages), outages
    # A killed server refuses connections, or cuts a response in flight: both are transport.
    assert any("ConnectionError" in o or "ChunkedEncodingError" in o for o in outages), outages
    counted = [a for a in run["main"]["rounds"] if not a["outage"]]
    assert len(counted) <= 2  # the outages used up no retry: at most the one allowed


def test_a_killed_flow_is_resumed_by_the_same_command_without_recomputing(tmp_path, reference):
    command, env = flow_command(tmp_path)
    flow = Background(tmp_path, command, env)
    wait_for(lambda: results_stored(tmp_path / "db.sqlite3") >= 5, "five results")
    started = descendants(flow.pid)  # Prefect's temporary server, workers, the watchdog
    assert len(started) >= 3
    flow.kill()
    wait_for(
        lambda: not any(alive(pid, at) for pid, at in started.items()),
        "what the killed flow started to end",
        timeout=120,
    )
    kept = results_stored(tmp_path / "db.sqlite3")
    (unfinished,) = (tmp_path / "results").glob("*.incomplete")
    again = run_flow(tmp_path)
    run_dir = report_dir(again)
    assert run_dir.name + ".incomplete" == unfinished.name and not unfinished.exists()
    assert "resuming server run" in again.stderr
    assert tables(run_dir) == reference
    run = json.loads((run_dir / "run.json").read_text())
    deployed = [s for a in run["main"]["rounds"] for s in a["slices"]]
    assert len(deployed) <= 20 - kept + 1  # only what had no result (one may have landed late)
    assert len(run["times"]["flow_attempts"]) == 2


def test_a_full_disk_after_the_jobs_leaves_a_marked_folder_and_suspended_runs(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    # Room for the records, none for the report's plots and pages.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(results)])
    if mounted.returncode != 0:
        pytest.skip("this machine cannot mount a small tmpfs to fill")
    try:
        done = run_flow(tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(results)])
    assert done.returncode == 1
    assert done.stderr.count("Traceback") == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("python -m flows: error: ")]
    assert "No space left on device" in line and "run the same command again" in line
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as db:
        runs = dict(db.execute("SELECT run_id, finished_at FROM runs").fetchall())
    assert runs and all(finished is None for finished in runs.values())  # resumable
    assert f"server runs {sorted(runs)} suspended" in done.stderr  # their tokens revoked
