"""The search's parameter model: defaults, limits and the checks across fields."""

import pytest
from pydantic import ValidationError

from tasks.parameters import SearchParameters


def test_the_null_takes_any_panel_and_candidates_but_not_negative_ones():
    assert SearchParameters(null_signatures=1, null_candidates=0).null_signatures == 1
    for field in ("null_signatures", "null_candidates"):
        with pytest.raises(ValidationError, match=field):
            SearchParameters(**{field: -1})


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
