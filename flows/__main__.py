"""`python -m flows`: run the signature-search flow without a deployment."""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing

from pydantic import BaseModel, ValidationError

from flows.params import DcpOptions, SearchParameters


def _option_type(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return (
        _option_type(args[0])
        if args and typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else annotation
    )


def add_model_options(
    parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = ""
) -> None:
    """One option per model field (nested models get a prefix), help from the descriptions."""
    for name, info in model.model_fields.items():
        flag = "--" + (prefix + name).replace("_", "-")
        kind = _option_type(info.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            continue  # nested models get their own prefixed options
        default = info.get_default(call_default_factory=True)
        helptext = f"{info.description or ''} (default: {default})".replace("%", "%%")
        dest = prefix + name
        if kind is bool:
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, help=helptext
            )
        elif typing.get_origin(kind) is list:
            parser.add_argument(
                flag,
                dest=dest,
                help=helptext + "; comma-separated",
                type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
            )
        elif typing.get_origin(kind) is dict:
            parser.add_argument(flag, dest=dest, type=json.loads, help=helptext + "; JSON")
        else:
            parser.add_argument(flag, dest=dest, help=helptext)


def parse_parameters(argv: list[str] | None = None) -> SearchParameters:
    """Command-line options -> validated flow parameters."""
    parser = argparse.ArgumentParser(prog="python -m flows", description="Run a signature search.")
    parser.add_argument("--input", dest="input_path", help="alias of --input-path")
    add_model_options(parser, SearchParameters)
    add_model_options(parser, DcpOptions, prefix="dcp_")
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    dcp = {k.removeprefix("dcp_"): given.pop(k) for k in list(given) if k.startswith("dcp_")}
    try:
        return SearchParameters(**given, dcp=DcpOptions(**dcp))
    except ValidationError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Run the flow once and print where the report is."""
    params = parse_parameters(argv)
    from flows.signature_search import signature_search

    result = signature_search(params)
    print(f"Report: {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
