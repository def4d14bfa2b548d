"""Token redaction for logs and stored errors: one grammar, for the server and the flow side."""

from __future__ import annotations

import logging
import re


def _spelled(text: str) -> str:
    """A pattern for `text` with any of its characters percent-encoded, in either case."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c.lower()):02x}|%{ord(c.upper()):02x})" for c in text)


# `token=` also with its letters or `=` percent-encoded (`?%74oken=`).
_TOKEN_IN_TEXT = re.compile(rf"({_spelled('token=')})[^&\s'\"]+", re.IGNORECASE)


def redact(text: str, *secrets: str) -> str:
    """Hide token values in URLs or query strings, and the given secrets anywhere in `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that hides token values in a record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Format the message once, redacted; keep the record."""
        record.msg, record.args = redact(record.getMessage()), None
        return True


def redact_http_logs() -> None:
    """Hide run tokens in urllib3's DEBUG lines (full request URLs): call where a program starts."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
