"""Slice inputs, run configs and the work function: registered by the flow (admin token),
fetched by workers by URL.

With them a DCP job's input set is URLs on this server, so the scheduler never sees which
probesets a slice evaluates, nor the contrast, folds or seed of the run; and with the work
function's source served here too, the job carries only a stub that fetches it, not the method.
"""

from __future__ import annotations

from typing import Annotated

from flask import Blueprint, Response, abort, jsonify
from pydantic import AfterValidator, BaseModel, ConfigDict

from . import db
from .auth import require_admin
from .fields import Count, count_field, json_value
from .runs import parse_body, refuse_if_finished, run_or_404, worker_run

bp = Blueprint("inputs", __name__, url_prefix="/inputs")


def _json_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be JSON text (UTF-8): it holds a lone surrogate") from None
    try:
        json_value(value)
    except ValueError as exc:  # the sink's check: not JSON, NaN or Infinity, nested too deeply
        raise ValueError(f"must be JSON text (UTF-8): it {exc}") from None
    return value


JsonText = Annotated[str, AfterValidator(_json_text)]


def _source_text(value: str) -> str:
    if not value:
        raise ValueError("must be the work function's source text: it is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be text (UTF-8): it holds a lone surrogate") from None
    return value


SourceText = Annotated[str, AfterValidator(_source_text)]


class SliceInput(BaseModel):
    """One slice's datum, as JSON text."""

    model_config = ConfigDict(strict=True)
    slice: Count
    datum: JsonText


class InputSet(BaseModel):
    """Some of a run's inputs: its config and slice data (JSON text each), its work source."""

    model_config = ConfigDict(strict=True)
    config: JsonText | None = None
    slices: list[SliceInput] = []
    work: SourceText | None = None  # Python source, not JSON: served as it is


# What a 409 calls the reserved rows.
RESERVED_NAMES = {db.CONFIG_SLICE: "config", db.WORK_SLICE: "work"}


@bp.post("/<run_id>")
@require_admin
def register_inputs(run_id: str):
    """Store a run's config, slice data and work once (repeats with the same content are fine)."""
    run = run_or_404(run_id)
    refuse_if_finished(run)
    body = parse_body(InputSet)
    inputs = {s.slice: s.datum for s in body.slices}
    unexpected = sorted(set(inputs) - db.expected_slices(run))
    if unexpected:
        abort(400, description=f"slices {unexpected} are not expected by this run")
    if body.config is not None:
        inputs[db.CONFIG_SLICE] = body.config
    if body.work is not None:
        inputs[db.WORK_SLICE] = body.work
    if not inputs:
        abort(400, description="nothing to register: give 'config', 'slices' or 'work'")
    conflicts = db.store_inputs(run_id, inputs)
    if conflicts:
        names = [RESERVED_NAMES.get(s, f"slice {s}") for s in sorted(conflicts)]
        abort(409, description=f"{', '.join(names)} already registered with other content")
    return jsonify(ok=True, run_id=run_id, registered=len(inputs)), 201


@bp.get("/<run_id>/config")
def get_config(run_id: str):
    """The run's config (JSON as text/plain), for its token."""
    _check_worker_access(run_id)
    return _input_text(run_id, db.CONFIG_SLICE)


@bp.get("/<run_id>/work")
def get_work(run_id: str):
    """The run's work function source (Python as text/plain), for its token."""
    _check_worker_access(run_id)
    return _input_text(run_id, db.WORK_SLICE)


@bp.get("/<run_id>/slices/<number>")
def get_slice(run_id: str, number: str):
    """A slice's datum (JSON as text/plain), for its run's token."""
    _check_worker_access(run_id)
    return _input_text(run_id, count_field("slice", number))


def _check_worker_access(run_id: str) -> None:
    """401 without a token, 404 for an unknown run, 403 for a wrong token, 410 once finished."""
    run, _ = worker_run(run_id)
    if run["finished_at"] is not None:
        abort(410, description=f"run {run_id!r} is finished and serves no inputs")


def _input_text(run_id: str, slice_no: int) -> Response:
    content = db.get_input(run_id, slice_no)
    if content is None:
        abort(404, description="no such input registered")
    # text/plain: a DCP worker passes it to the work function as a str (utils/fetch-uri.js);
    # application/json would arrive as a JS object, any other text/* as a JS String object.
    response = Response(content, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response
