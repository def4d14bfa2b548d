"""How the flow takes a search's parameters: as top-level keywords Prefect can merge."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic.json_schema import SkipJsonSchema

from tasks.parameters import FAULTS_VARIABLE, TEST_ONLY, SearchParameters

F = TypeVar("F", bound=Callable)


def flow_arguments(params: SearchParameters) -> dict:
    """The flow's keyword arguments: every field but the test-only ones."""
    return params.model_dump(exclude=set(TEST_ONLY))


def injected_faults() -> dict[str, list[int]]:
    """The test hook: faults to inject, as JSON in SIGSEARCH_TEST_FAULTS (none when unset)."""
    return json.loads(os.environ.get(FAULTS_VARIABLE) or "{}")


# Top-level parameters, not one `params` object: Prefect merges a run's parameters with the
# deployment's key by key, so `--params '{"n_signatures": 12}'` keeps the deployment's others.
def takes_fields_of(
    model: type[BaseModel],
    hidden: frozenset[str],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> Callable[[F], F]:
    """Give `fn(**fields)` the model's fields but `hidden` as keyword parameters (for Prefect).

    With `groups`, the parameters come group by group, each description led by its group's
    name: Prefect's form orders fields by their position in the signature. Fields in no group
    come last, as the model has them.
    """
    group_of = {name: title for title, names in (groups or {}).items() for name in names}
    order = list(group_of)

    def decorate(fn: F) -> F:
        fields = [(n, f) for n, f in model.model_fields.items() if n not in hidden]
        fields.sort(key=lambda item: order.index(item[0]) if item[0] in group_of else len(order))
        # What `inspect.signature` reads; set through __dict__ (typing has no __signature__).
        fn.__dict__["__signature__"] = inspect.Signature(
            [_keyword(name, field, group_of.get(name)) for name, field in fields]
        )
        return fn

    return decorate


def _keyword(name: str, field: FieldInfo, group: str | None = None) -> inspect.Parameter:
    """A keyword parameter with the field's type, limits, default and description."""
    annotation: Any = field.annotation
    default = field.get_default(call_default_factory=True)
    if annotation == str | None and default is None:
        # The form shows an empty text box, not a str/None switch set to "Property is type
        # None"; SearchParameters reads the empty text it sends as unset.
        annotation, default = str | Annotated[None, SkipJsonSchema()], ""
    annotation = Annotated[annotation, *field.metadata] if field.metadata else annotation
    description = f"{group}: {field.description}" if group else field.description
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=Field(default, description=description),
        annotation=annotation,
    )
