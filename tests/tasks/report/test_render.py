import re

import pandas as pd

from tasks.report.render import Link, Plot, Section, render_html, render_markdown, table_view


def sections() -> list[Section]:
    hostile = pd.DataFrame({"name": ["<script>alert(1)</script>"], "p": [0.000123456]})
    return [
        Section("one", "First & <b>", intro="a < b", items={"key <k>": "value & more"}),
        Section("two", "Second", tables=(table_view("t2", "Table two", hostile, "two.tsv"),)),
        Section(
            "three",
            "Third",
            tables=(table_view("t3", "Files", pd.DataFrame({"f": [Link("x.tsv", "x.tsv")]})),),
            plots=(Plot("p", "A plot", b"\x89PNG"),),
        ),
    ]


def test_html_escapes_every_value():
    html = render_html("data <x>", sections())
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "First &amp; &lt;b&gt;" in html and "a &lt; b" in html
    assert "key &lt;k&gt;" in html and "value &amp; more" in html
    assert "<title>Signature search report: data &lt;x&gt;</title>" in html


def test_a_section_per_table_with_its_download_link():
    html = render_html("t", sections())
    for section, table in (("two", "t2"), ("three", "t3")):
        start = html.index(f'<section id="{section}">')
        end = html.index("</section>", start)
        assert f'<table class="sortable" id="table-{table}">' in html[start:end]
    assert '<a href="two.tsv" download>' in html and '<a href="x.tsv">x.tsv</a>' in html
    assert "0.000123" in html  # a column of tiny values: 3 significant digits
    assert 'src="data:image/png;base64,iVBORw=="' in html


def test_a_float_column_has_one_format():
    frame = pd.DataFrame({"auc": [1.0, 0.936, 0.98321], "p": [0.5, 1.23e-13, 0.04], "n": [1, 2, 3]})
    rows = table_view("t", "T", frame).rows
    assert [r[0] for r in rows] == ["1.0000", "0.9360", "0.9832"]
    assert [r[1] for r in rows] == ["0.5", "1.23e-13", "0.04"]
    assert [r[2] for r in rows] == ["1", "2", "3"]


def test_headers_break_at_underscores_without_a_character_that_gets_copied():
    frame = pd.DataFrame({"rank_adj_p": [0.5]})
    html = render_html("t", [Section("s", "S", tables=(table_view("t", "T", frame),))])
    assert "rank_<wbr>adj_<wbr>p" in html and "\u200b" not in html


def test_html_works_offline():
    html = render_html("t", sections())
    assert "http://" not in html and "https://" not in html
    assert "<script>" in html and 'addEventListener("click"' in html


def test_markdown_has_facts_as_bullets_and_tables():
    text = render_markdown("t", sections())
    assert "- **key <k>**: value & more" in text
    assert "| name | p |" in text and "All rows: two.tsv" in text
    assert "| [x.tsv](x.tsv) |" in text


def test_element_ids_are_unique():
    ids = re.findall(r' id="([^"]+)"', render_html("t", sections()))
    assert len(ids) == len(set(ids)) and {"two", "table-t2"} <= set(ids)
