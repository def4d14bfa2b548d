"""The interactive volcano: every point named, escaped, searchable; big inputs capped."""

import re

import numpy as np
import pandas as pd

from tasks.report import interactive


def genes(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    p = rng.uniform(1e-9, 1, n)
    return pd.DataFrame(
        {
            "probeset": [f"p{i}_at" for i in range(n)],
            "logFC": rng.normal(size=n),
            "P.Value": p,
            "adj.P.Val": np.minimum(p * n, 1),
        }
    )


def test_each_point_names_its_gene_escaped_and_searchable():
    table = genes(3)
    svg = interactive.volcano_svg(table, {"p1_at": "<b>CD33</b>"}, "AML", "A&B")
    assert svg.count("<circle") == 3
    assert 'data-name="&lt;b&gt;cd33&lt;/b&gt; (p1_at)"' in svg  # lowercased for the search
    assert "<title>&lt;b&gt;CD33&lt;/b&gt; (p1_at): logFC" in svg and "<b>" not in svg
    assert "A&amp;B" in svg and "http" not in svg  # no namespace or link to fetch


def test_a_big_table_shows_its_most_significant_points_and_says_so():
    table = genes(interactive.MAX_POINTS + 10)
    svg = interactive.volcano_svg(table, {}, "a", "b")
    assert svg.count("<circle") == interactive.MAX_POINTS
    assert f"{interactive.MAX_POINTS} of {interactive.MAX_POINTS + 10} probesets" in svg
    weakest = table.nlargest(10, "P.Value")["probeset"]
    assert not any(re.search(f'"{p} ?\\(|"{p}"', svg) for p in weakest)
