"""Annotations to symbols: the bundled TSV, GEO platform tables, descriptions alone."""

import gzip

import pandas as pd
import pytest

from tasks.io import read_annotation
from tasks.science.annotation import annotation_table, gene_symbol
from tasks.science.dataset import DatasetError

from ...conftest import ROOT

BUNDLED = ROOT / "input" / "golub_all_aml.annotation.tsv"
GPL_ROWS = (
    "ID\tGB_ACC\tGene Title\tGene Symbol\n1007_s_at\tU48705\tdiscoidin domain receptor\tDDR1\n"
)


def test_the_bundled_annotation_names_genes_the_descriptions_did_not():
    symbols = read_annotation(BUNDLED)["symbol"]
    # zyxin, cystatin A, c-myb and IL-8 had no symbol in their descriptions' first words;
    # adipsin was "DF"; LTC4S, hCox-2 and ITGAD are named only in brackets.
    expected = {
        "X95735_at": "ZYX",
        "M27891_at": "CST3",
        "M84526_at": "CFD",
        "D88422_at": "CSTA",
        "U22376_cds2_s_at": "MYB",
        "M28130_rna1_s_at": "CXCL8",
        "U50136_rna1_at": "LTC4S",
        "U04636_rna1_at": "PTGS2",
        "U40279_at": "ITGAD",
    }
    assert {p: symbols[p] for p in expected} == expected
    # "Amphiregulin (AR)" is not the androgen receptor; a region naming several genes names none.
    assert symbols["M30703_s_at"] == "" and symbols["U52112_rna5_at"] == ""
    assert (symbols != "").sum() == 2522 and len(symbols) == 3051


@pytest.mark.parametrize(
    "text",
    [
        "#ID = probeset id\n#Gene Symbol = HGNC symbol\n" + GPL_ROWS,  # GEO's full table
        "^PLATFORM = GPL96\n!platform_table_begin\n" + GPL_ROWS + "!platform_table_end\n",
    ],
    ids=["gpl-table", "soft"],
)
def test_a_geo_platform_table_gives_its_gene_symbol_column(tmp_path, text):
    path = tmp_path / "GPL96.txt.gz"
    path.write_bytes(gzip.compress(text.encode()))
    table = read_annotation(path)
    assert table.loc["1007_s_at"].to_dict() == {
        "symbol": "DDR1",
        "description": "discoidin domain receptor",
    }


def test_without_a_symbol_column_symbols_come_from_the_descriptions():
    raw = pd.DataFrame({"probeset": ["a", "b", "a"], "description": ["CST3 Cystatin C", "x", "y"]})
    table = annotation_table(raw, "ann.tsv")
    assert table["symbol"].to_dict() == {"a": "CST3", "b": ""}  # the first of a repeated id


@pytest.mark.parametrize("text", ["", "#only comments\n"])
def test_an_annotation_without_a_table_is_refused_naming_the_file(tmp_path, text):
    path = tmp_path / "ann.tsv"
    path.write_text(text)
    with pytest.raises(DatasetError, match="ann.tsv: (file is empty|the annotation has no table)"):
        read_annotation(path)


def test_gene_symbols_from_descriptions():
    assert gene_symbol("CST3 Cystatin C (amyloid angiopathy)") == "CST3"
    assert gene_symbol("ATP5A1 ATP synthase, H+ transporting") == "ATP5A1"
    assert gene_symbol("KIAA0107 gene") == "KIAA0107"
    assert gene_symbol("CYSTATIN A") == ""  # a name in capitals, no symbol
    assert gene_symbol("INTERLEUKIN-8 PRECURSOR") == ""
    assert gene_symbol("GB DEF = N-acetylglucosaminyltransferase V") == ""
    assert gene_symbol("Protein D123") == ""
