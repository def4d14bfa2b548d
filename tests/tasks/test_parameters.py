"""The search's parameter model: defaults, limits and the checks across fields."""

import pytest
from pydantic import ValidationError

from tasks.parameters import SearchParameters


def test_a_null_panel_of_one_signature_is_refused():
    with pytest.raises(ValidationError, match="at least 2"):
        SearchParameters(null_signatures=1)
    assert SearchParameters(null_signatures=0).null_signatures == 0


@pytest.mark.parametrize(
    ("n", "per_slice", "ok"),
    [(500_000, 1, True), (1_000_000, 1, False), (1_000_000, 2, True), (10_000_000, 20, True)],
)
def test_a_run_of_more_slices_than_can_be_registered_is_refused(n, per_slice, ok):
    if ok:
        SearchParameters(n_signatures=n, signatures_per_slice=per_slice)
        return
    with pytest.raises(ValidationError, match="1,000,000 slices; a run takes at most 500,000"):
        SearchParameters(n_signatures=n, signatures_per_slice=per_slice)
