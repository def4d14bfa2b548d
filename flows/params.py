"""How the flow takes a search's parameters: as top-level keywords Prefect can merge."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

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
def takes_fields_of(model: type[BaseModel], hidden: frozenset[str]) -> Callable[[F], F]:
    """Give `fn(**fields)` the model's fields but `hidden` as keyword parameters (for Prefect)."""

    def decorate(fn: F) -> F:
        fields = model.model_fields.items()
        # What `inspect.signature` reads; set through __dict__ (typing has no __signature__).
        fn.__dict__["__signature__"] = inspect.Signature(
            [_keyword(name, field) for name, field in fields if name not in hidden]
        )
        return fn

    return decorate


def _keyword(name: str, field: FieldInfo) -> inspect.Parameter:
    """A keyword parameter with the field's type, limits, default and description."""
    annotation = (
        Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    )
    default = field.get_default(call_default_factory=True)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=Field(default, description=field.description),
        annotation=annotation,
    )
