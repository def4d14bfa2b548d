"""The data server and DCP results sink: a Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import (
    Conflict,
    HTTPException,
    InternalServerError,
    ServiceUnavailable,
)

from . import datasets, db, health, inputs, runs, sink, state
from .auth import redact, redacted_query
from .config import ENV_PREFIX, configure

access_log = logging.getLogger("server.access")
RETRY_AFTER_SECONDS = 5


def create_app(config: dict | None = None) -> Flask:
    """Build the app from defaults, `SIGSEARCH_*` environment and `config`."""
    app = Flask(__name__)
    configure(app, config)
    app.config["DATA_DIR"].mkdir(parents=True, exist_ok=True)
    store = db.Store(app.config["DATABASE"], app.config["WRITE_WAIT_SECONDS"])
    state.install(app, state.ServerState(store, datasets.DatasetCache()))
    for blueprint in (health.bp, datasets.bp, sink.bp, runs.bp, inputs.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(db.DatabaseBusy, _database_busy)
    app.register_error_handler(db.IntakeClosed, _intake_closed)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_preflight)
    app.after_request(_cors_and_log)
    return app


def _http_error(exc: HTTPException):
    response = jsonify(error=exc.name, reason=exc.description)
    response.status_code = exc.code or 500
    # Keep what the exception adds besides its HTML body: Retry-After, Allow, WWW-Authenticate.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _database_busy(exc: db.DatabaseBusy):
    logging.getLogger(__name__).warning("%s on %s: answered 503", exc, request.path)
    description = f"{exc}; nothing was stored, try again"
    return _http_error(ServiceUnavailable(description, retry_after=RETRY_AFTER_SECONDS))


def _intake_closed(exc: db.IntakeClosed):
    return _http_error(Conflict(description=str(exc)))


def _unexpected_error(exc: Exception):
    logging.getLogger(__name__).exception("unhandled error on %s", request.path)
    return _http_error(InternalServerError(description="internal error"))


# What a CORS preflight may ask for: the methods the routes take, the headers a client sends
# (the admin's Authorization, JSON's Content-Type; workers' form posts need none).
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
# Browsers cache a preflight's answer this long (Chromium caps it at 2 hours).
CORS_MAX_AGE_SECONDS = 600


def _preflight():
    if request.method != "OPTIONS":
        return None
    origin = request.headers.get("Origin")
    if not origin or "Access-Control-Request-Method" not in request.headers:
        return "", 204  # a plain OPTIONS, not a browser's preflight
    if origin not in current_app.config["ALLOWED_ORIGINS"]:
        # No CORS headers, so the browser refuses the request; 403 says why to a human.
        response = jsonify(
            error="Forbidden",
            reason=f"origin {origin} is not allowed (the server's {ENV_PREFIX}_ALLOWED_ORIGINS)",
        )
        response.status_code = 403
        return response
    response = current_app.response_class(status=204)
    response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
    response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
    response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
    # Private Network Access: a public page (https://dcp.work) asking a private address.
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        response.headers["Access-Control-Allow-Private-Network"] = "true"
    response.headers.add(
        "Vary", "Access-Control-Request-Headers, Access-Control-Request-Private-Network"
    )
    return response


def _cors_and_log(response):
    origin = request.headers.get("Origin")
    if origin and origin in current_app.config["ALLOWED_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    query = redacted_query(request.args)
    access_log.info(
        "%s %s %s %s",
        request.remote_addr,
        request.method,
        redact(f"{request.path}?{query}" if query else request.path),
        response.status_code,
    )
    return response
