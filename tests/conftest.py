"""Shared test paths (kept free of heavy imports: the Pyodide-versions run uses this too)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLUB = ROOT / "input" / "golub_all_aml.tsv"


@pytest.fixture(scope="session")
def golub_text() -> str:
    """The bundled dataset's text."""
    return GOLUB.read_text()
