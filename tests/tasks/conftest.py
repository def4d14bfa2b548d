"""What tests of the plain functions share."""

import pytest

from tasks.science.dataset import PreparedSummary

from ..conftest import GOLUB


@pytest.fixture(scope="session")
def golub_summary() -> PreparedSummary:
    """The bundled dataset as preparation would describe it."""
    return PreparedSummary(
        name="golub",
        path=GOLUB,
        sha256="0" * 64,
        layout="tutorial",
        case="AML",
        control="ALL",
        samples={"ALL": 27, "AML": 11},
        sample_ids=[f"s{i}" for i in range(38)],
        n_probesets=3051,
        decisions=["input layout: seed", "11 'AML' and 27 'ALL'"],
        warnings=[],
    )
