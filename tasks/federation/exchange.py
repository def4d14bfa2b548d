"""What may cross from a site to the coordinator: names, counts and summaries, never a sample.

Every payload is plain JSON of columns (lists), built by these functions from a site's
tables; `check_aggregate_only` refuses one that names a sample.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from tasks.science.plan import Signature

GENE_COLUMNS = ("logFC", "SE", "t", "df.total", "AveExpr")
UNIVERSE_KIND = "federation-universe"
SUMMARY_KIND = "federation-summary"


class SampleDataError(RuntimeError):
    """A payload about to leave a site names one of its samples."""


def plan_sha256(signatures: Sequence[Signature]) -> str:
    """The plan's fingerprint: every signature's id and probesets, in order."""
    text = json.dumps([[s.id, list(s.probesets)] for s in signatures], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _floats(values: Iterable) -> list[float | None]:
    """JSON numbers; NaN (not valid JSON) as null."""
    return [None if math.isnan(v) else v for v in map(float, values)]


def universe_payload(site: str, probesets: list[str], counts: dict[str, int]) -> dict:
    """A site's answer to 'what can you search': its prepared probesets and group sizes."""
    return {"kind": UNIVERSE_KIND, "site": site, "probesets": probesets, "samples": counts}


def signature_columns(
    records: pd.DataFrame, signature_ids: Sequence[int], classifiers: Sequence[str]
) -> dict:
    """Each planned signature's AUC and accuracy per classifier, on the real labels."""
    real = records[records["permutation"] == -1]
    ids = [int(i) for i in signature_ids]
    columns: dict = {"signature": ids}
    for name in classifiers:
        rows = real[real["classifier"] == name].set_index("signature")
        for measure in ("auc", "accuracy"):
            values = rows[measure].reindex(ids)
            columns[f"{measure}_{name}"] = _floats(values)
    return columns


def null_columns(perm_records: pd.DataFrame, signature_ids: Sequence[int]) -> dict:
    """Per permutation (by seed), each planned signature's AUC averaged over classifiers."""
    if perm_records.empty:
        return {"permutation": [], "mean_auc": []}
    means = perm_records.groupby(["permutation", "signature"])["auc"].mean().unstack()
    means = means.reindex(columns=list(signature_ids))
    return {
        "permutation": [int(p) for p in means.index],
        "mean_auc": [_floats(row) for row in means.to_numpy()],
    }


def gene_columns(de: pd.DataFrame) -> dict:
    """Per-probeset summary statistics: logFC, its moderated SE, t and df, mean expression."""
    columns: dict = {"probeset": [str(p) for p in de.index]}
    for name in GENE_COLUMNS:
        columns[name] = _floats(de[name].to_numpy())
    return columns


def summary_payload(
    site: str,
    counts: dict[str, int],
    plan: str,
    classifiers: Sequence[str],
    tables: dict[str, dict],
    run: dict,
) -> dict:
    """Everything a site returns from its search (`tables`: signatures, genes, null)."""
    return {
        "kind": SUMMARY_KIND,
        "site": site,
        "samples": counts,
        "plan_sha256": plan,
        "classifiers": list(classifiers),
        **tables,
        "run": run,  # the site's run id, failed slice numbers, where its report is (there)
    }


def _strings(value: object) -> Iterable[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def check_aggregate_only(payload: dict, sample_ids: Iterable[str]) -> None:
    """Refuse a payload that names a sample (its ids must never leave the site)."""
    samples = {str(s) for s in sample_ids}
    named = sorted({text for text in _strings(payload) if text in samples})
    if named:
        raise SampleDataError(
            f"refused to send {payload.get('kind')}: it names {len(named)} samples "
            f"(e.g. {named[0]!r})"
        )


def payload_frame(columns: dict, index: str) -> pd.DataFrame:
    """A payload's table (a dict of equal-length lists) as a frame indexed by `index`."""
    frame = pd.DataFrame(columns)
    return frame.set_index(index).astype(np.float64)
