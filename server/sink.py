"""The DCP results sink: what workers POST for `job.setResultStorage(url, params)`."""

from __future__ import annotations

import hashlib
import json
import logging

from flask import Blueprint, abort, jsonify, request

from . import db
from .auth import check_run_token

bp = Blueprint("sink", __name__)
log = logging.getLogger(__name__)
JSON_TYPES = ("application/json", "text/json")


def _int_field(name: str, value: str | None, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            abort(400, description=f"missing '{name}'")
        return default
    try:
        number = int(value)
    except ValueError:
        abort(400, description=f"'{name}' is not an integer")
    if number < 0:
        abort(400, description=f"'{name}' is negative")
    return number


def normalize_content(content: str, content_type: str) -> str:
    """The JSON text to store: validated, and unwrapped once if it is a JSON string of JSON."""
    if content_type.split(";")[0].strip().lower() not in JSON_TYPES:
        return json.dumps(content)
    try:
        value = json.loads(content)
        if isinstance(value, str):
            json.loads(value)
            content = value
    except (ValueError, RecursionError):
        abort(400, description="content is not JSON although contentType says JSON")
    return content


def _resolve_slice(run, element: int, attempt: int) -> int:
    """Map the job's element to the plan slice (retry jobs number their elements 1..n)."""
    if attempt == 0:
        slice_no = element
    else:
        slices = db.attempt_slices(run["run_id"], attempt)
        if slices is None:
            abort(400, description=f"unknown attempt {attempt}")
        if not 1 <= element <= len(slices):
            abort(400, description=f"element {element} is outside attempt {attempt}")
        slice_no = slices[element - 1]
    if slice_no not in db.expected_slices(run):
        abort(400, description=f"slice {slice_no} is not expected by this run")
    return slice_no


@bp.post("/dcp-results/<run_id>")
def receive_result(run_id: str):
    """Validate the envelope, store once per (run, slice), return a short receipt."""
    run = db.get_run(run_id)
    if run is None:
        abort(404, description="unknown run")
    check_run_token(run["token_sha256"])
    form = request.form
    element = _int_field("element", form.get("element"))
    attempt = _int_field("attempt", form.get("attempt"), default=0)
    has_content, has_error = "content" in form, "error" in form
    if has_content == has_error:
        abort(400, description="exactly one of 'content' and 'error' is required")
    slice_no = _resolve_slice(run, element, attempt)
    if has_error:
        db.store_error(run_id, slice_no, attempt, form["error"][:4000])
        log.warning("run %s slice %d reported an error", run_id, slice_no)
        return jsonify(ok=True, slice=slice_no, recorded="error")
    content = normalize_content(form["content"], form.get("contentType") or "application/json")
    digest = hashlib.sha256(content.encode()).hexdigest()
    outcome = db.store_result(run_id, slice_no, attempt, form.get("elementType"), content, digest)
    if outcome == "conflict":
        log.warning("run %s slice %d: different content refused", run_id, slice_no)
        abort(409, description=f"slice {slice_no} already has a different result")
    return jsonify(ok=True, slice=slice_no, recorded=outcome)
