"""Checks of request fields shared by the blueprints: names, non-negative integers, JSON text."""

from __future__ import annotations

import json
import re
from typing import Annotated

from flask import abort
from pydantic import AfterValidator, Field

from .db import MAX_INTEGER

# The one pattern for names in URLs and on disk: run ids and dataset names.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DIGITS = re.compile(r"[0-9]+")


def is_name(text: str) -> bool:
    """True for a plain name: a letter or digit, then up to 127 of letters, digits, `_.-`."""
    return NAME.fullmatch(text) is not None


def count_field(name: str, text: str | None, default: int | None = None) -> int:
    """A non-negative integer from a form or query field (ASCII digits only); abort 400."""
    if text is None or text == "":
        if default is None:
            abort(400, description=f"missing '{name}'")
        return default
    # Not int(): it takes ' 5 ', '+5', '0_5' and non-ASCII digits such as '\u0665'.
    if not _DIGITS.fullmatch(text):
        abort(400, description=f"'{name}' is not an integer (ASCII digits 0-9 only)")
    if len(text) > 19 or int(text) > MAX_INTEGER:
        abort(400, description=f"'{name}' is too large (at most {MAX_INTEGER})")
    return int(text)


def _plain_name(value: str) -> str:
    if not is_name(value):
        raise ValueError("must be a plain name: a letter or digit, then letters, digits, '_.-'")
    return value


Name = Annotated[str, AfterValidator(_plain_name)]
Count = Annotated[int, Field(ge=0, le=MAX_INTEGER)]


class _NonFinite(ValueError):
    """NaN or Infinity in JSON text: Python's json reads them, JSON has no such values."""


def _refuse_non_finite(name: str) -> float:
    raise _NonFinite(name)


def json_value(text: str) -> object:
    """The value of JSON text; ValueError (not JSON, NaN or Infinity, nested too deeply) else."""
    try:
        return json.loads(text, parse_constant=_refuse_non_finite)
    except _NonFinite as exc:
        raise ValueError(f"holds {exc}, which JSON does not allow (NaN, Infinity)") from None
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except ValueError:
        raise ValueError("is not JSON") from None
