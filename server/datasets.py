"""Serving prepared datasets to workers (per-run token, ETag = sha256, gzip)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, request

from . import db, state
from .auth import check_run_token, presented_token
from .fields import is_name

bp = Blueprint("datasets", __name__)
log = logging.getLogger(__name__)


def dataset_path(data_dir: Path, name: str) -> Path | None:
    """The file for a dataset name, or None for anything that is not a plain name inside."""
    if not is_name(name) or ".." in name:
        return None
    path = (data_dir / f"{name}.tsv").resolve()
    if path.parent != data_dir or not path.is_file():
        return None
    return path


# zlib's default level: half the CPU of level 9 for 0.3% more bytes (200 x 20,000 values:
# 11.17 MB in 2.9 s, level 9 11.13 MB in 5.3 s).
GZIP_LEVEL = 6


class Dataset:
    """A dataset file's bytes and sha256; its gzip made once, by whoever asks first."""

    def __init__(self, key: tuple[int, int], data: bytes) -> None:
        self.key, self.data = key, data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._gzip: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        """The gzip of the bytes; concurrent first callers wait for one compression."""
        with self._lock:
            if self._gzip is None:
                self._gzip = gzip.compress(self.data, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gzip


class DatasetCache:
    """Datasets by path, kept while their file's mtime and size hold."""

    def __init__(self) -> None:
        self._entries: dict[Path, Dataset] = {}
        self._lock = threading.Lock()

    def load(self, path: Path) -> Dataset:
        """The dataset in a file, read and hashed once (under the lock: one reader at a time)."""
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry.key != key:
                entry = self._entries[path] = Dataset(key, path.read_bytes())
        return entry


def load_dataset(path: Path) -> Dataset:
    """A dataset file's bytes, sha256 and gzip, through the app's cache."""
    return state.current().datasets.load(path)


def warm_dataset(path: Path) -> None:
    """Hash and compress a dataset now (at registration), not in a worker's first fetch."""
    try:
        load_dataset(path).gzipped()
    except OSError:  # the file went away since it was found: its fetches will say so
        log.warning("dataset %s could not be read ahead of its fetches", path.name)


def dataset_problems(data_dir: Path) -> list[str]:
    """Datasets whose recorded sha256 (`<name>.tsv.sha256`) does not match the file."""
    problems = []
    for sidecar in sorted(data_dir.glob("*.tsv.sha256")):
        name = sidecar.name[: -len(".tsv.sha256")]
        path = data_dir / f"{name}.tsv"
        if not path.is_file():
            continue  # a deleted dataset is no concern of the next run; a corrupt one is
        recorded = sidecar.read_text().strip()
        if load_dataset(path).sha256 != recorded:
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
    dataset = load_dataset(path)
    if dataset.sha256 in request.if_none_match:
        return Response(status=304, headers={"ETag": f'"{dataset.sha256}"'})
    gzip_ok = "gzip" in request.accept_encodings
    body = dataset.gzipped() if gzip_ok else dataset.data
    # text/plain: a DCP worker hands any other text/* to the work function as a JS String
    # object, not a Python str (dcp-client utils/fetch-uri.js).
    response = Response(body, content_type="text/plain; charset=utf-8")
    response.set_etag(dataset.sha256)
    response.headers["Vary"] = "Accept-Encoding"
    if gzip_ok:
        response.headers["Content-Encoding"] = "gzip"
    return response
