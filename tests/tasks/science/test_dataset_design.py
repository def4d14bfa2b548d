"""Preparing inputs with covariates, pairs and adjusted features, end to end against R."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.io import de_input_path, model_path, read_input, read_model, read_prepared, save_prepared
from tasks.policy import sample_split
from tasks.science.dataset import DatasetError, PrepareOptions, prepare_dataset
from tasks.science.design import remove_covariates
from tasks.science.destats import differential_expression

from ...conftest import GOLUB
from .test_dataset import geo_text, write
from .test_design import REFERENCE, read_reference


@pytest.fixture(scope="module")
def golub_matrix(tmp_path_factory) -> tuple[Path, Path]:
    """golub as a matrix (probesets as rows) with the made-up batch and age of its sheet."""
    folder = tmp_path_factory.mktemp("golub")
    sheet = pd.read_csv(REFERENCE / "golub_sheet.tsv", sep="\t")
    values = pd.read_csv(GOLUB, sep="\t").drop(columns="phenotype").T
    values.columns = sheet["sample"]
    values.index.name = "probeset"
    values.to_csv(folder / "golub.tsv", sep="\t")
    sheet.to_csv(folder / "sheet.tsv", sep="\t", index=False)
    return folder / "golub.tsv", folder / "sheet.tsv"


def prepare(path: Path, **options):
    opts = PrepareOptions(**options)
    return prepare_dataset(read_input(path, opts), opts)


def test_covariates_from_a_sheet_give_limmas_table(golub_matrix, tmp_path):
    matrix_path, sheet = golub_matrix
    prepared = prepare(matrix_path, sample_sheet=sheet, covariates="batch,age", case="AML")
    assert "design ~ batch + age + group for the differential expression" in prepared.decisions
    summary = save_prepared(prepared, tmp_path, "d")
    assert summary.model["formula"] == "~ batch + age + group"
    model, de_input = read_model(summary.path)
    assert de_input is None and not de_input_path(summary.path).exists()
    labels, features = read_prepared(summary.path)
    de = differential_expression(features, labels, "AML", "ALL", model)
    reference = read_reference("golub_batch_age")
    for column in ("logFC", "t", "P.Value", "adj.P.Val", "B"):
        np.testing.assert_allclose(
            de.loc[reference.index, column], reference[column], rtol=1e-6, atol=1e-12
        )


def test_adjusted_features_keep_the_unadjusted_values_for_the_statistics(golub_matrix, tmp_path):
    matrix_path, sheet = golub_matrix
    options = {"sample_sheet": sheet, "covariates": "batch,age", "case": "AML"}
    plain = prepare(matrix_path, **options)
    adjusted = prepare(matrix_path, adjust_features=True, **options)
    np.testing.assert_allclose(
        adjusted.matrix.to_numpy(),
        remove_covariates(plain.matrix.to_numpy(), plain_design(plain)),
        rtol=1e-12,
    )
    assert any("with batch, age removed" in d for d in adjusted.decisions)
    summary = save_prepared(adjusted, tmp_path, "adj")
    model, de_input = read_model(summary.path)
    assert model.adjusted and de_input is not None
    np.testing.assert_array_equal(de_input.to_numpy(), plain.matrix.to_numpy())


def plain_design(prepared):
    return prepared.model.design(np.asarray(prepared.labels) == prepared.case)


def test_geo_characteristics_are_covariates(tmp_path):
    labels = [f"disease state: {d}" for d in ("PsA", "Ps") * 4]
    text = geo_text(tuple(labels)).replace(
        "!series_matrix_table_begin",
        "!Sample_characteristics_ch1\t"
        + "\t".join(f'"batch: {b}"' for b in (1, 1, 2, 2, 1, 1, 2, 2))
        + "\n!series_matrix_table_begin",
    )
    path = write(tmp_path, "gse.txt", text)
    prepared = prepare(path, phenotype_field="disease state", covariates="batch:factor", cv_folds=2)
    assert prepared.model.kinds == {"batch": "factor"}
    assert prepared.model.covariates["batch"] == ["1", "1", "2", "2", "1", "1", "2", "2"]
    with pytest.raises(DatasetError, match="no column 'sex' for a covariate; columns: .*batch"):
        prepare(path, phenotype_field="disease state", covariates="sex", cv_folds=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"covariates": "batch"}, "come from a sample sheet"),
        ({"pair": "patient"}, "come from a sample sheet"),
        ({"adjust_features": True}, "adjust_features needs covariates or a pair"),
        ({"counts": True, "log2_transform": True}, "give counts or log2_transform, not both"),
    ],
)
def test_refused_before_anything_is_written(options, message):
    with pytest.raises(DatasetError, match=message) as info:
        prepare(GOLUB, **options)
    assert str(info.value).startswith(str(GOLUB))


def test_a_confounded_covariate_names_the_sheet(golub_matrix, tmp_path):
    matrix_path, sheet = golub_matrix
    frame = pd.read_csv(sheet, sep="\t")
    frame["site"] = np.where(frame["phenotype"] == "AML", "north", "south")
    frame.to_csv(tmp_path / "sheet.tsv", sep="\t", index=False)
    with pytest.raises(DatasetError, match="sheet.tsv: covariate 'site' is confounded"):
        prepare(matrix_path, sample_sheet=tmp_path / "sheet.tsv", covariates="batch,site")


def test_paired_design_from_a_sheet_and_a_split_that_breaks_pairs(tmp_path):
    values = pd.read_csv(REFERENCE / "paired.tsv", sep="\t", index_col="probeset")
    values.to_csv(tmp_path / "paired.tsv", sep="\t")
    sheet = REFERENCE / "paired_sheet.tsv"
    prepared = prepare(
        tmp_path / "paired.tsv",
        sample_sheet=sheet,
        phenotype_field="treatment",
        pair="patient",
        case="after",
        cv_folds=2,
    )
    assert prepared.model.formula == "~ patient + group"
    de = differential_expression(
        prepared.matrix, prepared.labels, "after", "before", prepared.model
    )
    reference = read_reference("paired")
    np.testing.assert_allclose(de.loc[reference.index, "t"], reference["t"], rtol=1e-6)
    with pytest.raises(DatasetError, match="pair 'p.*' of column 'patient' has samples in one"):
        sample_split(prepared.labels, 0.25, 1, 2, "paired.tsv", prepared.model, "after")


def test_a_sidecar_written_before_the_dataset(golub_matrix, tmp_path):
    matrix_path, sheet = golub_matrix
    prepared = prepare(matrix_path, sample_sheet=sheet, covariates="batch", case="AML")
    summary = save_prepared(prepared, tmp_path, "d")
    assert model_path(summary.path).stat().st_mtime_ns <= summary.path.stat().st_mtime_ns


COUNTS = Path(__file__).parent


@pytest.fixture(scope="module")
def counts_input(tmp_path_factory) -> tuple[Path, Path]:
    """The `main` counts study, written to a module's folder."""
    return write_counts_study(tmp_path_factory.mktemp("counts"))


def write_counts_study(folder: Path) -> tuple[Path, Path]:
    """The `main` counts reference (genes x samples) and a sheet of its design's batch/group."""
    design = pd.read_csv(COUNTS / "counts_main_design.tsv", sep="\t", index_col="sample")
    batch = np.select([design["batchb2"] == 1, design["batchb3"] == 1], ["b2", "b3"], "b1")
    phenotype = np.where(design["grouptrt"] == 1, "trt", "ctrl")
    sheet = pd.DataFrame({"sample": design.index, "phenotype": phenotype, "batch": batch})
    sheet.to_csv(folder / "sheet.tsv", sep="\t", index=False)
    (folder / "counts.tsv").write_bytes((COUNTS / "counts_main.tsv").read_bytes())
    return folder / "counts.tsv", folder / "sheet.tsv"


def test_counts_prepared_and_tested_as_edger_and_voom_do(counts_input, tmp_path):
    path, sheet = counts_input
    prepared = prepare(
        path, sample_sheet=sheet, covariates="batch", counts=True, case="trt", cv_folds=2
    )
    kept = (COUNTS / "counts_main_kept.txt").read_text().split()
    assert list(prepared.matrix.columns) == kept
    voom = pd.read_csv(COUNTS / "counts_main_voom.tsv", sep="\t")
    got = prepared.matrix.stack().rename_axis(["sample", "gene"]).rename("got").reset_index()
    merged = voom.merge(got, on=["gene", "sample"])
    assert len(merged) == len(voom)
    np.testing.assert_allclose(merged["got"], merged["E"], rtol=1e-12)
    assert any("kept" in d and "filterByExpr" in d for d in prepared.decisions)
    summary = save_prepared(prepared, tmp_path, "c")
    model, de_input = read_model(summary.path)
    assert model.counts and de_input is not None
    labels, _ = read_prepared(summary.path)
    de = differential_expression(de_input, labels, "trt", "ctrl", model)
    reference = pd.read_csv(COUNTS / "counts_main_toptable.tsv", sep="\t", index_col="gene")
    for column in ("logFC", "AveExpr", "t", "P.Value", "adj.P.Val", "B"):
        np.testing.assert_allclose(de.loc[reference.index, column], reference[column], rtol=1e-6)


@pytest.mark.parametrize(
    ("cell", "problem"), [("-3", "negative count -3"), ("2.5", "non-integer count 2.5")]
)
def test_bad_counts_name_the_file_and_the_first_cell(counts_input, tmp_path, cell, problem):
    path, sheet = counts_input
    lines = path.read_text().splitlines()
    fields = lines[3].split("\t")
    fields[5] = cell
    lines[3] = "\t".join(fields)
    bad = write(tmp_path, "bad.tsv", "\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as info:
        prepare(bad, sample_sheet=sheet, counts=True, case="trt", cv_folds=2)
    assert str(info.value).startswith(f"{bad}: {problem} (sample 's05', probeset '{fields[0]}')")


def test_counts_without_counts_are_named(counts_input):
    path, sheet = counts_input
    prepared = prepare(path, sample_sheet=sheet, case="trt", cv_folds=2)
    assert any("non-negative integer" in w and "counts" in w for w in prepared.warnings)
