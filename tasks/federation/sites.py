"""A federation's sites file: which sites search, where, with which labels (no secrets)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tasks.federation.parameters import FederationParameters
from tasks.parameters import SearchParameters

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
# What the coordinator sets for every site alike (and what a federated search has no place
# for): a site may not choose these. Its case and control are the entry's own keys.
SHARED = frozenset(FederationParameters().site_search_fields()) | {
    "null_candidates",
    "probesets",
    "case",
    "control",
    "contrasts",
    "extend_search",
    "validation_fraction",
    "faults",
}
SECRET_WORDS = ("token", "secret", "password", "key_file", "keystore")


class SitesError(ValueError):
    """A sites file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Site:
    """One site: its name, work pool, input there, its labels for the contrast, its settings."""

    name: str
    work_pool: str
    input_path: str
    case: str
    control: str
    parameters: dict = field(default_factory=dict)  # the site flow's own: backend, workers, ...

    def flow_parameters(self) -> dict:
        """What the site's deployments carry: input, labels and the site's own settings."""
        return {
            "input_path": self.input_path,
            "case": self.case,
            "control": self.control,
            **self.parameters,
        }


@dataclass(frozen=True)
class Federation:
    """The consortium: its name, the contrast's names in the global report, its sites."""

    name: str
    case: str
    control: str
    sites: tuple[Site, ...]
    annotation_path: str | None = None  # a platform annotation (public), for gene symbols

    def site(self, name: str) -> Site:
        """The site called `name`."""
        return next(s for s in self.sites if s.name == name)


def parse_sites(text: str, path: Path) -> Federation:
    """The federation a sites file describes, every problem named with the file."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SitesError(f"{path}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SitesError(f"{path}: expected a mapping with federation, contrast and sites")
    name = _name(data.get("federation"), "federation", path)
    contrast = data.get("contrast") or {}
    if not isinstance(contrast, dict) or not contrast.get("case") or not contrast.get("control"):
        raise SitesError(f"{path}: contrast needs case and control (the global report's names)")
    entries = data.get("sites")
    if not isinstance(entries, list) or len(entries) < 2:
        raise SitesError(f"{path}: sites must list at least 2 sites")
    case, control = str(contrast["case"]), str(contrast["control"])
    sites = tuple(_site(entry, i, case, control, path) for i, entry in enumerate(entries, 1))
    names = [s.name for s in sites]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SitesError(f"{path}: site names must be unique: {', '.join(repeated)}")
    annotation = data.get("annotation_path")
    return Federation(name, case, control, sites, str(annotation) if annotation else None)


def _name(value: object, what: str, path: Path) -> str:
    """A name usable in deployment names and artifact keys."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise SitesError(
            f"{path}: {what} {value!r} must be lowercase letters, digits and dashes (1-41)"
        )
    return value


def _site(entry: object, number: int, case: str, control: str, path: Path) -> Site:
    """One entry of `sites`, checked."""
    if not isinstance(entry, dict):
        raise SitesError(f"{path}: site #{number} is not a mapping")
    name = _name(entry.get("name"), f"site #{number}'s name", path)
    for required in ("work_pool", "input_path"):
        if not entry.get(required):
            raise SitesError(f"{path}: site {name} has no {required}")
    known = {"name", "work_pool", "input_path", "case", "control", "parameters"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise SitesError(f"{path}: site {name}: unknown keys {unknown}; known: {sorted(known)}")
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise SitesError(f"{path}: site {name}: parameters must be a mapping")
    _check_parameters(parameters, name, path)
    return Site(
        name=name,
        work_pool=str(entry["work_pool"]),
        input_path=str(entry["input_path"]),
        case=str(entry.get("case") or case),
        control=str(entry.get("control") or control),
        parameters=dict(parameters),
    )


def _check_parameters(parameters: dict, site: str, path: Path) -> None:
    """Known, site-owned, secret-free parameters, valid as a search's."""
    for key in parameters:
        if any(word in key.lower() for word in SECRET_WORDS):
            raise SitesError(
                f"{path}: site {site}: {key} looks like a secret; secrets come from the site's "
                "environment or Prefect blocks, never from the sites file"
            )
    unknown = sorted(set(parameters) - set(SearchParameters.model_fields))
    if unknown:
        raise SitesError(f"{path}: site {site}: unknown parameters {unknown}")
    shared = sorted(set(parameters) & SHARED)
    if shared:
        raise SitesError(
            f"{path}: site {site}: {shared} are set by the coordinator for every site alike"
        )
    try:
        SearchParameters(**parameters)
    except ValueError as exc:
        raise SitesError(f"{path}: site {site}: {exc}") from None
