"""Serving prepared datasets to workers (per-run token, ETag = sha256, gzip)."""

from __future__ import annotations

import gzip
import hashlib
import threading
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, request

from . import db, state
from .auth import check_run_token, presented_token
from .fields import is_name

bp = Blueprint("datasets", __name__)


def dataset_path(data_dir: Path, name: str) -> Path | None:
    """The file for a dataset name, or None for anything that is not a plain name inside."""
    if not is_name(name) or ".." in name:
        return None
    path = (data_dir / f"{name}.tsv").resolve()
    if path.parent != data_dir or not path.is_file():
        return None
    return path


class DatasetCache:
    """(sha256, bytes, gzip bytes) of dataset files, kept while their mtime and size hold."""

    def __init__(self) -> None:
        self._entries: dict[Path, tuple[tuple[int, int], str, bytes, bytes]] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> tuple[str, bytes, bytes]:
        """(sha256, bytes, gzip bytes) of a dataset file."""
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            hit = self._entries.get(path)
        if hit and hit[0] == key:
            return hit[1], hit[2], hit[3]
        data = path.read_bytes()
        entry = (key, hashlib.sha256(data).hexdigest(), data, gzip.compress(data, mtime=0))
        with self._lock:
            self._entries[path] = entry
        return entry[1], entry[2], entry[3]


def load_dataset(path: Path) -> tuple[str, bytes, bytes]:
    """(sha256, bytes, gzip bytes) of a dataset file, through the app's cache."""
    return state.current().datasets.load(path)


def dataset_problems(data_dir: Path) -> list[str]:
    """Datasets whose recorded sha256 (`<name>.tsv.sha256`) does not match the file."""
    problems = []
    for sidecar in sorted(data_dir.glob("*.tsv.sha256")):
        name = sidecar.name[: -len(".tsv.sha256")]
        path = data_dir / f"{name}.tsv"
        if not path.is_file():
            continue  # a deleted dataset is no concern of the next run; a corrupt one is
        recorded = sidecar.read_text().strip()
        if load_dataset(path)[0] != recorded:
            problems.append(f"dataset {name!r} does not match its recorded sha256")
    return problems


@bp.get("/datasets/<name>")
def get_dataset(name: str):
    """The prepared dataset (tab-separated, served as text/plain), for a token of a run registered on it."""
    presented_token()  # before any lookup: without a token, known and unknown look alike
    path = dataset_path(current_app.config["DATA_DIR"], name)
    if path is None:
        abort(404, description="unknown dataset")
    runs = db.get_db().execute(
        "SELECT token_sha256 FROM runs WHERE dataset = ? AND finished_at IS NULL", (name,)
    )
    check_run_token(*(r[0] for r in runs))
    sha256, data, compressed = load_dataset(path)
    if sha256 in request.if_none_match:
        return Response(status=304, headers={"ETag": f'"{sha256}"'})
    gzip_ok = "gzip" in request.accept_encodings
    # text/plain: a DCP worker hands any other text/* to the work function as a JS String
    # object, not a Python str (dcp-client utils/fetch-uri.js).
    response = Response(compressed if gzip_ok else data, content_type="text/plain; charset=utf-8")
    response.set_etag(sha256)
    response.headers["Vary"] = "Accept-Encoding"
    if gzip_ok:
        response.headers["Content-Encoding"] = "gzip"
    return response
