"""`python -m flows.watchdog <pid>`: once a run's process is gone, end what it left running.

A killed `python -m flows` (SIGKILL, OOM) runs no cleanup: Prefect's temporary server and
any worker or DCP client process would live on, orphaned. This process, started by the run,
notes the run's descendants while it lives and, once it is gone, stops those still there
(SIGTERM, then SIGKILL). Linux only (it reads /proc); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

PROC = Path("/proc")
GRACE_SECONDS = 10.0
# What ends by itself when its parent goes (multiprocessing's resource tracker, workers
# reading a closed pipe) is given this long first.
OWN_END_SECONDS = 3.0


def process_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, or None if there is none."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every living descendant of `root`."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))):
            parents[int(entry.name)] = (stat[0], stat[2])
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def alive(pid: int, started: int | None = None) -> bool:
    """Whether the process runs (not a zombie), and is the one that started at `started`."""
    stat = process_stat(pid)
    return stat is not None and stat[1] != "Z" and started in (None, stat[2])


def stop_left_behind(known: dict[int, int]) -> list[int]:
    """SIGTERM the processes still there, SIGKILL those that outlive the grace; their pids."""
    end = time.monotonic() + OWN_END_SECONDS
    while time.monotonic() < end and any(alive(p, s) for p, s in known.items()):
        time.sleep(0.2)
    left = [pid for pid, started in known.items() if alive(pid, started)]
    for pid in left:
        with _gone_ok():
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < end and any(alive(p, known[p]) for p in left):
        time.sleep(0.2)
    for pid in left:
        if alive(pid, known[pid]):
            with _gone_ok():
                os.kill(pid, signal.SIGKILL)
    return left


class _gone_ok:
    """Ignore a process that ended meanwhile."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, traceback) -> bool:
        return kind is ProcessLookupError


def watch(root: int, interval: float = 0.5) -> list[int]:
    """Note `root`'s descendants until it is gone, then stop those left; their pids."""
    me, known = os.getpid(), {}
    while alive(root):
        known.update(descendants(root))
        known.pop(me, None)
        time.sleep(interval)
    return stop_left_behind(known)


def main(argv: list[str]) -> int:
    """Watch the pid given; say what was stopped."""
    if not PROC.is_dir():
        return 0
    # Ctrl-C goes to the whole terminal group: this one must outlive the run to clean up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopped = watch(int(argv[0]))
    if stopped:
        sys.stderr.write(f"flows.watchdog: stopped {len(stopped)} processes the run left behind\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
