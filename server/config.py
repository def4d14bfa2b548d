"""Server settings: defaults here, then `SIGSEARCH_*` environment variables, then the factory's."""

from __future__ import annotations

import math
from pathlib import Path

from flask import Config, Flask

ENV_PREFIX = "SIGSEARCH"
MIN_ADMIN_TOKEN_LENGTH = 32
TRANSPORT_SLACK_BYTES = 64 * 1024
DEFAULTS: dict = {
    "DATA_DIR": "var/data",
    "DATABASE": "var/results.sqlite3",
    "ADMIN_TOKEN": None,
    "ALLOWED_ORIGINS": ["https://dcp.work", "https://scheduler.distributed.computer"],
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    # How long a request waits for its queued write before it is dropped and answered 503.
    "WRITE_WAIT_SECONDS": 30.0,
}


def configure(app: Flask, overrides: dict | None = None) -> None:
    """Load defaults, `SIGSEARCH_*` environment variables and `overrides`, then check them."""
    app.config.from_mapping(DEFAULTS)
    # Environment values stay text (a token of digits must not become a number);
    # `_normalize` converts the settings that are not text.
    app.config.from_prefixed_env(ENV_PREFIX, loads=str)
    app.config.update(overrides or {})
    _normalize(app.config)


def _normalize(config: Config) -> None:
    config["DATA_DIR"] = Path(config["DATA_DIR"]).resolve()
    config["DATABASE"] = Path(config["DATABASE"]).resolve()
    if isinstance(config["ALLOWED_ORIGINS"], str):
        origins = config["ALLOWED_ORIGINS"].split(",")
        config["ALLOWED_ORIGINS"] = [o.strip() for o in origins if o.strip()]
    config["MAX_CONTENT_LENGTH"] = _number(config, "MAX_CONTENT_LENGTH", int, "a number of bytes")
    config["WRITE_WAIT_SECONDS"] = _number(config, "WRITE_WAIT_SECONDS", float, "seconds > 0")
    if not 0 < config["WRITE_WAIT_SECONDS"] < math.inf:
        raise ValueError(f"WRITE_WAIT_SECONDS ({ENV_PREFIX}_WRITE_WAIT_SECONDS) must be > 0")
    token = config.get("ADMIN_TOKEN")
    if not token:
        raise ValueError(f"the server needs an admin token ({ENV_PREFIX}_ADMIN_TOKEN or config)")
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError(
            f"the admin token must be at least {MIN_ADMIN_TOKEN_LENGTH} characters, not"
            f" {len(token)}; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def _number(config: Config, name: str, kind: type, what: str):
    """A setting as `kind`, or ValueError naming it and its environment variable."""
    try:
        return kind(config[name])
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} ({ENV_PREFIX}_{name}) must be {what}, not {config[name]!r}"
        ) from None


def waitress_options(app: Flask) -> dict:
    """Transport limits for waitress, shared by `python -m server` and the embedded server."""
    return {
        # Checked against Content-Length when the headers arrive, before any body is
        # buffered; a little above the app's limit so that a body just over it still gets
        # the app's JSON answer.
        "max_request_body_size": app.config["MAX_CONTENT_LENGTH"] + TRANSPORT_SLACK_BYTES,
        "max_request_header_size": 64 * 1024,
        # Room for many workers posting at once besides idle or hostile connections
        # (waitress's 100 was exhausted by 110 idle ones); poll() because select() fails
        # past 1024 descriptors.
        "connection_limit": 500,
        "asyncore_use_poll": True,
        # Idle and half-sent connections are closed after 30 s (waitress: 120 s).
        "channel_timeout": 30,
        "cleanup_interval": 10,
        "ident": "sigsearch",
    }
