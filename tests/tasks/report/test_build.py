import json
import time

import numpy as np
import pandas as pd

from tasks.report.build import build_report
from tasks.science.tables import signature_table


def test_build_writes_every_file_and_links_every_tsv(tmp_path, report_inputs):
    started = time.perf_counter()
    files = build_report(tmp_path, report_inputs)
    assert time.perf_counter() - started < 60
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"signatures.tsv", "genes.tsv", "null.tsv", "validation.tsv", "report.html"}
    assert expected | {"report.json", "plots"} <= names
    html = files.html.read_text()
    for tsv in ("signatures.tsv", "genes.tsv", "null.tsv", "validation.tsv", "records.tsv"):
        assert f'href="{tsv}"' in html
    assert "permutation_records.tsv" in html
    assert "RuntimeError: &lt;boom&gt; &amp; co" in html  # why slices failed, escaped
    assert "Smyth" in html and "Benjamini" in html
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5


def test_tables_are_the_science_tables(tmp_path, report_inputs):
    build_report(tmp_path, report_inputs)
    written = pd.read_csv(tmp_path / "signatures.tsv", sep="\t")
    expected = signature_table(
        report_inputs.signatures,
        report_inputs.records,
        report_inputs.classifiers,
        report_inputs.failed_signatures,
    )
    assert list(written["signature"]) == list(expected["signature"])


def test_report_json_and_symbols_beside_probesets(tmp_path, report_inputs):
    files = build_report(tmp_path, report_inputs)
    record = json.loads((tmp_path / "report.json").read_text())
    assert record["rounds"][0]["why"].startswith("slice 2: error")
    assert record["versions"] == {"numpy": "2.0"}
    assert "(" in "".join(r["probesets"] for r in files.top_signatures)  # "id (SYMBOL)"
    genes = record["top_genes"]
    assert genes[0]["probeset"] == "M27891_at" and genes[0]["symbol"] == "CST3"


def test_report_gives_the_selection_adjusted_p_with_its_floor(tmp_path, report_inputs):
    files = build_report(tmp_path, report_inputs)
    record = json.loads((tmp_path / "report.json").read_text())
    # Five permutations: no p below 1/6, printed beside it.
    np.testing.assert_allclose(record["selection_adjusted_p_min"], 1 / 6, rtol=1e-12)
    assert 1 / 6 <= record["selection_adjusted_p"] <= 1
    evidence = record["top_signature_evidence"]
    assert evidence[0]["rank"] == 1
    assert evidence[0]["selection_adjusted_p"] == record["selection_adjusted_p"]
    assert record["null"] == {"exact": False, "n_searched": 40, "n_permutations": 5}
    html = files.html.read_text()
    assert "smallest attainable with 5 permutations is 0.167" in html
    assert "Venet" in html and "Westfall" in html
    signatures = pd.read_csv(tmp_path / "signatures.tsv", sep="\t")
    assert signatures["selection_adjusted_p"].notna().sum() == 40
    assert signatures["selection_adjusted_p"].is_monotonic_increasing  # ranked by mean AUC


def test_report_lists_validated_signatures_in_discovery_order(tmp_path, report_inputs):
    build_report(tmp_path, report_inputs)
    record = json.loads((tmp_path / "report.json").read_text())
    ranks = [row["discovery_rank"] for row in record["validation"]]
    assert len(ranks) == 4 and ranks == sorted(ranks)
    assert all(0 <= row["validation_mean_auc"] <= 1 for row in record["validation"])
    power = record["gene_power"]
    assert power["needed"] >= 2 and power["tested"] > 100
