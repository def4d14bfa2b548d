"""File access at the edges: a search's batches."""

import pandas as pd
import pytest

from tasks.io import read_batch, read_batches, save_batch


def records(signature: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "permutation": [-1],
            "signature": [signature],
            "classifier": ["svm"],
            "auc": [0.75],
            "accuracy": [0.5],
            "error": [float("nan")],
        }
    )


def test_batches_are_stored_whole_listed_in_order_and_read_back(tmp_path):
    search = tmp_path / "searches" / "k"
    assert read_batches(search) == []
    save_batch(search, 2, records(7), records(8).assign(permutation=3))
    save_batch(search, 1, records(1), None)
    assert read_batches(search) == [1, 2]
    main, permuted = read_batch(search, 2)
    pd.testing.assert_frame_equal(main, records(7), check_dtype=False)
    pd.testing.assert_frame_equal(permuted, records(8).assign(permutation=3), check_dtype=False)
    assert read_batch(search, 1)[1] is None
    assert sorted(p.name for p in search.iterdir()) == ["batch-0001", "batch-0002"]


def test_a_stored_batch_is_never_replaced(tmp_path):
    save_batch(tmp_path, 1, records(1), None)
    with pytest.raises(FileExistsError, match="batch 1 was stored by another run"):
        save_batch(tmp_path, 1, records(2), None)
    pd.testing.assert_frame_equal(read_batch(tmp_path, 1)[0], records(1), check_dtype=False)
    assert [p.name for p in tmp_path.iterdir()] == ["batch-0001"]
