"""File access at the edges: reading inputs, prepared datasets and records; writing outputs.

Three input layouts are detected from content: the original example's layout
(`phenotype` column, samples as rows), a GEO series matrix, and an expression matrix
(probesets as rows) with a sample sheet. Every problem names the file; nothing is
written unless everything passed: writes are atomic.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.science.annotation import annotation_table
from tasks.science.dataset import (
    DatasetError,
    PreparedDataset,
    PreparedSummary,
    PrepareOptions,
    RawDataset,
    check_probesets,
    check_unique,
    dataset_text,
)
from tasks.science.design import ExpressionModel

FLOAT_FORMAT = "%.6g"
# Exact round trip of written floats: pandas 3 parses so by default and deprecates the option;
# pandas 2 needs it.
EXACT_FLOATS: dict[str, Any] = (
    {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
)


def save_tsv(frame: pd.DataFrame, path: Path, float_format: str | None = FLOAT_FORMAT) -> None:
    """Write a table atomically, floats in one format (None: every digit); equal in, equal out."""
    text = frame.to_csv(sep="\t", index=False, float_format=float_format, lineterminator="\n")
    write_atomic(Path(path), text.encode("utf-8"))


def save_json(data: dict, path: Path) -> None:
    """Write JSON atomically with sorted keys."""
    write_atomic(Path(path), json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def append_jsonl(record: dict, path: Path) -> None:
    """Append one JSON line and sync it: a record that survives the process being killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (none if it is missing); a torn last line is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the process was killed mid-line
            continue
    return records


INCOMPLETE = "INCOMPLETE.txt"


def save_incomplete_marker(work_dir: Path, reason: str) -> None:
    """Say in a run's unfinished folder why it is not complete."""
    text = (
        "This folder is INCOMPLETE: the run did not finish, so its files are partial.\n"
        f"Why: {reason}\n"
        "Run the same search again (same parameters) to resume it; its results are kept.\n"
    )
    write_atomic(work_dir / INCOMPLETE, text.encode("utf-8"))


def publish_run_folder(work_dir: Path, run_dir: Path) -> None:
    """Move a complete run's folder to its final name at once (a finished report replaced)."""
    (work_dir / INCOMPLETE).unlink(missing_ok=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    os.replace(work_dir, run_dir)


def reopen_run_folder(work_dir: Path, run_dir: Path) -> None:
    """A resumed run works in its folder again: a published one goes back to unfinished."""
    if run_dir.is_dir() and not work_dir.exists():
        os.replace(run_dir, work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)


log = logging.getLogger(__name__)


def read_text(path: Path) -> str:
    """Read a text file, transparently gunzipping; a missing or empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: corrupt gzip data ({exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise DatasetError(f"{path}: file is empty")
    return text


def sniff_delimiter(line: str) -> str:
    """Tab when the header line has one, else comma (TSV or CSV)."""
    return "\t" if "\t" in line else ","


def detect_layout(text: str) -> str:
    """Tell the input layout from its content: 'tutorial', 'geo' or 'matrix'."""
    first = next(line for line in text.splitlines() if line.strip())
    if first.startswith(("!", "^")):
        return "geo"
    head = first.split(sniff_delimiter(first))[0].strip().strip('"').lower()
    return "tutorial" if head == "phenotype" else "matrix"


def check_rectangular(text: str, path: Path, delimiter: str, first_line: int = 1) -> None:
    """Every row has the header's number of fields, and there is at least one row."""
    rows = (row for row in csv.reader(io.StringIO(text), delimiter=delimiter))
    width, n_rows = None, 0
    for number, row in enumerate(rows, start=first_line):
        if not row or not any(cell.strip() for cell in row):
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise DatasetError(f"{path}: line {number} has {len(row)} fields, header has {width}")
        else:
            n_rows += 1
    if n_rows == 0:
        raise DatasetError(f"{path}: header but no data rows")


def _read_table(
    text: str, path: Path, delimiter: str, first_line: int = 1
) -> tuple[list[str], pd.DataFrame]:
    """Read a delimited table as strings, keeping the header exactly (no mangling)."""
    check_rectangular(text, path, delimiter, first_line)
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=delimiter))
    header = [h.strip() for h in header]
    body = pd.read_csv(
        io.StringIO(text),
        sep=delimiter,
        header=None,
        skiprows=1,
        dtype=str,
        skip_blank_lines=True,
    )
    if body.shape[1] != len(header):
        raise DatasetError(f"{path}: {body.shape[1]} columns in rows but {len(header)} in header")
    return header, body


def read_tutorial_layout(text: str, path: Path) -> RawDataset:
    """Read the original example's layout: `phenotype`, then one column per probeset."""
    header, body = _read_table(text, path, "\t")
    probesets = header[1:]
    if not probesets:
        raise DatasetError(f"{path}: no probeset columns after 'phenotype'")
    check_probesets(probesets, path)
    cells = body.iloc[:, 1:].set_axis(probesets, axis=1)
    labels = body.iloc[:, 0].fillna("").str.strip().tolist()
    sample_ids = [f"sample_{i + 1}" for i in range(len(labels))]
    return RawDataset(path, "tutorial", sample_ids, labels, cells.set_axis(sample_ids))


def _geo_fields(lines: list[str], key: str) -> list[list[str]]:
    rows = [line for line in lines if line.split("\t", 1)[0] == key]
    return [[v.strip().strip('"') for v in r.split("\t")[1:]] for r in rows]


def _geo_field_choices(meta: list[str]) -> str:
    """The `!Sample_characteristics_ch1` fields a file has, and how to choose one."""
    fields = []
    for row in _geo_fields(meta, "!Sample_characteristics_ch1"):
        names = {v.split(":", 1)[0].strip() for v in row if ":" in v}
        if len(names) == 1 and all(":" in v for v in row):
            name = names.pop()
            values = sorted({v.split(":", 1)[1].strip() for v in row})
            shown = ", ".join(values[:4]) + (", ..." if len(values) > 4 else "")
            count = f"{len(values)} value{'' if len(values) == 1 else 's'}"
            fields.append(f"'{name}' ({count}: {shown})")
    if not fields:
        return "the file has no !Sample_characteristics_ch1 fields to choose from"
    return "choose one with --phenotype-field; characteristics fields: " + "; ".join(fields)


def read_geo_series_matrix(text: str, path: Path, phenotype_field: str | None) -> RawDataset:
    """Read a GEO series matrix: `!Sample_` metadata and the table between its markers."""
    lines = text.splitlines()
    try:
        begin = lines.index("!series_matrix_table_begin")
        end = lines.index("!series_matrix_table_end")
    except ValueError:
        raise DatasetError(f"{path}: no !series_matrix_table_begin/_end markers") from None
    meta = lines[:begin]
    accessions = (_geo_fields(meta, "!Sample_geo_accession") or [[]])[0]
    if not phenotype_field or phenotype_field.lower() in ("source_name", "source_name_ch1"):
        labels = (_geo_fields(meta, "!Sample_source_name_ch1") or [[]])[0]
        where = "!Sample_source_name_ch1"
    else:
        labels, where = [], f"!Sample_characteristics_ch1 '{phenotype_field}'"
        prefix = phenotype_field.lower() + ":"
        for row in _geo_fields(meta, "!Sample_characteristics_ch1"):
            if row and all(v.lower().startswith(prefix) for v in row):
                labels = [v.split(":", 1)[1].strip() for v in row]
    if not labels:
        raise DatasetError(f"{path}: no phenotype field {where}; {_geo_field_choices(meta)}")
    if not phenotype_field and len(set(labels)) < 2:
        raise DatasetError(
            f"{path}: {where} gives one label {sorted(set(labels))} for every sample; "
            + _geo_field_choices(meta)
        )
    header, body = _read_table("\n".join(lines[begin + 1 : end]), path, "\t", begin + 2)
    header = [h.strip('"') for h in header]
    samples = header[1:]
    if accessions and samples != accessions:
        raise DatasetError(f"{path}: table columns do not match !Sample_geo_accession")
    if len(labels) != len(samples):
        raise DatasetError(f"{path}: {len(labels)} phenotype values for {len(samples)} samples")
    probesets = body.iloc[:, 0].fillna("").str.strip().str.strip('"').tolist()
    check_probesets(probesets, path)
    check_unique(samples, "sample", path)
    cells = body.iloc[:, 1:].T.set_axis(probesets, axis=1).set_axis(samples)
    attributes = _geo_characteristics(meta, samples)
    return RawDataset(path, "geo", samples, labels, cells, attributes, path)


def _geo_characteristics(meta: list[str], samples: list[str]) -> pd.DataFrame:
    """Every `name: value` of the samples' characteristics, a column per name ('' if absent)."""
    table: dict[str, list[str]] = {}
    for row in _geo_fields(meta, "!Sample_characteristics_ch1"):
        for i, cell in enumerate(row[: len(samples)]):
            name, sep, value = cell.partition(":")
            if sep:
                table.setdefault(name.strip(), [""] * len(samples))[i] = value.strip()
    source = (_geo_fields(meta, "!Sample_source_name_ch1") or [[]])[0]
    if len(source) == len(samples):
        table.setdefault("source_name", source)
    return pd.DataFrame(table, index=samples, dtype=str)


def read_matrix_with_sheet(
    text: str, path: Path, sheet_path: Path | None, phenotype_field: str | None
) -> RawDataset:
    """Read probesets x samples (CSV/TSV) and take phenotypes from a sample sheet."""
    if sheet_path is None:
        raise DatasetError(
            f"{path}: looks like an expression matrix (probesets as rows, no 'phenotype' "
            "column); give its sample sheet with --sample-sheet FILE (first column the sample "
            "ids of the matrix's header, a 'phenotype' column or one named by --phenotype-field)"
        )
    header, body = _read_table(text, path, sniff_delimiter(text.split("\n", 1)[0]))
    samples = header[1:]
    probesets = body.iloc[:, 0].fillna("").str.strip().tolist()
    check_probesets(probesets, path)
    check_unique(samples, "sample", path)
    sheet_text = read_text(sheet_path)
    sheet_header, sheet = _read_table(
        sheet_text, sheet_path, sniff_delimiter(sheet_text.split("\n", 1)[0])
    )
    column = phenotype_field or ("phenotype" if "phenotype" in sheet_header else None)
    if column is None and len(sheet_header) >= 2:
        column = sheet_header[1]
    if column not in sheet_header[1:]:
        raise DatasetError(f"{sheet_path}: no phenotype column '{column}' in {sheet_header}")
    ids = sheet.iloc[:, 0].fillna("").str.strip().tolist()
    check_unique(ids, "sample", sheet_path)
    phenotype = dict(zip(ids, sheet.iloc[:, sheet_header.index(column)].fillna("").str.strip()))
    unlabelled = [s for s in samples if s not in phenotype]
    if unlabelled:
        raise DatasetError(f"{sheet_path}: no phenotype for samples {', '.join(unlabelled[:10])}")
    cells = body.iloc[:, 1:].T.set_axis(probesets, axis=1).set_axis(samples)
    attributes = sheet.set_axis(sheet_header, axis=1).set_index(sheet_header[0])
    attributes.index = attributes.index.fillna("").str.strip()
    labels = [phenotype[s] for s in samples]
    return RawDataset(path, "matrix", samples, labels, cells, attributes.loc[samples], sheet_path)


def read_input(path: Path, options: PrepareOptions) -> RawDataset:
    """Read any supported input layout, detected from the file's content."""
    path = Path(path)
    text = read_text(path)
    layout = detect_layout(text)
    if layout == "tutorial":
        return read_tutorial_layout(text, path)
    if layout == "geo":
        return read_geo_series_matrix(text, path, options.phenotype_field)
    return read_matrix_with_sheet(text, path, options.sample_sheet, options.phenotype_field)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so readers see the old or the new content, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates 0600; results are for colleagues too: the mode open() would give.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def save_prepared(prepared: PreparedDataset, data_dir: Path, name: str) -> PreparedSummary:
    """Write `<name>.tsv`, its `.sha256` and model sidecars; return the preparation summary."""
    data = dataset_text(prepared).encode("utf-8")
    digest = sha256_hex(data)
    target = Path(data_dir) / f"{name}.tsv"
    # The sidecars first: a dataset file present means everything it needs is there.
    model = prepared.model.to_dict()
    write_atomic(model_path(target), json.dumps(model, indent=1).encode())
    if prepared.de_input is not None:
        values = prepared.de_input.to_numpy().tolist()
        rows = [
            "\t".join([sample, *map(repr, v)]) for sample, v in zip(prepared.sample_ids, values)
        ]
        header = "\t".join(["sample", *prepared.de_input.columns])
        write_atomic(de_input_path(target), ("\n".join([header, *rows]) + "\n").encode())
    else:
        de_input_path(target).unlink(missing_ok=True)
    write_atomic(target, data)
    write_atomic(target.with_suffix(".tsv.sha256"), f"{digest}\n".encode())
    counts = Counter(prepared.labels)
    return PreparedSummary(
        name=name,
        path=target,
        sha256=digest,
        layout=prepared.layout,
        case=prepared.case,
        control=prepared.control,
        samples={
            prepared.case: counts[prepared.case],
            prepared.control: counts[prepared.control],
        },
        sample_ids=prepared.sample_ids,
        n_probesets=int(prepared.matrix.shape[1]),
        decisions=prepared.decisions,
        warnings=prepared.warnings,
        model=model,
    )


def model_path(dataset_path: Path) -> Path:
    """`<name>.model.json` beside a prepared dataset: its design and what the features are."""
    return Path(dataset_path).with_suffix(".model.json")


def de_input_path(dataset_path: Path) -> Path:
    """`<name>.de-input.tsv`: the counts or unadjusted values the statistics start from."""
    return Path(dataset_path).with_suffix(".de-input.tsv")


def read_model(dataset_path: Path) -> tuple[ExpressionModel, pd.DataFrame | None]:
    """A prepared dataset's model and, when it has one, its differential-expression input."""
    path = model_path(dataset_path)
    if not path.exists():  # prepared before designs existed: `~ group` on the features
        return ExpressionModel(), None
    model = ExpressionModel.from_dict(json.loads(path.read_text(encoding="utf-8")))
    source = de_input_path(dataset_path)
    if not source.exists():
        return model, None
    frame = pd.read_csv(source, sep="\t", index_col="sample", **EXACT_FLOATS)
    return model, frame.astype(np.float64).reset_index(drop=True)


def read_probesets(path: Path) -> list[str]:
    """A prepared dataset's probesets, from its header line."""
    with open(path, encoding="utf-8") as handle:
        return handle.readline().rstrip("\n").split("\t")[1:]


def read_prepared(path: Path) -> tuple[list[str], pd.DataFrame]:
    """Load a prepared dataset (original layout) as labels and a samples x probesets frame."""
    frame = pd.read_csv(path, sep="\t", **EXACT_FLOATS)
    labels = frame.pop("phenotype").astype(str).tolist()
    return labels, frame.astype(np.float64)


def read_screen_input(
    path: Path, case: str, rows: Sequence[int] | None
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The searched samples' values, the probesets and their 0/1 case labels (the null's screen)."""
    labels, frame = read_prepared(path)
    chosen = np.arange(len(labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    cases = (np.asarray(labels)[chosen] == case).astype(np.int64)
    return frame.to_numpy()[chosen], list(frame.columns), cases


def save_text(text: str, path: Path) -> None:
    """Write UTF-8 text atomically."""
    write_atomic(path, text.encode("utf-8"))


def read_records(path: Path) -> pd.DataFrame:
    """Load a records TSV written by the flow."""
    return pd.read_csv(
        path,
        sep="\t",
        keep_default_na=False,
        na_values=[""],
        dtype={"classifier": str, "error": str},
    )


def read_annotation(path: Path | None) -> pd.DataFrame | None:
    """Probeset -> `symbol` and `description`, when an annotation file is given.

    Takes the bundled TSV or a platform table as GEO serves it: a GPL's full table (its
    leading `#` lines skipped) or a SOFT file's `!platform_table_begin` section, gzipped or not.
    """
    if path is None or not Path(path).is_file():
        return None
    lines = read_text(Path(path)).splitlines()
    if "!platform_table_begin" in lines:
        begin = lines.index("!platform_table_begin") + 1
        end = lines.index("!platform_table_end") if "!platform_table_end" in lines else None
        lines = lines[begin:end]
    body = "\n".join(line for line in lines if not line.startswith(("#", "!", "^")))
    if not body.strip():
        raise DatasetError(f"{path}: the annotation has no table")
    raw = pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False)
    try:
        return annotation_table(raw, str(path))
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def batch_dir(search_dir: Path, batch: int) -> Path:
    """Where batch `batch` of a search keeps its records."""
    return Path(search_dir) / f"batch-{batch:04d}"


def read_batches(search_dir: Path) -> list[int]:
    """The numbers of a search's stored batches, ascending."""
    if not Path(search_dir).is_dir():
        return []
    names = (p.name for p in Path(search_dir).iterdir() if p.is_dir())
    return sorted(int(n.removeprefix("batch-")) for n in names if n.startswith("batch-"))


def save_batch(
    search_dir: Path, batch: int, records: pd.DataFrame, permutation_records: pd.DataFrame | None
) -> Path:
    """Store a completed batch's records, all or nothing; never replace a stored batch."""
    Path(search_dir).mkdir(parents=True, exist_ok=True)
    target = batch_dir(search_dir, batch)
    staging = Path(tempfile.mkdtemp(dir=search_dir, prefix=f".{target.name}."))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide the batch from colleagues
        save_tsv(records, staging / "records.tsv")
        if permutation_records is not None:
            save_tsv(permutation_records, staging / "permutation_records.tsv")
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if target.exists():
            raise FileExistsError(f"{target}: batch {batch} was stored by another run") from exc
        raise
    return target


def read_batch(search_dir: Path, batch: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A stored batch's records and permutation records (None if it had no null)."""
    where = batch_dir(search_dir, batch)
    permuted = where / "permutation_records.tsv"
    return read_records(where / "records.tsv"), (
        read_records(permuted) if permuted.is_file() else None
    )
