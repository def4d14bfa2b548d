"""File access at the edges: a search's batches."""

import os
import stat
import subprocess
import sys

import pandas as pd
import pytest

from tasks.io import read_batch, read_batches, save_batch

from ..conftest import ROOT


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
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((search / "batch-0001").stat().st_mode) == 0o777 & ~umask


def test_a_stored_batch_is_never_replaced(tmp_path):
    save_batch(tmp_path, 1, records(1), None)
    with pytest.raises(FileExistsError, match="batch 1 was stored by another run"):
        save_batch(tmp_path, 1, records(2), None)
    pd.testing.assert_frame_equal(read_batch(tmp_path, 1)[0], records(1), check_dtype=False)
    assert [p.name for p in tmp_path.iterdir()] == ["batch-0001"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    script = (
        "import os, sys; from pathlib import Path; from tasks.io import write_atomic; "
        f"os.umask({umask}); write_atomic(Path(sys.argv[1]), b'x')"
    )
    target = tmp_path / "out" / "file.tsv"
    subprocess.run([sys.executable, "-c", script, str(target)], check=True, cwd=ROOT)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_bytes() == b"x"
