"""Command-line options made from the flow's parameter model: grouped, with choices, strict."""

from __future__ import annotations

import argparse
import difflib
import os
import types
from pathlib import Path
from typing import Any, Literal, NoReturn, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from tasks.execution.client import ServerClient
from tasks.execution.dcp import DcpOptions
from tasks.io import read_annotation, read_input
from tasks.parameters import SearchParameters, preparation_options
from tasks.policy import annotation_path, sample_split
from tasks.science.dataset import DatasetError, PrepareOptions, prepare_dataset

PROG = "python -m flows"
FLAGS = {"input_path": "--input"}
GROUPS = {
    "input": (
        "input_path",
        "sample_sheet",
        "phenotype_field",
        "annotation_path",
        "log2_transform",
        "counts",
        "case",
        "control",
        "covariates",
        "pair",
        "adjust_features",
        "contrasts",
        "probesets",
    ),
    "search": (
        "n_signatures",
        "min_len",
        "max_len",
        "classifiers",
        "cv_folds",
        "seed",
        "top_fraction",
        "extend_search",
    ),
    "evidence": (
        "n_permutations",
        "null_signatures",
        "null_candidates",
        "roc_signatures",
        "validation_fraction",
    ),
    "execution": (
        "backend",
        "workers",
        "signatures_per_slice",
        "server_url",
        "ca_bundle",
        "slice_timeout",
        "max_slice_retries",
        "retry_backoff",
        "failure_tolerance",
        "deadline_minutes",
        "fresh_run",
    ),
    "files": ("results_dir", "data_dir", "database"),
}
METAVARS: dict[object, str] = {int: "N", float: "X", str: "TEXT"}  # by bare type


class UsageError(ValueError):
    """A command-line mistake, said in one line."""


class SetupError(UsageError):
    """A problem of the machine's set-up (keystores, credentials), not of the options."""


class StrictParser(argparse.ArgumentParser):
    """No abbreviated options; a mistake raises UsageError instead of printing usage."""

    def __init__(self, **kwargs) -> None:
        super().__init__(prog=PROG, usage="%(prog)s [options]", allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage block and exiting; name the nearest option."""
        raise UsageError(message + self.nearest_option(message))

    def nearest_option(self, message: str) -> str:
        """'; did you mean --n-signatures?' for a misspelt option in `message`, else ''."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        for word in message.removeprefix("unrecognized arguments:").split():
            if word.startswith("--"):
                given = word.split("=", 1)[0]
                close = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""


def build_parser() -> StrictParser:
    """One option per parameter (test-only ones left out), in groups; `--dcp.*` for DCP."""
    parser = StrictParser(
        description="Run the signature-search flow once; the same parameters as the Prefect form."
    )
    fields = SearchParameters.model_fields
    for title, names in GROUPS.items():
        group = parser.add_argument_group(f"{title} options")
        for name in names:
            add_option(group, FLAGS.get(name, flag(name)), name, fields[name])
    group = parser.add_argument_group("dcp options", "for --backend dcp")
    for name, field in DcpOptions.model_fields.items():  # the `dcp` field's model
        add_option(group, flag(f"dcp.{name}"), f"dcp.{name}", field)
    return parser


def flag(name: str) -> str:
    """`dcp.job_name` -> `--dcp.job-name`."""
    return "--" + name.replace("_", "-")


def add_option(group, option: str, dest: str, field: FieldInfo) -> None:
    """An option that stores the raw text; the model converts and checks it."""
    kind = bare_type(field.annotation)
    default = field.get_default(call_default_factory=True)
    # argparse formats help with %: a description's "10%" would break --help.
    text = (field.description or "").replace("%", "%%")
    options: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": text}
    if kind is bool:
        if default:
            options["help"] += " (default: on)"
        action = argparse.BooleanOptionalAction if default else "store_true"
        group.add_argument(option, action=action, **options)
        return
    if get_origin(kind) is Literal:
        options["choices"] = get_args(kind)
    elif get_origin(kind) is list:
        names = get_args(get_args(kind)[0])  # a Literal's choices; none for free text
        options["type"] = lambda text: text.split(",")
        options["metavar"] = "NAME[,NAME...]"
        options["help"] += (
            f"; comma-separated, of {', '.join(names)}" if names else "; comma-separated"
        )
        default = "all" if names and list(default) == list(names) else ",".join(default)
    else:
        options["metavar"] = METAVARS.get(kind, "TEXT")
    if default not in (None, ""):
        options["help"] += f" (default: {default})"
    group.add_argument(option, **options)


def bare_type(annotation: object) -> object:
    """`str | None` -> `str`; other annotations as they are."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def parse_parameters(argv: list[str]) -> SearchParameters:
    """Options -> validated parameters; UsageError names the option and the problem."""
    given: dict = {}
    for dest, value in vars(build_parser().parse_args(argv)).items():
        owner, _, name = dest.rpartition(".")
        (given.setdefault(owner, {}) if owner else given)[name] = value
    try:
        return SearchParameters.model_validate(given)
    except ValidationError as exc:
        raise UsageError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, with its option and the value given."""
    error = exc.errors()[0]
    message = error["msg"].removeprefix("Value error, ")
    names = [part for part in error["loc"] if isinstance(part, str)]
    if not names:
        return message
    option = FLAGS.get(names[0], flag(".".join(names)))
    return f"{option}: {message} (given: {error['input']!r})"


def check_inputs(params: SearchParameters) -> None:
    """What the run would refuse later, found before Prefect starts (UsageError, DatasetError)."""
    for name in ("input_path", "sample_sheet", "annotation_path", "contrasts", "ca_bundle"):
        path = getattr(params, name)
        if path and not Path(path).is_file():
            option = FLAGS.get(name, flag(name))
            raise DatasetError(
                f"{path}: no such file ({option}); give the path of an existing file"
            )
    if params.server_url and not os.environ.get("SIGSEARCH_ADMIN_TOKEN"):
        raise UsageError(
            "--server-url is given but SIGSEARCH_ADMIN_TOKEN is not set; "
            "export the server's admin token (its var/admin-token)"
        )
    if params.server_url:
        token = os.environ["SIGSEARCH_ADMIN_TOKEN"]
        client = ServerClient(params.server_url, token, ca_bundle=params.ca_bundle)
        if refused := client.admin_token_refused():
            raise UsageError(
                f"{refused}: SIGSEARCH_ADMIN_TOKEN is not its admin token; export the one in "
                "the server's var/admin-token"
            )
    check_dcp(params)
    read_annotation(annotation_path(params))  # a table it can read, or a DatasetError naming it
    if not params.contrasts:
        check_preparation(params)
        return
    from flows.contrasts import contrast_parameters, load_contrasts

    for contrast in load_contrasts(params):
        try:
            check_preparation(contrast_parameters(params, contrast))
        except DatasetError as exc:
            raise DatasetError(f"contrast '{contrast.id}': {exc}") from None


def check_preparation(params: SearchParameters) -> None:
    """The preparation, split and plan the run would make, refused the same way."""
    options = PrepareOptions(**preparation_options(params))
    prepared = prepare_dataset(read_input(Path(params.input_path), options), options)
    if params.validation_fraction:  # the split the run would make, refused the same way
        split = (params.validation_fraction, params.seed, params.cv_folds, params.input_path)
        sample_split(prepared.labels, *split, prepared.model, prepared.case)
    n_probesets = prepared.matrix.shape[1]
    if params.max_len > n_probesets:  # the plan could not draw a signature that long
        raise DatasetError(
            f"{params.input_path}: {n_probesets} probesets after preparation, fewer than"
            f" --max-len {params.max_len}; give --max-len {n_probesets} or less"
        )


# Where the flow's embedded server listens when no --server-url is given: loopback.
EMBEDDED_SERVER = "http://127.0.0.1"


def check_dcp(params: SearchParameters) -> None:
    """With --backend dcp, the DCP preflight before Prefect starts; UsageError in one line."""
    if params.backend != "dcp":
        return
    from tasks.execution.dcp import DcpError, compute_group_from, preflight

    block = params.dcp.compute_group_block
    try:
        group = compute_group_from(block)
    except DcpError as exc:
        source = f"--dcp.compute-group-block {block}" if block else "DCP_COMPUTE_GROUP"
        raise SetupError(f"{source}: {exc}") from None
    except Exception as exc:  # a missing block, Prefect's API away, ...
        first = " ".join(str(exc).split())[:200]
        raise SetupError(
            f"--dcp.compute-group-block {block}: cannot load that Secret block ({first})"
        ) from None
    try:
        preflight(params.dcp, params.server_url or EMBEDDED_SERVER, group)
    except DcpError as exc:
        problems = [line.strip("- ") for line in str(exc).splitlines()]
        raise SetupError(problems[0] + " " + "; ".join(problems[1:])) from None
