"""Liveness and readiness."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, jsonify

from . import db
from .datasets import dataset_path, dataset_problems

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    """200 when the data directory, every dataset and the database are usable; else 503."""
    reasons = []
    data_dir = current_app.config["DATA_DIR"]
    if not data_dir.is_dir() or not os.access(data_dir, os.R_OK | os.X_OK):
        reasons.append(f"data directory {data_dir.name!r} is not readable")
    else:
        reasons.extend(dataset_problems(data_dir))
    try:
        for run in db.get_db().execute("SELECT DISTINCT dataset FROM runs"):
            if dataset_path(data_dir, run["dataset"]) is None:
                reasons.append(f"dataset {run['dataset']!r} of a registered run is missing")
    except Exception as exc:  # any database failure means "not ready", with its reason
        reasons.append(f"results database unusable: {type(exc).__name__}")
    if reasons:
        return jsonify(status="not ready", reasons=reasons), 503
    return jsonify(status="ready")
