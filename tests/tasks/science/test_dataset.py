import gzip
from pathlib import Path

import pytest

from tasks.io import detect_layout, read_input, save_prepared
from tasks.science.dataset import (
    DatasetError,
    PrepareOptions,
    prepare_dataset,
)

from ...conftest import GOLUB

TUTORIAL = "phenotype\tg1\tg2\tg3\n" + "".join(
    f"{lab}\t{i}.5\t{(i * 7) % 5}.25\t{i % 3}.0\n" for i, lab in enumerate(["A", "B"] * 4 + ["C"])
)


def geo_text(labels=("disease state: PsA", "disease state: Ps") * 3) -> str:
    samples = [f"GSM{i}" for i in range(len(labels))]
    rows = "\n".join(
        f'"ID_{g}"\t' + "\t".join(str(g + i * 0.5 + (g * i) % 3) for i in range(len(samples)))
        for g in range(4)
    )
    return (
        '!Series_title\t"x"\n!Sample_geo_accession\t' + "\t".join(f'"{s}"' for s in samples) + "\n"
        "!Sample_characteristics_ch1\t" + "\t".join('"tissue: skin"' for _ in samples) + "\n"
        "!Sample_characteristics_ch1\t" + "\t".join(f'"{v}"' for v in labels) + "\n"
        "!series_matrix_table_begin\n"
        '"ID_REF"\t' + "\t".join(f'"{s}"' for s in samples) + "\n" + rows + "\n"
        "!series_matrix_table_end\n"
    )


def write(tmp_path: Path, name: str, text: str, gz: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def prepare(path: Path, **options):
    opts = PrepareOptions(cv_folds=options.pop("cv_folds", 2), **options)
    return prepare_dataset(read_input(path, opts), opts)


def test_bundled_dataset_round_trips_byte_identical(tmp_path):
    prepared = prepare(GOLUB, cv_folds=10)
    assert (prepared.case, prepared.control) == ("AML", "ALL")
    summary = save_prepared(prepared, tmp_path, "golub")
    assert Path(summary.path).read_bytes() == GOLUB.read_bytes()
    assert summary.samples == {"AML": 11, "ALL": 27} and summary.n_probesets == 3051
    assert (tmp_path / "golub.tsv.sha256").read_text().strip() == summary.sha256


def test_other_labels_dropped_and_reported(tmp_path):
    prepared = prepare(write(tmp_path, "d.tsv", TUTORIAL), case="A", control="B")
    assert len(prepared.labels) == 8
    assert any("dropped 1 samples of other labels" in d for d in prepared.decisions)


@pytest.mark.parametrize("gz", [False, True])
def test_geo_series_matrix_with_named_field(tmp_path, gz):
    path = write(tmp_path, "GSE1_series_matrix.txt" + (".gz" if gz else ""), geo_text(), gz)
    prepared = prepare(path, phenotype_field="disease state")
    assert prepared.layout == "geo" and sorted(set(prepared.labels)) == ["Ps", "PsA"]
    assert list(prepared.matrix.index) == [f"GSM{i}" for i in range(6)]


def test_matrix_with_sample_sheet(tmp_path):
    matrix = "probeset,s1,s2,s3,s4\n" + "g1,1,2,3,4.5\ng2,2,1,0,3\ng3,5,5,5,5\n"
    sheet = "sample\tphenotype\ns1\tx\ns2\ty\ns3\tx\ns4\ty\n"
    prepared = prepare(
        write(tmp_path, "m.csv", matrix), sample_sheet=write(tmp_path, "s.tsv", sheet)
    )
    assert prepared.layout == "matrix" and list(prepared.matrix.columns) == ["g1", "g2"]
    assert any("dropped 1 constant probesets" in d for d in prepared.decisions)


def test_layout_detected_from_content_not_name():
    assert detect_layout("phenotype\ta\n") == "tutorial"
    assert detect_layout("!Series_title\tx\n") == "geo"
    assert detect_layout("id,s1\n") == "matrix"


def test_missing_values_dropped_and_raw_intensities(tmp_path):
    text = "phenotype\tg1\tg2\tg3\n" + "".join(
        f"{lab}\t{'NA' if i == 0 else 100 + i * 50}\t{200 + i}\t{300 - i * 3}\n"
        for i, lab in enumerate(["A", "B"] * 3)
    )
    path = write(tmp_path, "raw.tsv", text)
    warned = prepare(path, case="A", control="B")
    assert any("dropped 1 probesets with missing values" in d for d in warned.decisions)
    assert any("raw intensities" in w for w in warned.warnings)
    logged = prepare(path, case="A", control="B", log2_transform=True)
    assert logged.matrix.to_numpy().max() < 10


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("", {}, "file is empty"),
        ("sample\tg1\nA\t1\n", {}, "sample sheet"),
        (
            TUTORIAL,
            {"case": "Z", "control": "A"},
            r"case label 'Z' not found; labels: \['A', 'B', 'C'\]",
        ),
        (TUTORIAL, {}, "3 labels"),
        (TUTORIAL, {"case": "A", "control": "B", "cv_folds": 5}, "fewer than cv_folds=5"),
        (TUTORIAL.replace("1.5", "abc"), {"case": "A", "control": "B"}, "non-numeric value 'abc'"),
        (TUTORIAL.replace("g2", "g1"), {"case": "A", "control": "B"}, "duplicate probeset ids: g1"),
        (TUTORIAL.replace("B\t", "\t", 1), {"case": "A", "control": "B"}, "empty phenotype"),
        ("!Series_title\tx\n", {}, "series_matrix_table_begin"),
        # header-only files, in every layout
        ("phenotype\tg1\tg2\n", {}, "header but no data rows"),
        ("id\tS1\tS2\n", {"sample_sheet": "sheet"}, "header but no data rows"),
        (
            geo_text().split('"ID_REF"')[0] + '"ID_REF"\t"GSM0"\n!series_matrix_table_end\n',
            {"phenotype_field": "disease state"},
            "header but no data rows",
        ),  # fmt: skip
        # ragged rows: longer and shorter than the header, with their line numbers
        (TUTORIAL.replace("A\t0.5\t0.25\t0.0", "A\t0.5\t0.25\t0.0\t9"), {}, "line 2 has 5 fields"),
        (TUTORIAL.replace("\t1.5\t2.25\t1.0", "\t1.5\t2.25"), {}, "line 3 has 3 fields"),
        # values that make every statistic meaningless
        (TUTORIAL.replace("1.5", "inf"), {"case": "A", "control": "B"}, "non-finite value 'inf'"),
        (TUTORIAL.replace("1.5", "-Infinity"), {"case": "A", "control": "B"}, "non-finite value"),
        (TUTORIAL.replace("1.5", "1e300"), {"case": "A", "control": "B"}, "implausibly large"),
        # probeset names the prepared layout cannot hold
        (TUTORIAL.replace("g2", "phenotype"), {"case": "A", "control": "B"}, "probeset named"),
        (TUTORIAL.replace("\tg2", "\t "), {"case": "A", "control": "B"}, "empty probeset name"),
    ],
)
def test_bad_input_names_file_and_problem_and_writes_nothing(tmp_path, text, options, message):
    path = write(tmp_path, "bad.tsv", text)
    if options.get("sample_sheet"):
        options = {**options, "sample_sheet": write(tmp_path, "sheet.tsv", "id\tp\nS1\tA\n")}
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=message) as info:
        save_prepared(prepare(path, **options), out, "bad")
    assert str(path) in str(info.value)
    assert not out.exists()


def test_geo_missing_field_is_named(tmp_path):
    path = write(tmp_path, "g.txt", geo_text())
    with pytest.raises(DatasetError, match="no phenotype field .*'genotype'"):
        prepare(path, phenotype_field="genotype")


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        prepare(tmp_path / "nope.tsv")


def test_a_gzip_with_flipped_bytes_is_named(tmp_path):
    data = bytearray(gzip.compress(TUTORIAL.encode()))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.tsv.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupt gzip data") as info:
        prepare(path)
    assert str(path) in str(info.value)


def test_a_geo_matrix_without_a_phenotype_field_lists_its_characteristics(tmp_path):
    source = "!Sample_source_name_ch1\t" + "\t".join('"bone marrow"' for _ in range(6)) + "\n"
    text = geo_text().replace(
        "!Sample_characteristics_ch1", source + "!Sample_characteristics_ch1", 1
    )
    with pytest.raises(DatasetError) as info:
        prepare(write(tmp_path, "GSE1_series_matrix.txt", text))
    said = str(info.value)
    assert "one label ['bone marrow'] for every sample" in said
    assert "choose one with --phenotype-field" in said
    assert "'tissue' (1 value: skin); 'disease state' (2 values: Ps, PsA)" in said


def test_a_wrong_geo_field_gets_the_same_list(tmp_path):
    with pytest.raises(DatasetError) as info:
        prepare(write(tmp_path, "g.txt", geo_text()), phenotype_field="genotype")
    assert "--phenotype-field; characteristics fields: 'tissue'" in str(info.value)
    assert "'disease state' (2 values: Ps, PsA)" in str(info.value)


def test_a_csv_matrix_without_a_sample_sheet_names_the_option(tmp_path):
    with pytest.raises(DatasetError, match="give its sample sheet with --sample-sheet FILE"):
        prepare(write(tmp_path, "m.csv", "id,S1,S2\ng1,1.0,2.0\n"))


def test_a_label_in_the_wrong_case_gets_a_hint(tmp_path):
    with pytest.raises(DatasetError, match="labels are case-sensitive: did you mean A\\?"):
        prepare(write(tmp_path, "d.tsv", TUTORIAL), case="a", control="B")


def test_the_layout_is_said_in_words(tmp_path):
    prepared = prepare(write(tmp_path, "d.tsv", TUTORIAL), case="A", control="B")
    assert prepared.decisions[0] == (
        "input layout: the tutorial's layout (samples as rows, a phenotype column)"
    )


def test_preparation_keeps_the_probesets_asked_for_in_their_order():
    chosen = ("M27891_at", "AFFX-HUMISGF3A/M97935_MA_at", "X95735_at")
    prepared = prepare(GOLUB, cv_folds=10, probesets=chosen)
    assert tuple(prepared.matrix.columns) == chosen
    assert any("kept the 3 probesets asked for (of 3051)" in d for d in prepared.decisions)


def test_a_probeset_asked_for_that_preparation_lacks_is_named():
    with pytest.raises(DatasetError, match=r"golub_all_aml.tsv: 1 of the 2 requested probesets"):
        prepare(GOLUB, cv_folds=10, probesets=("M27891_at", "NOT_A_PROBESET"))
