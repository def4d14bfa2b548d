"""A stand-in for the SDK part of the dcp backend's client: the scheduler is what no test reaches.

`client(log, stage)` replaces `sdk_client` in the child; `canceller(log)` replaces the fresh-SDK
cancel by id. Both append what they did to `log` ("deploy <id>", "cancel <id>", "byid <id>"),
so a test counts deployments and cancels across processes. The child's session, `supervise`
and the whole parent (`DcpJob`) are the real ones.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from pathlib import Path

from tasks.execution.dcp import supervise

JOB_ID = "standin-job-1"


def record(log: str, line: str) -> None:
    """Append one line (one write, so lines from several processes do not mix)."""
    with open(log, "a") as out:
        out.write(line + "\n")


def lines(log: Path) -> list[str]:
    """What the stand-ins recorded."""
    return log.read_text().splitlines() if log.exists() else []


def die() -> None:
    """Be killed, as a crash or the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def _client(log: str, stage: str, spec, opts, group, session) -> None:
    if stage == "before_deploy":
        die()
    if stage == "rejected":
        session.deploying(JOB_ID)
        record(log, f"deploy {JOB_ID}")
        raise RuntimeError("DCPError: Failed to submit job: insufficient balance (ENOFUNDS)")
    session.deploying(JOB_ID)
    record(log, f"deploy {JOB_ID}")
    if stage == "after_id":
        die()
    if stage == "hangs_deploying":  # blocked in the SDK: stop requests go unread
        record(log, "hanging")
        time.sleep(3600)
    session.emit("accepted", message=JOB_ID)
    if stage == "after_accepted":
        die()
    if stage in ("results", "results_then_die"):
        session.emit("result", 1)
    if stage == "results_then_die":
        die()
    if stage == "nofunds":
        session.emit("nofunds", message="payment account out of funds")
    if stage == "eperm":
        for element in range(1, 4):
            session.emit("error", element, "EPERM_ORIGIN Invalid origin http://192.0.2.10:5001")
    asyncio.run(_follow(log, stage, session, opts.cancel_timeout))


async def _follow(log: str, stage: str, session, cancel_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    execution = loop.create_future()
    if stage == "done":
        loop.call_soon(execution.set_result, [])

    async def cancel(reason: str) -> None:
        if stage == "cancel_dies":
            die()
        if stage == "cancel_hangs":
            await asyncio.sleep(3600)
        record(log, f"cancel {session.job_id}")

    await supervise(execution, cancel, session, cancel_timeout)


def _canceller(log: str, job_id: str, opts) -> None:
    record(log, f"byid {job_id}")


def client(log: Path, stage: str):
    """The stand-in client for `stage` (picklable, for the spawned child)."""
    return functools.partial(_client, str(log), stage)


def canceller(log: Path):
    """The stand-in cancel by id."""
    return functools.partial(_canceller, str(log))
