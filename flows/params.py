"""The flow's typed parameters: one pydantic model, so the Prefect UI shows a form."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from tasks.execution.dcp import DcpOptions
from tasks.science.work import CLASSIFIERS, check_classifiers


class SearchParameters(BaseModel):
    """Everything a signature search run takes."""

    input_path: str = Field("input/golub_all_aml.tsv", description="expression input file")
    sample_sheet: str | None = Field(None, description="sample sheet for a matrix input")
    phenotype_field: str | None = Field(
        None, description="GEO characteristics field or sample-sheet column holding the phenotype"
    )
    annotation_path: str | None = Field(
        None,
        description="probeset annotation TSV (default: <input stem>.annotation.tsv if present)",
    )
    log2_transform: bool = Field(False, description="log2-transform raw intensities")
    case: str | None = Field(None, description="case label (default: the minority label)")
    control: str | None = Field(None, description="control label (default: the other label)")
    n_signatures: int = Field(300, ge=1, le=10_000_000, description="random signatures to evaluate")
    min_len: int = Field(5, ge=1, le=1000, description="shortest signature")
    max_len: int = Field(9, ge=1, le=1000, description="longest signature")
    signatures_per_slice: int = Field(10, ge=1, le=10_000, description="signatures per slice")
    classifiers: list[str] = Field(list(CLASSIFIERS), description=f"any of {list(CLASSIFIERS)}")
    cv_folds: int = Field(10, ge=2, le=100, description="stratified cross-validation folds")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="seed of the plan and of every model")
    backend: Literal["local", "dcp"] = Field("local", description="where slices run")
    workers: int = Field(0, ge=0, le=256, description="local worker processes (0: one per core)")
    server_url: str = Field("", description="data server URL (empty: start the embedded one)")
    slice_timeout: float = Field(600.0, gt=0, description="seconds before a slice is lost")
    max_slice_retries: int = Field(2, ge=0, le=20, description="redeployments of failed slices")
    retry_backoff: float = Field(
        5.0, ge=0, le=600, description="seconds before the first redeployment, doubling each round"
    )
    failure_tolerance: int = Field(
        0, ge=0, description="slices allowed to fail with the run still Completed (with a warning)"
    )
    deadline_minutes: float = Field(240.0, gt=0, description="overall time bound of the run")
    top_fraction: float = Field(0.05, gt=0, le=1, description="share of signatures called 'top'")
    n_permutations: int = Field(
        40, ge=0, le=10_000, description="label permutations of the null (0: no null)"
    )
    null_signatures: int = Field(
        5,
        ge=0,
        le=10_000_000,
        description="signatures evaluated per permutation (0: all, the exact max-statistic null)",
    )
    validation_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of samples held out, per label, to validate the top signatures "
        "(0: no validation)",
    )
    extend_search: bool = Field(
        False,
        description="add a batch of new signatures to the earlier runs of this search "
        "(same prepared data and protocol) and report every batch",
    )
    results_dir: str = Field("results", description="where results/<run_id>/ is written")
    data_dir: str = Field("var/data", description="where prepared datasets are served from")
    database: str = Field("var/results.sqlite3", description="embedded server's results database")
    faults: dict[str, list[int]] = Field(
        default_factory=dict, description="test only: {'fail'|'kill'|'hang': [slice numbers]}"
    )
    dcp: DcpOptions = Field(default_factory=DcpOptions)

    @field_validator("classifiers")
    @classmethod
    def _known_classifiers(cls, value: list[str]) -> list[str]:
        return check_classifiers(value)

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        unknown = sorted(set(value) - {"fail", "kill", "hang"})
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: fail, kill, hang")
        return value

    @model_validator(mode="after")
    def _lengths(self) -> SearchParameters:
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) must not exceed max_len ({self.max_len})")
        return self
