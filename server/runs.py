"""Run registration, status and paged results for the flow (admin token)."""

from __future__ import annotations

import re

from flask import Blueprint, abort, jsonify, request

from . import db
from .auth import require_admin, token_sha256
from .datasets import NAME

bp = Blueprint("runs", __name__, url_prefix="/runs")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="body must be a JSON object")
    return body


def _int_list(body: dict, key: str) -> list[int]:
    value = body.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        abort(400, description=f"'{key}' must be a non-empty list of non-negative integers")
    return value


def _run_or_404(run_id: str):
    run = db.get_run(run_id)
    if run is None:
        abort(404, description="unknown run")
    return run


@bp.post("")
@require_admin
def register():
    """Register a run: id, dataset, expected slice numbers and its worker token."""
    body = _json_body()
    run_id, dataset, token = body.get("run_id"), body.get("dataset"), body.get("token")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        abort(400, description="'run_id' must be a plain name")
    if not isinstance(dataset, str) or not NAME.match(dataset):
        abort(400, description="'dataset' must be a plain name")
    if not isinstance(token, str) or len(token) < 16:
        abort(400, description="'token' must be a string of at least 16 characters")
    expected = _int_list(body, "expected")
    if not db.register_run(run_id, dataset, token_sha256(token), expected):
        abort(409, description="run already registered with different settings")
    return jsonify(ok=True, run_id=run_id), 201


@bp.post("/<run_id>/attempts")
@require_admin
def register_attempt(run_id: str):
    """Declare which plan slices a retry job's elements 1..n stand for."""
    _run_or_404(run_id)
    body = _json_body()
    attempt = body.get("attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        abort(400, description="'attempt' must be an integer >= 1")
    if not db.register_attempt(run_id, attempt, _int_list(body, "slices")):
        abort(409, description="attempt already registered with different slices")
    return jsonify(ok=True), 201


@bp.get("/<run_id>/status")
@require_admin
def status(run_id: str):
    """Expected, received, errored and missing slices."""
    return jsonify(db.run_status(_run_or_404(run_id)))


@bp.get("/<run_id>/results")
@require_admin
def results(run_id: str):
    """Results after `cursor`, at most `limit` (default 500, max 5000)."""
    _run_or_404(run_id)
    after = request.args.get("cursor", "0")
    limit = request.args.get("limit", "500")
    if not after.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= 5000:
        abort(400, description="'cursor' and 'limit' must be non-negative integers")
    items, cursor = db.results_page(run_id, int(after), int(limit))
    return jsonify(results=items, cursor=cursor)
