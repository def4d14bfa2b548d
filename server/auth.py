"""Tokens: per-run tokens in worker URLs, the admin token in a header; constant-time checks."""

from __future__ import annotations

import functools
import hashlib
import hmac
from urllib.parse import urlencode

from flask import abort, current_app, request
from werkzeug.datastructures import MultiDict

from tasks.redact import redact as redact  # re-exported: the request log and the sink use it


def token_sha256(token: str) -> str:
    """The stored form of a run token (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redacted_query(args: MultiDict) -> str:
    """A request's query string, decoded, with the value of every token-like parameter hidden."""
    pairs = [(k, "***" if "token" in k.lower() else v) for k, v in args.items(multi=True)]
    return urlencode(pairs, safe="*")


def token_matches(token: str, expected_sha256: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(token_sha256(token), expected_sha256)


def presented_token() -> str:
    """The `token` query parameter; abort 401 without one."""
    token = request.args.get("token")
    if not token:
        abort(401, description="missing token")
    return token


def check_run_token(*expected_sha256: str) -> None:
    """Abort 401 without a `token` query parameter, 403 unless it matches one hash."""
    token = presented_token()
    # Check all candidates so the time taken does not depend on which one matched.
    if not sum(token_matches(token, sha) for sha in expected_sha256):
        abort(403, description="wrong token")


def require_admin(view):
    """Decorator: the run endpoints need `Authorization: Bearer <admin token>`."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            abort(401, description="missing admin token")
        expected = current_app.config["ADMIN_TOKEN"]
        if not hmac.compare_digest(token.encode(), expected.encode()):
            abort(403, description="wrong admin token")
        return view(*args, **kwargs)

    return wrapped
