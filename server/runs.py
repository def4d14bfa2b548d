"""Run registration, status, paged results, closing and ending runs, for the flow (admin token)."""

from __future__ import annotations

import sqlite3
from typing import Annotated, TypeVar

from flask import Blueprint, abort, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import db
from .auth import check_run_token, presented_token, require_admin, token_sha256
from .datasets import dataset_path, warm_dataset
from .fields import Count, Name, count_field

bp = Blueprint("runs", __name__, url_prefix="/runs")
Body = TypeVar("Body", bound=BaseModel)


class Registration(BaseModel):
    """A run: its id, dataset, expected slice numbers and its workers' token."""

    # strict: true, "5" and 5.0 are not slice numbers.
    model_config = ConfigDict(strict=True)
    run_id: Name
    dataset: Name
    token: Annotated[str, Field(min_length=16)]
    expected: Annotated[list[Count], Field(min_length=1)]

    @field_validator("expected")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("slice numbers must be distinct")
        return value


class RetryJob(BaseModel):
    """A retry job: its attempt number and the plan slices its elements 1..n stand for."""

    model_config = ConfigDict(strict=True)
    attempt: Annotated[Count, Field(ge=1)]
    slices: Annotated[list[Count], Field(min_length=1)]


def parse_body(model: type[Body]) -> Body:
    """The JSON body as `model`, or abort 400 naming each field that is wrong."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # JSON nested deeper than the parser goes
        body = None
    if not isinstance(body, dict):
        abort(400, description="body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"'{'.'.join(map(str, e['loc']))}': {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        abort(400, description="; ".join(problems))


def run_or_404(run_id: str):
    run = db.get_run(run_id)
    if run is None:
        abort(404, description="unknown run")
    return run


def worker_run(run_id: str) -> tuple[sqlite3.Row, str]:
    """The run a worker's token opens, and the token: 401 without one, 404, 403 if wrong.

    The token is asked for before any lookup, so without one known and unknown runs look alike.
    """
    token = presented_token()
    run = run_or_404(run_id)
    check_run_token(run["token_sha256"])
    return run, token


def refuse_if_finished(run) -> None:
    if run["finished_at"] is not None:
        abort(409, description=f"run {run['run_id']!r} is finished")


@bp.post("")
@require_admin
def register():
    """Register a run on a prepared dataset: id, dataset, expected slices, worker token."""
    body = parse_body(Registration)
    path = dataset_path(current_app.config["DATA_DIR"], body.dataset)
    if path is None:
        abort(404, description=f"unknown dataset {body.dataset!r}: not in the data directory")
    if not db.register_run(body.run_id, body.dataset, token_sha256(body.token), body.expected):
        abort(409, description="run already registered with different settings")
    refuse_if_finished(db.get_run(body.run_id))
    warm_dataset(path)  # so that workers' first fetches are served from the cache
    return jsonify(ok=True, run_id=body.run_id), 201


@bp.post("/<run_id>/attempts")
@require_admin
def register_attempt(run_id: str):
    """Declare which plan slices a retry job's elements 1..n stand for."""
    refuse_if_finished(run_or_404(run_id))
    body = parse_body(RetryJob)
    if not db.register_attempt(run_id, body.attempt, body.slices):
        abort(409, description="attempt already registered with different slices")
    return jsonify(ok=True), 201


@bp.post("/<run_id>/finish")
@require_admin
def finish(run_id: str):
    """Mark a run finished: its sink and its token's dataset access close (idempotent)."""
    run_or_404(run_id)
    db.finish_run(run_id)
    return jsonify(ok=True, run_id=run_id, finished=True)


@bp.post("/<run_id>/close")
@require_admin
def close(run_id: str):
    """Close a run's intake (the sink answers 409) until it is registered again."""
    run_or_404(run_id)
    db.close_intake(run_id)
    return jsonify(ok=True, run_id=run_id, closed=True)


@bp.post("/<run_id>/suspend")
@require_admin
def suspend(run_id: str):
    """Revoke a run's token, keeping its results: registering it again resumes it."""
    run_or_404(run_id)
    db.revoke_token(run_id)
    return jsonify(ok=True, run_id=run_id, suspended=True)


@bp.get("/<run_id>/status")
@require_admin
def status(run_id: str):
    """Expected, received, errored and missing slices."""
    return jsonify(db.run_status(run_or_404(run_id)))


@bp.get("/<run_id>/results")
@require_admin
def results(run_id: str):
    """Results after `cursor`, at most `limit` (default 500, max 5000)."""
    run_or_404(run_id)
    after = count_field("cursor", request.args.get("cursor"), default=0)
    limit = count_field("limit", request.args.get("limit"), default=500)
    if not 1 <= limit <= 5000:
        abort(400, description="'limit' must be between 1 and 5000")
    items, cursor = db.results_page(run_id, after, limit)
    return jsonify(results=items, cursor=cursor)
