"""The flow's parameters as Prefect sees them: top-level, typed, plain descriptions."""

import inspect
import re

import pytest
from prefect.utilities.callables import parameter_schema

from flows.cli import GROUPS
from flows.params import flow_arguments, injected_faults, takes_fields_of
from flows.signature_search import FORM_GROUPS, signature_search
from tasks.parameters import TEST_ONLY, SearchParameters
from tasks.science.worker import CLASSIFIERS

SCHEMA = parameter_schema(signature_search).model_dump_for_openapi()
MARKUP = re.compile(r"[<>|*`\[\]\\#]")  # what the UI's Markdown would render or swallow


def descriptions(schema: dict) -> dict[str, str]:
    """Every description in the schema, nested models' fields included."""
    found = {name: field.get("description", "") for name, field in schema["properties"].items()}
    for model, definition in schema.get("definitions", {}).items():
        for name, field in definition.get("properties", {}).items():
            found[f"{model}.{name}"] = field.get("description", "")
    return found


def test_every_field_but_the_test_hooks_is_a_top_level_parameter():
    assert sorted(SCHEMA["properties"]) == sorted(
        name for name in SearchParameters.model_fields if name not in TEST_ONLY
    )
    assert set(flow_arguments(SearchParameters())) == set(SCHEMA["properties"])


def by_position(schema: dict) -> list[str]:
    """The parameters in the order Prefect's form shows them (by their schema position)."""
    return sorted(schema["properties"], key=lambda name: schema["properties"][name]["position"])


def test_the_form_is_ordered_and_grouped_as_the_command_lines_help():
    expected = [name for names in GROUPS.values() for name in names] + ["dcp"]
    assert by_position(SCHEMA) == expected  # every parameter is in a group, none twice
    positions = [SCHEMA["properties"][name]["position"] for name in expected]
    assert positions == list(range(len(expected)))
    for group, names in FORM_GROUPS.items():
        for name in names:
            field = SearchParameters.model_fields[name]
            description = SCHEMA["properties"][name]["description"]
            assert description == f"{group}: {field.description}", name


def test_without_groups_the_parameters_keep_the_models_order():
    def fn(**fields):
        return fields

    schema = parameter_schema(takes_fields_of(SearchParameters, TEST_ONLY)(fn))
    plain = schema.model_dump_for_openapi()
    assert by_position(plain) == [n for n in SearchParameters.model_fields if n not in TEST_ONLY]
    assert plain["properties"]["n_signatures"]["description"] == "random signatures to evaluate"
    ungrouped = takes_fields_of(SearchParameters, TEST_ONLY, {"files": ("database", "seed")})(fn)
    names = by_position(parameter_schema(ungrouped).model_dump_for_openapi())
    assert names[:2] == ["database", "seed"] and names[2] == "input_path"  # then the model's


def test_the_form_has_the_model_s_defaults_limits_and_choices():
    defaults = SearchParameters()
    for name, field in SCHEMA["properties"].items():
        if name != "dcp":
            unset = "" if getattr(defaults, name) is None else getattr(defaults, name)
            assert field["default"] == unset, name  # an optional text is empty in the form
    assert SCHEMA["properties"]["n_signatures"]["minimum"] == 1
    assert SCHEMA["properties"]["backend"]["enum"] == ["local", "dcp"]
    classifiers = SCHEMA["properties"]["classifiers"]
    assert classifiers["items"]["enum"] == list(CLASSIFIERS) and classifiers["minItems"] == 1


def test_no_field_of_the_form_is_a_type_switch():
    # Prefect's form shows `anyOf [X, null]` as an X/None switch ("Property is type None").
    fields = list(SCHEMA["properties"].items())
    for model, definition in SCHEMA.get("definitions", {}).items():
        fields += [(f"{model}.{n}", f) for n, f in definition.get("properties", {}).items()]
    switches = [name for name, field in fields if "anyOf" in field]
    assert not switches
    offer = SCHEMA["definitions"]["DcpOptions"]["properties"]["slice_payment_offer"]
    assert offer["type"] == "number" and "default" not in offer  # left empty: not sent


OPTIONAL_TEXT = [n for n, f in SearchParameters.model_fields.items() if f.annotation == str | None]


@pytest.mark.parametrize("name", OPTIONAL_TEXT)
def test_an_optional_text_is_an_empty_text_box_and_empty_means_unset(name):
    assert SCHEMA["properties"][name]["type"] == "string"
    assert SCHEMA["properties"][name]["default"] == ""  # what the form sends when left empty
    assert getattr(SearchParameters(**{name: ""}), name) is None
    assert getattr(SearchParameters(**{name: None}), name) is None


@pytest.mark.parametrize(("name", "text"), sorted(descriptions(SCHEMA).items()))
def test_descriptions_are_plain_text(name, text):
    assert text and not MARKUP.search(text), name


def test_the_flow_takes_keywords_only():
    kinds = {p.kind for p in inspect.signature(signature_search.fn).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize(
    ("value", "faults"),
    [(None, {}), ("", {}), ('{"fail": [2], "kill": [3]}', {"fail": [2], "kill": [3]})],
)
def test_faults_come_from_the_test_hook_only(monkeypatch, value, faults):
    if value is None:
        monkeypatch.delenv("SIGSEARCH_TEST_FAULTS", raising=False)
    else:
        monkeypatch.setenv("SIGSEARCH_TEST_FAULTS", value)
    assert injected_faults() == faults
