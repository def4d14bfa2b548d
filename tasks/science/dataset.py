"""Dataset preparation: validation, the contrast, filtering (pure functions)."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from tasks.science.design import (
    Design,
    DesignError,
    ExpressionModel,
    build_design,
    parse_terms,
    remove_covariates,
)

RAW_INTENSITY_MAX = 100.0
# Linear intensities reach ~1e6; beyond this, variances overflow and every t is NaN.
MAX_ABS_VALUE = 1e12


# The input layouts in words, as the README names them (the log's "input layout: ...").
LAYOUT_WORDS = {
    "tutorial": "the tutorial's layout (samples as rows, a phenotype column)",
    "geo": "a GEO series matrix",
    "matrix": "an expression matrix (probesets as rows) with a sample sheet",
}


class DatasetError(ValueError):
    """An input file that cannot be prepared; the message names the file and the problem."""


@dataclass(frozen=True)
class PrepareOptions:
    """What the user chose about how to read and prepare the input."""

    case: str | None = None
    control: str | None = None
    sample_sheet: Path | None = None
    phenotype_field: str | None = None
    cv_folds: int = 10
    log2_transform: bool = False
    covariates: str = ""  # `batch,age:numeric`: sample-sheet columns entered in the design
    pair: str | None = None  # the sample-sheet column naming each sample's pair or patient
    counts: bool = False  # RNA-seq counts: filterByExpr, TMM, voom
    adjust_features: bool = False  # the classifiers see the covariates' effects removed
    # A federated search's common universe: these probesets only, in this order (all if empty).
    probesets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreparedSummary:
    """What preparation wrote: where, its sha256, the contrast, and what was decided."""

    name: str
    path: Path
    sha256: str
    layout: str
    case: str
    control: str
    samples: dict[str, int]
    sample_ids: list[str]
    n_probesets: int
    decisions: list[str]
    warnings: list[str]
    input_sha256: str = ""
    model: dict = field(default_factory=dict)  # ExpressionModel.to_dict()


@dataclass
class RawDataset:
    """An input as read: samples x probesets (strings not yet checked) and labels."""

    path: Path
    layout: str
    sample_ids: list[str]
    labels: list[str]
    cells: pd.DataFrame  # samples x probesets, object dtype, NaN for missing
    samples: pd.DataFrame | None = None  # sample attributes (sheet columns), index sample ids
    samples_path: Path | None = None  # the file they came from


@dataclass
class PreparedDataset:
    """A validated two-class dataset and the record of every decision taken."""

    matrix: pd.DataFrame  # samples x probesets, float64
    labels: list[str]
    sample_ids: list[str]
    case: str
    control: str
    layout: str
    decisions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model: ExpressionModel = field(default_factory=ExpressionModel)
    # What the differential expression starts from when it is not `matrix`: the counts, or
    # the values before the covariates were removed (samples x the same probesets).
    de_input: pd.DataFrame | None = None


def nearest_label(label: str, present: list[str]) -> str:
    """'; labels are case-sensitive: did you mean AML?' (or the nearest spelling), else ''."""
    same = [k for k in present if k.casefold() == label.casefold()]
    if same:
        return f"; labels are case-sensitive: did you mean {same[0]}?"
    close = difflib.get_close_matches(label, present, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def choose_contrast(labels: list[str], case: str | None, control: str | None, path: Path):
    """Pick (case, control); with two labels and none chosen, the minority is the case."""
    counts = Counter(labels)
    if "" in counts:
        raise DatasetError(f"{path}: {counts['']} samples have an empty phenotype")
    present = sorted(counts)
    for name, label in (("case", case), ("control", control)):
        if label is not None and label not in counts:
            raise DatasetError(
                f"{path}: {name} label '{label}' not found; labels: {present}"
                + nearest_label(label, present)
            )
    if case is None and control is None:
        if len(present) != 2:
            raise DatasetError(f"{path}: {len(present)} labels {present}; choose case and control")
        case = min(present, key=lambda k: (counts[k], k))
        control = next(k for k in present if k != case)
        return case, control, f"contrast chosen automatically: minority label '{case}' is the case"
    if case is None or control is None:
        others = [k for k in present if k != (case or control)]
        if len(others) != 1:
            raise DatasetError(f"{path}: give both case and control; labels: {present}")
        case, control = (case, others[0]) if case else (others[0], control)
    if case == control:
        raise DatasetError(f"{path}: case and control are the same label '{case}'")
    return case, control, f"contrast: case '{case}' vs control '{control}'"


def _first_bad_cell(cells: pd.DataFrame, bad: np.ndarray, path: Path, what: str) -> None:
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DatasetError(
            f"{path}: {what} {cells.iat[row, col]!r} "
            f"(sample '{cells.index[row]}', probeset '{cells.columns[col]}')"
        )


def _to_float(cells: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Convert string cells to finite floats of a plausible size, naming the first bad cell."""
    numeric = cells.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    values = numeric.to_numpy()
    _first_bad_cell(cells, np.isnan(values) & cells.notna().to_numpy(), path, "non-numeric value")
    _first_bad_cell(cells, np.isinf(values), path, "non-finite value")
    too_large = np.abs(np.nan_to_num(values)) > MAX_ABS_VALUE
    _first_bad_cell(
        cells, too_large, path, f"implausibly large expression value (|x| > {MAX_ABS_VALUE:g})"
    )
    return numeric


def prepare_dataset(raw: RawDataset, options: PrepareOptions) -> PreparedDataset:
    """Validate a raw input and reduce it to a two-class float matrix (inputs unchanged)."""
    # The worker's own rule, imported here: reading a dataset need not load scikit-learn.
    from tasks.science.worker import class_size_problem

    path = raw.path
    if not raw.labels:
        raise DatasetError(f"{path}: no samples")
    check_unique(raw.sample_ids, "sample", path)
    if options.counts and options.log2_transform:
        raise DatasetError(f"{path}: give counts or log2_transform, not both (voom takes logs)")
    case, control, contrast_note = choose_contrast(raw.labels, options.case, options.control, path)
    decisions = [f"input layout: {LAYOUT_WORDS.get(raw.layout, raw.layout)}", contrast_note]
    warnings: list[str] = []
    keep = [lab in (case, control) for lab in raw.labels]
    dropped = Counter(lab for lab, k in zip(raw.labels, keep) if not k)
    if dropped:
        decisions.append(
            f"dropped {sum(dropped.values())} samples of other labels: {dict(dropped)}"
        )
    labels = [lab for lab, k in zip(raw.labels, keep) if k]
    counts = Counter(labels)
    problem = class_size_problem(labels, (case, control), options.cv_folds)
    if problem:
        raise DatasetError(f"{path}: {problem}")
    matrix = _to_float(raw.cells.loc[keep], path)
    missing = matrix.isna().any(axis=0)
    if missing.any():
        decisions.append(f"dropped {int(missing.sum())} probesets with missing values")
        matrix = matrix.loc[:, ~missing]
    sample_ids = [s for s, k in zip(raw.sample_ids, keep) if k]
    design = _design(raw, options, sample_ids, np.asarray(labels) == case)
    if design.covariates:
        decisions.append(f"design {design.formula} for the differential expression")
    warnings += design.warnings
    if options.counts:
        matrix, de_input = _from_counts(matrix, design, path, decisions)
    else:
        matrix = _from_values(matrix, options, path, decisions, warnings)
        de_input = None
    if options.adjust_features:
        de_input = matrix if de_input is None else de_input
        adjusted = remove_covariates(matrix.to_numpy(), design)
        matrix = pd.DataFrame(adjusted, index=matrix.index, columns=matrix.columns)
        decisions.append(
            f"classifiers see the values with {', '.join(design.covariates)} removed "
            "(removeBatchEffect, phenotype not used)"
        )
    if options.probesets:
        matrix, de_input = _restrict(matrix, de_input, options.probesets, path, decisions)
    decisions.append(
        f"{matrix.shape[1]} probesets; {counts[case]} '{case}' and {counts[control]} '{control}'"
    )
    model = ExpressionModel(
        design.covariates, design.kinds, options.pair, options.counts, options.adjust_features
    )
    return PreparedDataset(
        matrix.set_axis(sample_ids),
        labels,
        sample_ids,
        case,
        control,
        raw.layout,
        decisions,
        warnings,
        model,
        None if de_input is None else de_input.set_axis(sample_ids),
    )


def _restrict(
    matrix: pd.DataFrame,
    de_input: pd.DataFrame | None,
    probesets: tuple[str, ...],
    path: Path,
    decisions: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The given probesets only, in their order; DatasetError names any preparation lacks."""
    missing = [p for p in probesets if p not in matrix.columns]
    if missing:
        raise DatasetError(
            f"{path}: {len(missing)} of the {len(probesets)} requested probesets are not in the "
            f"prepared data: {', '.join(missing[:10])}"
        )
    check_unique(list(probesets), "requested probeset", path)
    decisions.append(f"kept the {len(probesets)} probesets asked for (of {matrix.shape[1]})")
    keep = list(probesets)
    return matrix.loc[:, keep], None if de_input is None else de_input.loc[:, keep]


def _design(
    raw: RawDataset, options: PrepareOptions, sample_ids: list[str], is_case: np.ndarray
) -> Design:
    """The checked design over the compared samples; DatasetError names the sheet."""
    where = str(raw.samples_path or raw.path)
    try:
        terms = parse_terms(options.covariates)
        if options.adjust_features and not (terms or options.pair):
            raise DesignError("adjust_features needs covariates or a pair to remove")
        sheet = None if raw.samples is None else raw.samples.loc[sample_ids]
        return build_design(sheet, terms, options.pair, is_case, where)
    except DesignError as exc:
        message = str(exc)
        raise DatasetError(
            message if message.startswith(where) else f"{where}: {message}"
        ) from None


def _from_values(
    matrix: pd.DataFrame,
    options: PrepareOptions,
    path: Path,
    decisions: list[str],
    warnings: list[str],
) -> pd.DataFrame:
    """Expression values: constant probesets dropped, raw intensities log2'd or warned of."""
    constant = matrix.nunique(axis=0) <= 1
    if constant.any():
        decisions.append(f"dropped {int(constant.sum())} constant probesets")
        matrix = matrix.loc[:, ~constant]
    if matrix.shape[1] == 0:
        raise DatasetError(f"{path}: no probesets left after dropping missing and constant ones")
    values = matrix.to_numpy()
    high = float(values.max())
    integers = np.all(values >= 0) and np.all(values == np.round(values))
    if high > RAW_INTENSITY_MAX and integers and not options.log2_transform:
        warnings.append(
            f"every value is a non-negative integer (max {high:g}): RNA-seq counts want "
            "counts (filterByExpr, TMM, voom), raw intensities log2_transform"
        )
    elif high > RAW_INTENSITY_MAX and not options.log2_transform:
        warnings.append(
            f"max value {high:g} > {RAW_INTENSITY_MAX:g} looks like raw intensities; "
            "consider log2_transform"
        )
    if high > RAW_INTENSITY_MAX and options.log2_transform:
        if float(values.min()) <= 0:
            raise DatasetError(f"{path}: cannot log2-transform values <= 0")
        # A ufunc on a DataFrame gives a DataFrame (pandas-stubs type it as an ndarray).
        matrix = cast(pd.DataFrame, np.log2(matrix))
        decisions.append(f"log2-transformed (max value {high:g} looked like raw intensities)")
    return matrix


def _from_counts(
    matrix: pd.DataFrame, design: Design, path: Path, decisions: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts: the first bad cell refused; filterByExpr, TMM and voom's log-CPM for features."""
    from tasks.science.counts import count_problem, prepare_counts

    values = matrix.to_numpy()
    bad = count_problem(values)
    if bad is not None:
        row, col, problem = bad
        raise DatasetError(
            f"{path}: {problem} (sample '{matrix.index[row]}', probeset '{matrix.columns[col]}');"
            " --counts takes non-negative integer read counts"
        )
    prepared = prepare_counts(values, design.matrix)
    kept = matrix.columns[prepared.keep]
    if len(kept) == 0:
        raise DatasetError(f"{path}: no gene passes filterByExpr (too few reads)")
    factors = prepared.norm_factors
    decisions.append(
        f"RNA-seq counts: kept {len(kept)} of {matrix.shape[1]} genes (edgeR filterByExpr, "
        f"design {design.formula}); TMM factors {factors.min():.3f} to {factors.max():.3f}; "
        "classifiers see voom's log2-CPM"
    )
    log_cpm = pd.DataFrame(prepared.log_cpm, index=matrix.index, columns=kept)
    return log_cpm, matrix.loc[:, kept]


def dataset_text(prepared: PreparedDataset) -> str:
    """Serialize in the original layout; repr floats round-trip exactly."""
    header = "\t".join(["phenotype", *prepared.matrix.columns])
    rows = (
        "\t".join([label, *map(repr, values)])
        for label, values in zip(prepared.labels, prepared.matrix.to_numpy().tolist())
    )
    return "\n".join([header, *rows]) + "\n"


def check_unique(ids: list[str], what: str, path: Path) -> None:
    duplicates = sorted(k for k, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise DatasetError(f"{path}: duplicate {what} ids: {', '.join(duplicates[:10])}")


def check_probesets(probesets: list[str], path: Path) -> None:
    """Probeset names the prepared layout can hold: unique, non-empty, not 'phenotype'."""
    empty = [i + 1 for i, p in enumerate(probesets) if not p.strip()]
    if empty:
        raise DatasetError(f"{path}: empty probeset name (probeset #{empty[0]})")
    if any(p.strip().lower() == "phenotype" for p in probesets):
        raise DatasetError(f"{path}: a probeset named 'phenotype' clashes with the label column")
    check_unique(probesets, "probeset", path)
