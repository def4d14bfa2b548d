"""What a site sends: columns of summaries, never a sample."""

import json

import numpy as np
import pandas as pd
import pytest

from tasks.federation.exchange import (
    SampleDataError,
    check_aggregate_only,
    gene_columns,
    null_columns,
    plan_sha256,
    signature_columns,
)
from tasks.science.plan import Signature

RECORDS = pd.DataFrame(
    {
        "permutation": [-1, -1, -1, -1, 7, 7, 7, 7],
        "signature": [0, 0, 1, 1, 0, 0, 1, 1],
        "classifier": ["logistic", "svm"] * 4,
        "auc": [0.9, 0.7, 0.6, np.nan, 0.5, 0.3, 0.4, 0.6],
        "accuracy": [0.8, 0.6, 0.5, np.nan, 0.5, 0.5, 0.5, 0.5],
    }
)


def test_signature_columns_are_the_real_labels_records_per_classifier():
    columns = signature_columns(RECORDS, [0, 1], ["logistic", "svm"])
    assert columns == {
        "signature": [0, 1],
        "auc_logistic": [0.9, 0.6],
        "accuracy_logistic": [0.8, 0.5],
        "auc_svm": [0.7, None],
        "accuracy_svm": [0.6, None],
    }
    json.dumps(columns, allow_nan=False)  # valid JSON: NaN went to null


def test_null_columns_average_classifiers_per_permutation():
    permuted = RECORDS[RECORDS["permutation"] == 7]
    assert null_columns(permuted, [0, 1]) == {"permutation": [7], "mean_auc": [[0.4, 0.5]]}
    assert null_columns(permuted.iloc[:0], [0, 1]) == {"permutation": [], "mean_auc": []}


def test_gene_columns_carry_the_moderated_standard_error():
    de = pd.DataFrame(
        {"logFC": [1.0], "SE": [0.5], "t": [2.0], "df.total": [9.0], "AveExpr": [3.0]},
        index=pd.Index(["p1"], name="probeset"),
    )
    assert gene_columns(de) == {
        "probeset": ["p1"],
        "logFC": [1.0],
        "SE": [0.5],
        "t": [2.0],
        "df.total": [9.0],
        "AveExpr": [3.0],
    }


@pytest.mark.parametrize(
    "payload",
    [
        {"kind": "x", "note": "patient-03"},
        {"kind": "x", "tables": {"patient-03": [1.0]}},
        {"kind": "x", "rows": [["a", ["patient-03"]]]},
    ],
)
def test_a_payload_naming_a_sample_is_refused(payload):
    with pytest.raises(SampleDataError, match="names 1 samples"):
        check_aggregate_only(payload, ["patient-03", "patient-04"])


def test_a_payload_of_summaries_passes():
    check_aggregate_only({"kind": "x", "probesets": ["p1"], "n": 3}, ["patient-03"])


def test_the_plan_digest_changes_with_any_probeset():
    plan = [Signature(0, ("a", "b")), Signature(1, ("c",))]
    other = [Signature(0, ("a", "b")), Signature(1, ("d",))]
    assert plan_sha256(plan) == plan_sha256(list(plan))
    assert plan_sha256(plan) != plan_sha256(other)
