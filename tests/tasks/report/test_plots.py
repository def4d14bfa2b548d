import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from tasks.io import read_annotation, read_prepared
from tasks.report import plots
from tasks.report.analysis import analyse


@pytest.fixture(scope="module")
def analysis(report_inputs):
    labels, matrix = read_prepared(report_inputs.dataset_path)
    return analyse(report_inputs, labels, matrix, read_annotation(report_inputs.annotation_path))


def test_plots_are_figures_and_leave_pyplot_alone(analysis, report_inputs):
    backend, open_before = matplotlib.get_backend(), plt.get_fignums()
    drawn = plots.figures(analysis, report_inputs.classifiers)
    assert list(drawn) == [
        "roc",
        "auc_by_classifier",
        "auc_by_length",
        "volcano",
        "ma",
        "heatmap",
        "pca",
        "sample_spread",
        "random_baseline",
    ]
    assert all(isinstance(fig, Figure) for fig in drawn.values())
    pngs = {name: plots.png_bytes(fig) for name, fig in drawn.items()}
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())
    assert plt.get_fignums() == open_before and matplotlib.get_backend() == backend
    assert (
        plots.png_bytes(plots.figures(analysis, ["logistic", "svm"])["volcano"]) == pngs["volcano"]
    )


def test_heatmap_bar_spans_the_heatmap_not_the_colour_bar(analysis):
    fig = plots.plot_heatmap(analysis.heatmap)
    fig.canvas.draw()
    bar, heat = fig.axes[0], fig.axes[1]
    colour = heat.images[0].colorbar.ax
    tol = 1e-6
    assert abs(bar.get_position().x0 - heat.get_position().x0) < tol
    assert abs(bar.get_position().x1 - heat.get_position().x1) < tol
    assert bar.get_position().x1 < colour.get_position().x0
    assert bar.get_xlim() == heat.get_xlim()
    texts = [t.get_text() for t in bar.texts]
    assert texts == ["AML (11)", "ALL (27)"]  # the control label, not "other"


def test_volcano_legend_has_only_layers_with_points(analysis):
    genes = analysis.genes.assign(enrichment_adj_p=1.0)
    fig = plots.plot_volcano(genes, analysis.symbols, "AML", "ALL")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not any(label.startswith("enriched") for label in labels)
    assert fig.axes[0].get_title() == "Differential expression: AML vs ALL"


def test_volcano_labels_do_not_overlap(analysis):
    fig = plots.plot_volcano(analysis.genes, analysis.symbols, "AML", "ALL")
    ax = fig.axes[0]
    labels = ax.texts
    assert len(labels) == plots.VOLCANO_LABELS
    for side in (1, -1):  # a column of labels each side: text heights at least a line apart
        heights = sorted(
            ax.transData.transform(t.xyann)[1] for t in labels if np.sign(t.xyann[0]) == side
        )
        line = max(t.get_fontsize() for t in labels) * fig.dpi / 72
        assert all(b - a >= line for a, b in zip(heights, heights[1:]))


def test_random_baseline_plot_shows_both_distributions_the_top_and_the_bar(analysis):
    fig = plots.plot_random_baseline(analysis.signatures, analysis.null, 5)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0].startswith("permuted labels (15 evaluations)")
    assert labels[1].startswith("real labels (40 random signatures)")
    assert labels[2] == "top signatures" and labels[-1] == "chance (AUC 0.5)"
    red = [ln for ln in fig.axes[0].lines if ln.get_color() == "#d62728"]
    assert len(red) == min(5, len(analysis.null.top))


def test_spread_labels_keeps_a_gap():
    assert plots.spread_labels([10.0, 9.9, 9.8, 5.0], 1.0) == [10.0, 9.0, 8.0, 5.0]


def test_pca_and_sample_spread_show_every_sample_in_its_colour(analysis):
    view = analysis.samples
    pca = plots.plot_pca(view, "AML", "ALL")
    points = [c.get_offsets() for c in pca.axes[0].collections]
    assert [len(p) for p in points] == [11, 27]  # AML (case) then ALL
    assert "PC1 (" in pca.axes[0].get_xlabel()
    spread = plots.plot_sample_spread(view, "AML", "ALL")
    assert len(spread.axes[0].patches) == 38


def test_the_ma_plot_marks_the_bh_significant_probesets(analysis):
    fig = plots.plot_ma(analysis.genes, "AML", "ALL")
    counts = [len(c.get_offsets()) for c in fig.axes[0].collections]
    significant = int((analysis.genes["adj.P.Val"] < 0.05).sum())
    assert counts == [len(analysis.genes) - significant, significant]


def test_roc_curves_are_labelled_by_gene_symbol_with_their_area(analysis):
    fig = plots.plot_roc(analysis.roc, analysis.symbols)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == len(analysis.roc) + 1 and labels[-1] == "chance (AUC 0.5)"
    for label, curve in zip(labels, analysis.roc):
        genes = [analysis.symbols.get(p, p) for p in curve.probesets]
        assert label == (
            f"#{curve.rank} (signature {curve.signature}): {', '.join(genes)} - AUC {curve.auc:.3f}"
        )
    assert any(p in analysis.symbols for c in analysis.roc for p in c.probesets)  # names shown
    assert "mean of 2 classifiers" in fig.axes[0].get_title()
