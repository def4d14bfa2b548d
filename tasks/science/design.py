"""The linear model of the differential expression: covariates, pairing and the group.

A design is R's `model.matrix(~ covariates + pair + group)`: an intercept, numeric covariates
as numbers, factors in treatment coding, and the group (case = 1) as the last column, whose
coefficient is the case-vs-control difference the report tables. Every check a design needs
runs here, before any job, and fails in one line naming the column and the problem.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

Kind = Literal["factor", "numeric"]
# A numeric covariate with this few distinct integer values is likely a coded category.
FEW_CODES = 5
# Association with the phenotype this strong makes a covariate a rival explanation.
ASSOCIATION_P = 0.05


class DesignError(ValueError):
    """A design that cannot be fitted; the message names the column and the problem."""


@dataclass(frozen=True)
class Term:
    """One covariate as the user named it: its sample-sheet column and how it enters."""

    name: str
    kind: Kind | None = None  # None: numeric if every value is a number, else a factor

    @property
    def spelled(self) -> str:
        """The term as the user writes it on the command line."""
        return f"{self.name}:{self.kind}" if self.kind else self.name


@dataclass(frozen=True)
class Design:
    """A full-rank design matrix (samples x columns), its formula, and what was noticed."""

    matrix: np.ndarray
    columns: list[str]
    formula: str
    covariates: dict[str, list]  # column -> one value per sample, as entered
    kinds: dict[str, Kind]
    warnings: list[str] = field(default_factory=list)

    @property
    def group_column(self) -> int:
        """The index of the group coefficient (the last column)."""
        return len(self.columns) - 1


def parse_terms(spec: str | list[str] | None) -> list[Term]:
    """`batch,age:numeric,lane:factor` (or a list of such) as terms; duplicates refused."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    terms = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, _, kind = item.partition(":")
        if kind not in ("", "factor", "numeric"):
            raise DesignError(f"covariate '{item}': the kind after ':' is factor or numeric")
        terms.append(Term(name.strip(), kind or None))  # type: ignore[arg-type]
    repeated = [n for n, c in Counter(t.name for t in terms).items() if c > 1]
    if repeated:
        raise DesignError(f"covariate '{repeated[0]}' is named twice")
    return terms


def _values(sheet: pd.DataFrame, term: Term, where: str) -> tuple[list, Kind]:
    """A covariate's values over the compared samples, typed, with every check on its own."""
    if term.name not in sheet.columns:
        raise DesignError(
            f"{where}: no column '{term.name}' for a covariate; columns: {list(sheet.columns)}"
        )
    raw = sheet[term.name].fillna("").astype(str).str.strip()
    missing = raw.index[raw == ""].tolist()
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise DesignError(
            f"{where}: covariate '{term.name}' is missing for {len(missing)} samples ({shown})"
        )
    numbers = pd.to_numeric(raw, errors="coerce")
    kind: Kind = term.kind or ("numeric" if numbers.notna().all() else "factor")
    if kind == "numeric" and numbers.isna().any():
        bad = raw[numbers.isna()].iloc[0]
        raise DesignError(f"{where}: covariate '{term.name}' is numeric but has value {bad!r}")
    values = numbers.astype(float).tolist() if kind == "numeric" else raw.tolist()
    if len(set(values)) < 2:
        raise DesignError(
            f"{where}: covariate '{term.name}' has one value ({values[0]!r}) among the "
            "samples compared: it cannot enter the design"
        )
    return values, kind


def _columns(name: str, values: list, kind: Kind) -> tuple[list[np.ndarray], list[str]]:
    if kind == "numeric":
        return [np.asarray(values, dtype=np.float64)], [name]
    levels = sorted(set(values))
    arr = np.asarray(values)
    return [(arr == lev).astype(np.float64) for lev in levels[1:]], [
        f"{name}{lev}" for lev in levels[1:]
    ]


def _rank(columns: list[np.ndarray]) -> int:
    # lm.fit's tolerance, relative to the matrix's scale.
    return int(np.linalg.matrix_rank(np.column_stack(columns), tol=None))


def _confounded(entered: dict[str, list[np.ndarray]], group: np.ndarray, where: str) -> None:
    """Refuse covariates that leave the design short of rank or the group not estimable."""
    intercept = [np.ones(len(group))]
    base = intercept + [c for cols in entered.values() for c in cols]
    if _rank(base) < len(base):
        names = " and ".join(f"'{n}'" for n in entered)
        raise DesignError(
            f"{where}: covariates {names} are redundant: the design is not of full rank"
        )
    if _rank([*base, group]) > len(base):
        return
    alone = [n for n, cols in entered.items() if _rank([*intercept, *cols, group]) <= 1 + len(cols)]
    blamed = alone or list(entered)
    named = " and ".join(f"'{n}'" for n in blamed)
    what = f"covariate {named} is" if len(blamed) == 1 else f"covariates {named} together are"
    raise DesignError(
        f"{where}: {what} confounded with the phenotype: the group difference cannot be "
        "estimated beside it"
    )


def _pair_problem(pairs: list, group: np.ndarray, where: str, column: str) -> None:
    by_pair: dict[object, set[bool]] = {}
    for p, g in zip(pairs, group.astype(bool)):
        by_pair.setdefault(p, set()).add(bool(g))
    lonely = [p for p, groups in by_pair.items() if len(groups) < 2]
    if lonely:
        raise DesignError(
            f"{where}: pair '{lonely[0]}' of column '{column}' has samples in one group only "
            f"({len(lonely)} such pairs); each pair needs a case and a control sample"
        )


def association_warning(name: str, values: list, kind: Kind, group: np.ndarray) -> str | None:
    """A line when a covariate is associated with the phenotype (classifiers may learn it)."""
    case = group.astype(bool)
    if kind == "numeric":
        x = np.asarray(values, dtype=np.float64)
        p = float(stats.mannwhitneyu(x[case], x[~case]).pvalue)
        how = f"Mann-Whitney p {p:.2g}"
    else:
        table = pd.crosstab(pd.Series(values), pd.Series(case))
        if table.shape[1] < 2:
            return None
        chi2, p, _, _ = stats.chi2_contingency(table.to_numpy(), correction=False)
        v = np.sqrt(chi2 / (len(values) * (min(table.shape) - 1)))
        how = f"Cramér's V {v:.2f}, chi-square p {p:.2g}"
    if p >= ASSOCIATION_P:
        return None
    return (
        f"covariate '{name}' is associated with the phenotype ({how}): the differential "
        "expression is adjusted for it, but the signature search's classifiers may learn it "
        "instead of the biology"
    )


def _code_warning(name: str, values: list, kind: Kind, term: Term) -> str | None:
    distinct = set(values)
    if kind == "numeric" and term.kind is None and len(distinct) <= FEW_CODES:
        if all(float(v).is_integer() for v in distinct):
            return (
                f"covariate '{name}' has {len(distinct)} integer values and enters as a number; "
                f"write {name}:factor if it is a category"
            )
    return None


def build_design(
    sheet: pd.DataFrame | None, terms: list[Term], pair: str | None, is_case: np.ndarray, where: str
) -> Design:
    """The design `~ terms + pair + group` over the compared samples (sheet rows in order)."""
    group = np.asarray(is_case, dtype=np.float64)
    if (terms or pair) and sheet is None:
        raise DesignError(
            f"{where}: covariates and pairs come from a sample sheet (--sample-sheet) or a GEO "
            "series matrix's characteristics; this input has neither"
        )
    every = [*terms, *([Term(pair, "factor")] if pair else [])]
    entered: dict[str, list[np.ndarray]] = {}
    names: list[str] = []
    covariates: dict[str, list] = {}
    kinds: dict[str, Kind] = {}
    warnings: list[str] = []
    for term in every:
        if term.name in covariates:
            raise DesignError(f"{where}: column '{term.name}' is both a covariate and the pair")
        assert sheet is not None
        values, kind = _values(sheet, term, where)
        covariates[term.name], kinds[term.name] = values, kind
        cols, col_names = _columns(term.name, values, kind)
        entered[term.name] = cols
        names += col_names
        if term.name == pair:
            _pair_problem(values, group, where, pair)
        else:
            warnings += filter(None, [association_warning(term.name, values, kind, group)])
        warnings += filter(None, [_code_warning(term.name, values, kind, term)])
    _confounded(entered, group, where)
    matrix = np.column_stack(
        [np.ones(len(group)), *[c for v in entered.values() for c in v], group]
    )
    if matrix.shape[0] <= matrix.shape[1]:
        raise DesignError(
            f"{where}: the design has {matrix.shape[1]} coefficients for {matrix.shape[0]} "
            "samples: no residual degrees of freedom"
        )
    formula = "~ " + " + ".join([*(t.name for t in every), "group"])
    return Design(matrix, ["(Intercept)", *names, "group"], formula, covariates, kinds, warnings)


def remove_covariates(matrix: np.ndarray, design: Design) -> np.ndarray:
    """limma's removeBatchEffect without the phenotype: each covariate's fitted effect removed.

    Factors are coded with sum-to-zero contrasts, numeric covariates as given, and the model
    kept is an intercept, so the phenotype labels are never used (cross-validation stays honest).
    """
    columns = []
    for name, values in design.covariates.items():
        if design.kinds[name] == "numeric":
            columns.append(np.asarray(values, dtype=np.float64)[:, None])
            continue
        levels = sorted(set(values))
        coded = np.array([[float(v == lev) for lev in levels[:-1]] for v in values])
        coded[np.asarray(values) == levels[-1]] = -1.0
        columns.append(coded)
    if not columns:
        return np.array(matrix, dtype=np.float64)
    x_batch = np.hstack(columns)
    full = np.column_stack([np.ones(len(x_batch)), x_batch])
    beta, *_ = np.linalg.lstsq(full, matrix, rcond=None)
    return np.asarray(matrix, dtype=np.float64) - x_batch @ beta[1:]


@dataclass(frozen=True)
class ExpressionModel:
    """What the differential expression needs beyond the matrix, as preparation decided it."""

    covariates: dict[str, list] = field(default_factory=dict)  # one value per prepared sample
    kinds: dict[str, Kind] = field(default_factory=dict)
    pair: str | None = None
    counts: bool = False  # the expression input holds counts: TMM and voom weights
    adjusted: bool = False  # the classifiers saw the values with the covariates removed

    @property
    def formula(self) -> str:
        """R's formula of the design, e.g. `~ batch + patient + group`."""
        return "~ " + " + ".join([*self.covariates, "group"])

    def design(self, is_case: np.ndarray, rows: list[int] | None = None, where: str = "") -> Design:
        """The design over the prepared samples `rows` (all when None; `is_case` per row)."""
        take = list(range(len(is_case))) if rows is None else list(rows)
        sheet = pd.DataFrame(
            {n: [str(self.covariates[n][i]) for i in take] for n in self.covariates},
            index=[f"sample {i + 1}" for i in take],
        )
        terms = [Term(n, self.kinds[n]) for n in self.covariates if n != self.pair]
        where = where or "the prepared samples"
        return build_design(sheet if self.covariates else None, terms, self.pair, is_case, where)

    def to_dict(self) -> dict:
        """The model as JSON-ready data (the prepared dataset's `.model.json`)."""
        return dataclasses.asdict(self) | {"formula": self.formula}

    @classmethod
    def from_dict(cls, data: dict) -> ExpressionModel:
        """The model written by `to_dict`."""
        return cls(**{k: v for k, v in data.items() if k != "formula"})
