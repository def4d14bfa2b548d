import json
from types import SimpleNamespace

import numpy as np
import pandas as pd

from tasks.io import save_tsv
from tasks.report.analysis import with_selection_p
from tasks.report.build import build_report
from tasks.report.verdict import gene_names
from tasks.science.screen import statistic_ids
from tasks.science.tables import (
    null_maxima,
    null_means,
    null_statistic,
    signature_table,
    validation_table,
)


def science_signature_table(inputs) -> pd.DataFrame:
    """The signature table as the science functions make it, with its selection-adjusted p."""
    table = signature_table(
        inputs.search.signatures,
        inputs.search.records,
        inputs.classifiers,
        inputs.failed_signatures,
    )
    design = inputs.search.null_design
    null = SimpleNamespace(
        maxima=null_maxima(null_means(inputs.search.permutation_records)),
        statistic=null_statistic(table, statistic_ids(design, None)),
    )
    return with_selection_p(table, null)


def test_build_writes_every_file_and_links_every_tsv(tmp_path, report_inputs):
    files = build_report(tmp_path, report_inputs)
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"signatures.tsv", "genes.tsv", "null.tsv", "validation.tsv", "report.html"}
    assert expected | {"report.json", "plots"} <= names
    html = files.html.read_text()
    for tsv in ("signatures.tsv", "genes.tsv", "null.tsv", "validation.tsv", "records.tsv"):
        assert f'href="{tsv}"' in html
    assert "permutation_records.tsv" in html
    for name in ("report.json", "report.md", "run.json", "parameters.json", "plots/volcano.png"):
        assert f'href="{name}"' in html  # the downloads list every file of the run
    assert 'href="predictions.tsv"' in html and 'href="plots/roc.png"' in html
    assert "RuntimeError: &lt;boom&gt; &amp; co" in html  # why slices failed, escaped
    assert "Smyth" in html and "Benjamini" in html
    # 27 of the 38 golub samples are ALL: the accuracy a classifier must beat.
    assert "always answering the majority class (ALL)\nscores 0.711" in html
    assert len(list((tmp_path / "plots").glob("*.png"))) == 9
    assert html.count('<svg class="volcano"') == 1 and "find a gene" in html


def test_tables_are_the_science_tables(tmp_path, report_inputs):
    build_report(tmp_path / "report", report_inputs)
    save_tsv(science_signature_table(report_inputs), tmp_path / "expected.tsv")
    written = (tmp_path / "report" / "signatures.tsv").read_bytes()
    assert written == (tmp_path / "expected.tsv").read_bytes()


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
    best = science_signature_table(report_inputs).iloc[0]
    maxima = null_means(report_inputs.search.permutation_records).groupby("permutation")
    maxima = maxima["mean_auc"].max().to_numpy()
    # The best of the 40 is not in the panel of 3: its p is that of the panel's best.
    statistic = record["null"]["statistic"]
    assert statistic < best["mean_auc"]
    expected = (1 + np.sum(maxima >= statistic)) / 6
    np.testing.assert_allclose(record["selection_adjusted_p"], expected, rtol=1e-12)
    assert record["selection_adjusted_p"] == best["selection_adjusted_p"]
    evidence = record["top_signature_evidence"]
    assert evidence[0]["rank"] == 1
    assert evidence[0]["selection_adjusted_p"] == record["selection_adjusted_p"]
    lower = record["null"].pop("lower_p_cost")
    assert record["null"] == {
        "exact": False,
        "n_searched": 40,
        "n_permutations": 5,
        "n_panel": 3,
        "n_candidates": 0,
        "statistic": statistic,
    }
    assert lower["permutations"] == 999  # 1 / (999 + 1) = 0.001
    assert lower["evaluations"] == 999 * (0 + 3) * len(report_inputs.classifiers)  # no candidates
    assert "to go lower" in files.html.read_text()
    html = files.html.read_text()
    assert "smallest attainable with 5 permutations is 0.167" in html
    assert "Venet" in html and "Westfall" in html
    signatures = pd.read_csv(tmp_path / "signatures.tsv", sep="\t")
    assert signatures["selection_adjusted_p"].notna().sum() == 40
    assert signatures["selection_adjusted_p"].is_monotonic_increasing  # ranked by mean AUC


def test_report_lists_validated_signatures_in_discovery_order(tmp_path, report_inputs):
    build_report(tmp_path, report_inputs)
    record = json.loads((tmp_path / "report.json").read_text())
    table = science_signature_table(report_inputs)
    validated = table[table["signature"].isin(report_inputs.validation_records["signature"])]
    by_id = {s.id: s for s in report_inputs.search.signatures}
    expected = validation_table(
        [by_id[i] for i in validated["signature"]],
        table,
        report_inputs.validation_records,
        report_inputs.classifiers,
    )
    shown = pd.DataFrame(record["validation"])
    assert list(shown["signature"]) == list(expected["signature"])
    assert list(shown["discovery_rank"]) == sorted(shown["discovery_rank"])
    for column in ("discovery_mean_auc", "validation_mean_auc", "validation_auc_svm"):
        np.testing.assert_allclose(shown[column], expected[column], rtol=1e-12)
    power = record["gene_power"]
    assert power["needed"] >= 2 and power["tested"] > 100


def test_the_report_opens_with_the_verdict_and_ends_with_the_run_details(tmp_path, report_inputs):
    files = build_report(tmp_path, report_inputs)
    html = files.html.read_text()
    sections = [part.split('"', 1)[0] for part in html.split('<section id="')[1:]]
    assert sections[0] == "verdict"
    assert sections[-4:] == ["summary", "retries", "parameters", "versions"]
    verdict = html.split('<section id="verdict">', 1)[1].split("</section>", 1)[0]
    assert "selection-adjusted p" in verdict and "smallest attainable 0.167" in verdict
    assert "random-signature baseline" in verdict and "cost" in verdict
    assert "sha256" not in verdict and "job-a" not in verdict  # operational details at the end
    genes = gene_names(files.top_signatures[0]["probesets"])  # by symbol where there is one
    assert f"{len(genes)} genes: {', '.join(genes)}" in verdict
    # Where the per-rank p-values are shown, what they mean and do not mean.
    assert html.count("several rows below 0.05 are one finding") == 2
    assert files.markdown.index("## Verdict") < files.markdown.index("## Run summary")


def test_the_roc_curves_areas_are_the_mean_pooled_auc_of_their_predictions(tmp_path, report_inputs):
    from sklearn.metrics import roc_auc_score

    build_report(tmp_path, report_inputs)
    record = json.loads((tmp_path / "report.json").read_text())
    predicted = report_inputs.predictions
    table = science_signature_table(report_inputs).set_index("signature")
    expected_order = sorted(set(predicted["signature"]), key=lambda s: table.at[s, "rank"])
    assert [row["signature"] for row in record["roc"]] == expected_order
    for row in record["roc"]:
        rows = predicted[predicted["signature"] == row["signature"]]
        aucs = [
            roc_auc_score(g["phenotype"] == "AML", g["score"])
            for _, g in rows.groupby("classifier")
        ]
        # Tied scores (2 decimals) included: the averaged curve's area is their mean, to 1e-12.
        np.testing.assert_allclose(row["roc_auc"], np.mean(aucs), rtol=0, atol=1e-12)
        assert row["mean_auc"] == table.at[row["signature"], "mean_auc"]
        assert row["n_classifiers"] == 2 and row["rank"] == table.at[row["signature"], "rank"]
    html = (tmp_path / "report.html").read_text()
    assert "pooled over the folds" in html and "plots/roc.png" in html
