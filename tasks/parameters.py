"""A search's typed parameters: one pydantic model, the single place of defaults and checks."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from tasks.execution.dcp import DcpOptions
from tasks.execution.local import FaultPlan
from tasks.science.design import parse_terms

# The names, as choices in the form and on the command line. Spelled out: a type checker
# cannot read a Literal made from a tuple; tests/flows/test_params.py checks they are
# tasks.science.worker.CLASSIFIERS, the names the work function knows.
Classifier = Literal["logistic", "logistic_l1", "bagging", "random_forest", "svm", "decision_tree"]
FAULTS_VARIABLE = "SIGSEARCH_TEST_FAULTS"  # the test hook's only way in: never a parameter
TEST_ONLY = frozenset({"faults"})
# Slices of one run: all are registered before its job starts, ~10,000 a second (bench_scale).
MAX_SLICES = 500_000


def _empty_is_unset(value: object) -> object:
    """An empty text (what the run form sends for a field left empty) means unset."""
    return None if value == "" else value


OptionalText = Annotated[str | None, BeforeValidator(_empty_is_unset)]


class SearchParameters(BaseModel):
    """Everything a signature search run takes."""

    input_path: str = Field("input/golub_all_aml.tsv", description="expression input file")
    sample_sheet: OptionalText = Field(None, description="sample sheet for a matrix input")
    phenotype_field: OptionalText = Field(
        None, description="GEO characteristics field or sample-sheet column holding the phenotype"
    )
    annotation_path: OptionalText = Field(
        None,
        description="probeset annotation: a TSV of probeset, description and symbol, or a GEO "
        "platform table (GPL, its ID and Gene Symbol columns); when unset, the file named like "
        "the input with the ending .annotation.tsv, if there is one",
    )
    log2_transform: bool = Field(False, description="log2-transform raw intensities")
    counts: bool = Field(
        False,
        description="the input holds RNA-seq read counts: filter (edgeR filterByExpr), "
        "normalise (TMM) and weight (limma voom); classifiers see log2-CPM",
    )
    covariates: str = Field(
        "",
        description="sample-sheet columns (or GEO characteristics fields) the differential "
        "expression adjusts for, comma-separated; numeric if every value is a number, "
        "else a factor; name:factor or name:numeric to choose",
    )
    pair: OptionalText = Field(
        None,
        description="sample-sheet column naming each sample's pair or patient (paired "
        "samples): a blocking factor of the design",
    )
    adjust_features: bool = Field(
        False,
        description="classifiers see the values with the covariates' (and pairs') effects "
        "removed, fitted without the phenotype (limma removeBatchEffect); default: unadjusted",
    )
    contrasts: OptionalText = Field(
        None,
        description="a contrasts TSV (columns id, variable, reference, target, optional "
        "covariates): one search, report and Prefect subflow per contrast, and an index page",
    )
    probesets: list[str] = Field(
        default_factory=list,
        description="only these probesets, in this order (a federated search's common "
        "universe); empty: every probeset preparation keeps",
    )
    case: OptionalText = Field(None, description="case label; when unset, the minority label")
    control: OptionalText = Field(None, description="control label; when unset, the other label")
    n_signatures: int = Field(300, ge=1, le=10_000_000, description="random signatures to evaluate")
    min_len: int = Field(5, ge=1, le=1000, description="shortest signature")
    max_len: int = Field(9, ge=1, le=1000, description="longest signature")
    signatures_per_slice: int = Field(
        10,
        ge=1,
        le=10_000,
        description="signatures per slice (local backend; DCP slices are sized by "
        "dcp.target_slice_seconds)",
    )
    classifiers: list[Classifier] = Field(
        list(get_args(Classifier)),
        min_length=1,
        description="classifiers fitted to every signature",
    )
    cv_folds: int = Field(10, ge=2, le=100, description="stratified cross-validation folds")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="seed of the plan and of every model")
    backend: Literal["local", "dcp"] = Field("local", description="where slices run")
    workers: int = Field(0, ge=0, le=256, description="local worker processes (0: one per core)")
    server_url: str = Field(
        "", description="URL of a running data server; when empty, an embedded one is started"
    )
    ca_bundle: OptionalText = Field(
        None,
        description="PEM file of the CA that signed an https server_url's certificate "
        "(default: $SIGSEARCH_CA_BUNDLE, else the system's CAs)",
    )
    slice_timeout: float = Field(600.0, gt=0, description="seconds before a slice is lost")
    max_slice_retries: int = Field(2, ge=0, le=20, description="redeployments of failed slices")
    retry_backoff: float = Field(
        5.0, ge=0, le=600, description="seconds before the first redeployment, doubling each round"
    )
    failure_tolerance: int = Field(
        0, ge=0, description="slices allowed to fail with the run still Completed (with a warning)"
    )
    deadline_minutes: float = Field(240.0, gt=0, description="overall time bound of the run")
    fresh_run: bool = Field(
        False,
        description="start the search anew instead of resuming its unfinished run (the "
        "unfinished run is ended; its results stay on the server)",
    )
    top_fraction: float = Field(0.05, gt=0, le=1, description="share of signatures called 'top'")
    n_permutations: int = Field(
        40, ge=0, le=10_000, description="label permutations of the null (0: no null)"
    )
    null_signatures: int = Field(
        5,
        ge=0,
        le=10_000_000,
        description="random signatures evaluated on every permutation, for the "
        "random-signature baseline (0: every searched signature)",
    )
    null_candidates: int = Field(
        10,
        ge=0,
        le=10_000,
        description="signatures screened in per permutation (and on the real labels) by how "
        "well their probesets separate the groups: the selection-adjusted p compares the "
        "best of these and the panel on the real labels with the same on each permutation",
    )
    roc_signatures: int = Field(
        5,
        ge=0,
        le=100,
        description="top signatures scored again, sample by sample, for the report's ROC "
        "curves (a small follow-up job; 0: no curves)",
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
    results_dir: str = Field("results", description="folder holding one folder of results per run")
    data_dir: str = Field("var/data", description="where prepared datasets are served from")
    database: str = Field("var/results.sqlite3", description="embedded server's results database")
    faults: dict[str, list[int]] = Field(
        default_factory=dict,
        description=f"injected faults by slice number, a test hook set by {FAULTS_VARIABLE} only",
    )
    dcp: DcpOptions = Field(
        default_factory=DcpOptions, description="options of the dcp backend (with backend dcp)"
    )

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        FaultPlan.from_dict(value)  # the kinds the local backend injects, checked there
        return value

    @field_validator("covariates")
    @classmethod
    def _covariate_terms(cls, value: str) -> str:
        parse_terms(value)  # `name[:factor|:numeric]`, each once; the columns are checked later
        return value

    @model_validator(mode="after")
    def _lengths(self) -> SearchParameters:
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) must not exceed max_len ({self.max_len})")
        return self

    @model_validator(mode="after")
    def _slices_a_run_can_register(self) -> SearchParameters:
        slices = -(-self.n_signatures // self.signatures_per_slice)
        if slices > MAX_SLICES:
            raise ValueError(
                f"n_signatures={self.n_signatures:,} at signatures_per_slice="
                f"{self.signatures_per_slice} makes {slices:,} slices; a run takes at most "
                f"{MAX_SLICES:,} (each is registered on the server before the job starts, "
                f"about 10,000 a second): raise signatures_per_slice to "
                f"{-(-self.n_signatures // MAX_SLICES)} or more"
            )
        return self


def preparation_options(params: SearchParameters) -> dict:
    """The parameters that decide the prepared dataset."""
    names = (
        "case",
        "control",
        "sample_sheet",
        "phenotype_field",
        "cv_folds",
        "log2_transform",
        "covariates",
        "pair",
        "counts",
        "adjust_features",
    )
    options = {name: getattr(params, name) for name in names}
    # Only when set: the key of every other preparation (its cached file's name) stays as it was.
    return options | ({"probesets": tuple(params.probesets)} if params.probesets else {})
