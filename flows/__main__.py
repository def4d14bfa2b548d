"""`python -m flows`: run the signature-search flow without a deployment."""

from __future__ import annotations

import sys

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

from flows.params import SearchParameters

_INPUT = SearchParameters.model_fields["input_path"]


class SearchCommand(SearchParameters, BaseSettings):
    """The flow's parameters as options: `--n-signatures 300`, `--dcp.job-name weekly`."""

    model_config = SettingsConfigDict(
        cli_prog_name="python -m flows",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_exit_on_error=True,
    )
    input_path: str = Field(
        _INPUT.default,
        description=_INPUT.description,
        validation_alias=AliasChoices("input", "input_path"),
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **other_sources):
        """Options only: no environment variable may change a run's parameters unseen."""
        return (init_settings,)


def parse_parameters(argv: list[str] | None = None) -> SearchParameters:
    """Command-line options -> validated flow parameters (usage error and exit 2 if invalid)."""
    try:
        command = CliApp.run(SearchCommand, cli_args=sys.argv[1:] if argv is None else argv)
    except ValidationError as exc:
        sys.stderr.write(f"usage error: {exc}\n")
        raise SystemExit(2) from None
    return SearchParameters.model_validate(command.model_dump())


def main(argv: list[str] | None = None) -> int:
    """Run the flow once and print where the report is."""
    params = parse_parameters(argv)
    from flows.signature_search import signature_search

    result = signature_search(params)
    print(f"Report: {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
