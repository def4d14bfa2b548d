"""Liveness and readiness."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, jsonify

from . import db
from .datasets import dataset_problems

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    """200 when the next run can work: data directory, datasets, a database that takes writes."""
    # Runs already registered do not count: an old run's deleted dataset is no reason to
    # refuse the next run; 503 lists the reasons.
    reasons = []
    data_dir = current_app.config["DATA_DIR"]
    if not data_dir.is_dir() or not os.access(data_dir, os.R_OK | os.X_OK):
        reasons.append(f"data directory {data_dir.name!r} is not readable")
    else:
        reasons.extend(dataset_problems(data_dir))
    try:
        db.get_db().execute("SELECT 1 FROM runs LIMIT 1").fetchall()
        db.check_writable()
    except db.DatabaseBusy as exc:
        reasons.append(f"results database not writable: {exc}")
    except Exception as exc:  # any database failure means "not ready", with its reason
        reasons.append(f"results database unusable: {type(exc).__name__}")
    if reasons:
        return jsonify(status="not ready", reasons=reasons), 503
    return jsonify(status="ready")
