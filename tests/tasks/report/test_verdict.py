"""The terminal verdict, read from a report.json record."""

from __future__ import annotations

import copy

from tasks.report.verdict import gene_names, lower_p_cost, verdict_lines

RECORD = {
    "summary": {
        "contrast": "AML (case) vs ALL (control)",
        "run time": "41.2 s (every flow attempt)",
        "signatures evaluated": 40,
    },
    "top_signatures": [
        {
            "rank": 1,
            "signature": 17,
            "mean_auc": 0.982551,
            "probesets": "M27891_at (CST3), X95735_at, M23197_at (CD33)",
            "selection_adjusted_p": 0.0244,
        }
    ],
    "selection_adjusted_p": 0.0244,
    "selection_adjusted_p_min": 1 / 41,
    "null": {"exact": False, "n_searched": 40, "n_permutations": 40},
    "random_signature_baseline": {
        "random_median_auc": 0.931,
        "permuted_median_auc": 0.512,
        "share_above_permuted_q95": 0.88,
        "mean_auc_p": 1 / 41,
    },
}


def test_genes_are_named_by_symbol_else_by_probeset():
    assert gene_names("M27891_at (CST3), X95735_at, M23197_at (CD33)") == [
        "CST3",
        "X95735_at",
        "CD33",
    ]


def test_the_verdict_names_the_best_signature_its_auc_p_and_floor():
    lines = verdict_lines(RECORD)
    text = "\n".join(lines)
    assert lines[0] == "Verdict (AML (case) vs ALL (control)):"
    assert "best signature #17 (3 genes): CST3, X95735_at, CD33" in text
    assert (
        "mean AUC 0.9826, selection-adjusted p 0.0244 (smallest attainable 0.0244 with 40" in text
    )
    assert "beats what selecting the best" in text
    assert "most random signatures separate the phenotypes too" in text
    assert "cost: 40 signatures evaluated in 41.2 s" in text
    assert not any(line.startswith("Report:") for line in lines)  # the CLI prints that last


def test_a_p_above_005_that_cannot_reach_it_says_so():
    record = copy.deepcopy(RECORD)
    record |= {"selection_adjusted_p": 1 / 6, "selection_adjusted_p_min": 1 / 6}
    record["null"]["n_permutations"] = 5
    text = "\n".join(verdict_lines(record))
    assert "-> it cannot be told from selection with 5 permutations" in text
    assert "its p is the smallest they allow (p <= 0.05 needs --n-permutations 19 or more)" in text


def test_a_p_above_005_above_its_floor_does_not_beat_selection():
    record = copy.deepcopy(RECORD) | {"selection_adjusted_p": 0.31}
    text = "\n".join(verdict_lines(record))
    assert "-> it does not beat what selecting the best of many random signatures gives" in text


def test_without_a_null_the_verdict_says_it_was_not_computed():
    record = copy.deepcopy(RECORD)
    record |= {
        "selection_adjusted_p": None,
        "selection_adjusted_p_min": None,
        "random_signature_baseline": None,
    }
    text = "\n".join(verdict_lines(record))
    assert "selection-adjusted p: not computed" in text
    assert "random-signature baseline: not computed" in text


def test_a_run_without_results_says_so():
    assert verdict_lines({"summary": {}, "top_signatures": []}) == [
        "Verdict:",
        "  no signature has a result",
    ]


def test_a_baseline_at_its_floor_with_few_permutations_is_not_called_chance():
    record = copy.deepcopy(RECORD)
    record["random_signature_baseline"] |= {"mean_auc_p": 1 / 6, "n_permutations": 5}
    text = "\n".join(verdict_lines(record))
    assert "beat permuted labels on every permutation, but 0.167 is the smallest p" in text
    assert "better than chance" not in text


def test_a_baseline_above_005_names_the_panel_it_tested_and_its_weakness():
    record = copy.deepcopy(RECORD)
    record["random_signature_baseline"] |= {"mean_auc_p": 1 / 3, "n_panel": 5}
    text = "\n".join(verdict_lines(record))
    assert "the null panel's 5 random signatures score no better on the real labels" in text
    assert "little power" in text
    record["random_signature_baseline"] |= {"n_panel": 300}
    assert "little power" not in "\n".join(verdict_lines(record))


def test_what_a_lower_p_costs_follows_from_the_run_s_rate():
    # 40 signatures and 40 permutations of 5 null signatures each, 6 classifiers: 1,440
    # evaluations in 72 s, 20 a second; p <= 0.001 needs 999 permutations of 5.
    cost = lower_p_cost(
        0.001, per_permutation=5, n_classifiers=6, evaluated=(40 + 40 * 5) * 6, seconds=72.0
    )
    assert cost["permutations"] == 999 and cost["evaluations"] == 999 * 5 * 6
    assert cost["seconds"] == 999 * 5 * 6 / 20
    assert lower_p_cost(0.05, 5, 6, 1, 1.0)["permutations"] == 19  # 1 / (19 + 1) = 0.05
    record = copy.deepcopy(RECORD)
    record["null"]["lower_p_cost"] = cost
    text = "\n".join(verdict_lines(record))
    assert "to go lower: p <= 0.001 needs --n-permutations 999: 29,970 null evaluations" in text
    assert "about 1,498 s at this run's rate (set-up included)" in text


def test_a_p_floor_already_below_the_target_says_nothing_of_going_lower():
    record = copy.deepcopy(RECORD)
    record |= {"selection_adjusted_p_min": 1 / 2000}
    record["null"]["lower_p_cost"] = lower_p_cost(0.001, 5, 6, 100, 10.0)
    assert "to go lower" not in "\n".join(verdict_lines(record))
