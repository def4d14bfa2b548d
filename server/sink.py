"""The DCP results sink: what workers POST for `job.setResultStorage(url, params)`."""

from __future__ import annotations

import hashlib
import json
import logging

from flask import Blueprint, abort, jsonify, request

from . import db
from .auth import redact
from .fields import count_field, json_value
from .runs import worker_run

bp = Blueprint("sink", __name__)
log = logging.getLogger(__name__)
JSON_TYPES = ("application/json", "text/json")
VOLATILE_KEYS = ("timings", "versions")


def normalize_content(content: str, content_type: str) -> tuple[str, object]:
    """The JSON text to store and its value: validated, unwrapped once if a JSON string of JSON.

    A DCP worker sends `JSON.stringify(result)`, so a work function's `str` result arrives
    as a JSON string holding JSON.
    """
    if content_type.split(";")[0].strip().lower() not in JSON_TYPES:
        return json.dumps(content), content
    try:
        value = json_value(content)
        if isinstance(value, str):
            content = value
            value = json_value(content)
    except ValueError as exc:
        abort(400, description=f"content {exc}")
    _check_unicode(value)
    return content, value


def _check_unicode(value: object) -> None:
    """Abort 400 on a lone surrogate (`"\\ud800"`): valid JSON text, but no Unicode to store."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        abort(400, description="content holds a lone surrogate (\\ud800-\\udfff), not Unicode")
    except RecursionError:
        abort(400, description="content is nested too deeply")


def worker_exception(value: object) -> str | None:
    """The error a DCP worker reports as a slice's result when the work function raised.

    The worktime serialises the exception as the result (`errorCode`, `message`, `name`,
    `stack`); only an empty result is sent as an `error` field.
    """
    if not isinstance(value, dict) or "records" in value:
        return None
    if "errorCode" not in value and not {"name", "message", "stack"} <= value.keys():
        return None
    name, message = value.get("name") or "Error", str(value.get("message") or "")
    code = value.get("errorCode") or value.get("code")
    # A Python traceback ends with the line that says what went wrong: put it first.
    lines = [line for line in message.splitlines() if line.strip()]
    summary = lines[-1].strip() if lines else ""
    rest = f"\n{message}" if len(lines) > 1 else ""
    return f"{name}{f' [{code}]' if code else ''}: {summary}{rest}"


def records_digest(content: str, value: object) -> str:
    """sha256 of what a result says, ignoring when and where it was computed.

    DCP may run a slice twice; the repeat carries other timings and may run other
    package versions, and is the same result if its records are the same.
    """
    if isinstance(value, dict):
        kept = {k: v for k, v in value.items() if k not in VOLATILE_KEYS}
        content = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(content.encode()).hexdigest()


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
    run, token = worker_run(run_id)
    refusal = db.intake_refusal(run)
    if refusal:  # checked again inside the write (db.IntakeClosed), where a close is ordered
        abort(409, description=refusal)
    form = request.form
    element = count_field("element", form.get("element"))
    attempt = count_field("attempt", form.get("attempt"), default=0)
    has_content, has_error = "content" in form, "error" in form
    if has_content == has_error:
        abort(400, description="exactly one of 'content' and 'error' is required")
    slice_no = _resolve_slice(run, element, attempt)
    if has_error:
        return _record_error(run_id, slice_no, attempt, redact(form["error"], token))
    content, value = normalize_content(
        form["content"], form.get("contentType") or "application/json"
    )
    error = worker_exception(value) or malformed_result(value, slice_no)
    if error is not None:
        return _record_error(run_id, slice_no, attempt, redact(error, token))
    digest = records_digest(content, value)
    outcome = db.store_result(run_id, slice_no, attempt, form.get("elementType"), content, digest)
    if outcome == "conflict":
        db.store_conflict(run_id, slice_no, attempt, digest)
        log.warning(
            "run %s slice %d: a different result refused (kept the first)", run_id, slice_no
        )
        abort(409, description=f"slice {slice_no} already has a different result")
    return jsonify(ok=True, slice=slice_no, recorded=outcome)


def malformed_result(value: object, slice_no: int) -> str | None:
    """Why a posted result is not a slice's records (kept as the slice's error), or None."""
    if not isinstance(value, dict) or not isinstance(value.get("records"), list):
        return "malformed result: not a JSON object with a 'records' list"
    if value.get("slice") != slice_no:
        return f"malformed result: it says slice {value.get('slice')!r}, posted as slice {slice_no}"
    return malformed_predictions(value)


def _is_row(item: object) -> bool:
    """A dataset row number (bool is an int to Python, not to us)."""
    return isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= db.MAX_INTEGER


def _is_probability(item: object) -> bool:
    """A number in [0, 1] (JSON has no NaN here: the content parser refused it)."""
    return isinstance(item, int | float) and not isinstance(item, bool) and 0 <= item <= 1


def malformed_predictions(value: dict) -> str | None:
    """Why a result's out-of-fold scores (a predictions slice's) are malformed, or None.

    `scored_rows` names the samples; every record with an AUC has one score per sample, a
    record without (a classifier that could not fit) has none.
    """
    rows, records = value.get("scored_rows"), value["records"]
    if rows is None:
        if any(isinstance(r, dict) and "scores" in r for r in records):
            return "malformed result: records carry 'scores' but it has no 'scored_rows'"
        return None
    if not isinstance(rows, list) or not all(map(_is_row, rows)) or len(set(rows)) < len(rows):
        return "malformed result: 'scored_rows' is not a list of distinct row numbers"
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            return f"malformed result: record {i} is not an object"
        scores = record.get("scores")
        if scores is None and record.get("auc") is None:
            continue
        if not isinstance(scores, list) or len(scores) != len(rows):
            return f"malformed result: record {i} has no list of {len(rows)} scores"
        if not all(map(_is_probability, scores)):
            return f"malformed result: record {i} has a score that is not a number in [0, 1]"
    return None


def _record_error(run_id: str, slice_no: int, attempt: int, error: str):
    # Workers report failed fetches with the URL, and so with the run token: redacted.
    db.store_error(run_id, slice_no, attempt, error[:4000])
    log.warning("run %s slice %d reported an error", run_id, slice_no)
    return jsonify(ok=True, slice=slice_no, recorded="error")
