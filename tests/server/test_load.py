"""Concurrency and durability of the sink against real servers on loopback."""

import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from server.embedded import free_loopback_port

from ..server_process import start_server_process
from .conftest import ADMIN, DATASET, RUN_TOKEN, register, result_content


def test_5000_posts_from_32_clients_store_exactly_the_unique_valid_results(app, live_server):
    n_unique = 4250
    register(live_server, expected=range(1, n_unique + 1))
    jobs = [("ok", e) for e in range(1, n_unique + 1)]
    jobs += [("dup", e) for e in range(1, 501)]  # 10% exact duplicates
    jobs += [("bad", e) for e in range(250)]  # 5% malformed
    jobs.sort(key=lambda j: (j[1] * 7919) % 5003)  # interleave deterministically
    url = f"{live_server}/dcp-results/run1?token={RUN_TOKEN}"
    local = threading.local()

    def post(job):
        kind, element = job
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        if kind == "bad":
            data = {"element": str(element + 1), "content": "{broken"}
        else:
            data = {
                "elementType": "results",
                "element": str(element),
                "content": result_content(element),
            }
        return kind, session.post(url, data=data, timeout=60).status_code

    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(post, jobs))
    assert len(outcomes) == 5000
    assert not [s for _, s in outcomes if s >= 500]
    assert all(s == 200 for k, s in outcomes if k != "bad")
    assert all(s == 400 for k, s in outcomes if k == "bad")
    with sqlite3.connect(app.config["DATABASE"]) as db:
        rows = db.execute("SELECT slice FROM results WHERE run_id = 'run1'").fetchall()
    assert sorted(r[0] for r in rows) == list(range(1, n_unique + 1))


def test_acknowledged_results_survive_sigkill(tmp_path):
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "demo.tsv").write_text(DATASET)
    process = start_server_process(tmp_path, port, ADMIN)
    register(base, expected=range(1, 100_001))
    acknowledged, stop = [], threading.Event()

    def stream(offset):
        session = requests.Session()
        element = offset
        while not stop.is_set():
            try:
                response = session.post(
                    f"{base}/dcp-results/run1?token={RUN_TOKEN}",
                    timeout=5,
                    data={"element": str(element), "content": result_content(element)},
                )
            except requests.RequestException:
                return
            if response.status_code == 200:
                acknowledged.append(element)
            element += 8

    threads = [threading.Thread(target=stream, args=(i + 1,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(acknowledged) > 50
    restarted = start_server_process(tmp_path, port, ADMIN)
    try:
        status = requests.get(
            f"{base}/runs/run1/status", timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
    finally:
        restarted.terminate()
        restarted.wait(10)
    assert set(acknowledged) <= set(status["received"])
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
