"""Model schemas as Prefect's run form shows them."""

from __future__ import annotations

from typing import Any


def optional_fields_as_their_types(schema: dict[str, Any]) -> None:
    """Show each optional field (`X | None`, default None) as an empty X, not a type switch.

    Prefect's form renders `anyOf [X, null]` with default null as an X/None switch set to
    "Property is type None"; without the default, a field left empty is not sent, and
    Prefect's validation still takes null for a field that is not required.
    """
    for field in schema.get("properties", {}).values():
        branches = [b for b in field.get("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1 and len(field["anyOf"]) == 2 and field.get("default", 0) is None:
            del field["anyOf"], field["default"]
            field.update(branches[0])
