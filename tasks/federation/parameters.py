"""A federated search's typed parameters: the one place of its defaults and checks."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from tasks.parameters import Classifier, SearchParameters

_SEARCH = SearchParameters.model_fields


def _like(name: str, default: object | None = None):
    """The search's own field (its limits and description), with another default if given."""
    field = _SEARCH[name]
    kept = field.get_default(call_default_factory=True) if default is None else default
    limits = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le", "gt") if hasattr(m, k)}
    return Field(kept, description=field.description, **limits)


class FederationParameters(BaseModel):
    """Everything a federated search takes; each site's own settings are in the sites file."""

    sites_path: str = Field("sites.yaml", description="the sites file (YAML): sites, pools, inputs")
    n_signatures: int = _like("n_signatures", 200)
    min_len: int = _like("min_len")
    max_len: int = _like("max_len")
    classifiers: list[Classifier] = Field(
        ["logistic", "svm"], min_length=1, description="classifiers fitted to every signature"
    )
    cv_folds: int = _like("cv_folds", 5)
    seed: int = _like("seed")
    n_permutations: int = Field(
        19,
        ge=0,
        le=10_000,
        description="label permutations at every site; each evaluates every signature "
        "(the combined null is exact), so a site's null costs n_signatures x n_permutations "
        "x classifiers evaluations",
    )
    results_dir: str = Field("results", description="where the global report's folder goes")
    site_retries: int = Field(1, ge=0, le=10, description="new attempts of a site that failed")
    site_timeout_minutes: float = Field(
        240.0, gt=0, description="minutes a site's flow run may take before it counts as failed"
    )
    poll_seconds: float = Field(
        5.0, gt=0, le=300, description="seconds between the coordinator's checks of a site run"
    )

    @model_validator(mode="after")
    def _lengths(self) -> FederationParameters:
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) must not exceed max_len ({self.max_len})")
        return self

    def site_search_fields(self) -> dict:
        """What every site's search is given alike (the universe and plan digest aside)."""
        return {
            "n_signatures": self.n_signatures,
            "min_len": self.min_len,
            "max_len": self.max_len,
            "classifiers": list(self.classifiers),
            "cv_folds": self.cv_folds,
            "seed": self.seed,
            "n_permutations": self.n_permutations,
            "null_signatures": 0,  # every signature on every permutation: the exact null
        }
