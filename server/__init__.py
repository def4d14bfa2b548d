"""The data server and DCP results sink: a Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from . import datasets, db, health, runs, sink
from .auth import redact
from .config import load_config

access_log = logging.getLogger("server.access")


def create_app(config: dict | None = None) -> Flask:
    """Build the app from defaults, `SIGSEARCH_*` environment and `config`."""
    app = Flask(__name__)
    app.config.update(load_config(config))
    app.config["DATA_DIR"].mkdir(parents=True, exist_ok=True)
    db.init_db(app.config["DATABASE"])
    for blueprint in (health.bp, datasets.bp, sink.bp, runs.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_preflight)
    app.after_request(_cors_and_log)
    return app


def _http_error(exc: HTTPException):
    return jsonify(error=exc.name, reason=exc.description), exc.code


def _unexpected_error(exc: Exception):
    logging.getLogger(__name__).exception("unhandled error on %s", request.path)
    return _http_error(InternalServerError(description="internal error"))


def _preflight():
    if request.method == "OPTIONS":
        return "", 204
    return None


def _cors_and_log(response):
    origin = request.headers.get("Origin")
    if origin and origin in current_app.config["ALLOWED_ORIGINS"]:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers.add("Vary", "Origin")
    access_log.info(
        "%s %s %s %s",
        request.remote_addr,
        request.method,
        redact(request.full_path.rstrip("?")),
        response.status_code,
    )
    return response
