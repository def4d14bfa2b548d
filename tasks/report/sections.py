"""The report's sections, in order: add a section by adding a function to SECTIONS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.report import verdict
from tasks.report.analysis import (
    Analysis,
    GenePower,
    NullEvidence,
    top_gene_rows,
    top_signature_rows,
)
from tasks.report.interactive import volcano_svg
from tasks.report.render import Link, Plot, Section, table_view
from tasks.report.summary import RunSummary

FILE_CONTENTS = {
    "signatures.tsv": "every planned signature: probesets, AUC and accuracy per classifier, "
    "mean AUC, rank, status",
    "genes.tsv": "every probeset: moderated statistics, signature counts, enrichment, "
    "rank test of the signatures containing it, annotation",
    "null.tsv": "each label permutation: panel size, mean, SD and best mean AUC",
    "validation.tsv": "top signatures: discovery (cross-validated) and held-out AUCs",
    "records.tsv": "every (signature, classifier) result of this run's main job as received",
    "permutation_records.tsv": "every result on permuted labels (permutation = its seed)",
    "validation_records.tsv": "every (signature, classifier) result on the held-out samples",
    "predictions.tsv": "the top signatures' out-of-fold score of every sample, per classifier "
    "(the ROC curves' data; sample-level: keep it where the data may be)",
    "report.md": "this report as Markdown (plots as files)",
    "report.json": "the report's values: top signatures, selection-adjusted p, baseline, null",
    "run.json": "the run's record: dataset sha256, package versions, job ids, rounds, times",
    "parameters.json": "every parameter of the run",
    "history.jsonl": "every round of every flow attempt, a line each",
}
RUN_FILES = ("report.md", "report.json", "run.json", "parameters.json", "history.jsonl")
PLOT_CAPTIONS = {
    "roc": "ROC curves of the top signatures from their cross-validated predictions: every "
    "sample's out-of-fold score (the search's folds and seeds), pooled over the folds into one "
    "curve per classifier, then averaged over the classifiers at each false positive rate. The "
    "area under a curve is then the mean of its classifiers' pooled AUCs: the signature's mean "
    "AUC in the table above (to 1e-6, the records' rounding). Scores in predictions.tsv.",
    "auc_by_classifier": "Cross-validated AUC of every signature, per classifier.",
    "auc_by_length": "Mean AUC across classifiers by signature length.",
    "heatmap": "Row z-scores of the top signatures' probesets; columns are samples sorted by "
    "phenotype (bar above), rows grouped by signature.",
    "volcano": "Moderated statistics of every probeset; the strongest are labelled.",
    "ma": "Log fold change against mean expression of every probeset; red: BH-adjusted p < 0.05.",
    "pca": "The samples on their first two principal components (PCA of the 500 most variable "
    "probesets, centred, not scaled), coloured by phenotype: a batch or an outlier shows here.",
    "sample_spread": "Each sample's values: a sample whose box sits apart was measured or "
    "normalised differently.",
    "random_baseline": "Mean AUC of every random signature on the real labels (blue) and of the "
    "null panel on permuted labels (grey); red lines are the top signatures, the dashed line "
    "the mean AUC a best signature needs to beat selection at p = 0.05.",
}


@dataclass(frozen=True)
class Content:
    """What the sections are made from."""

    analysis: Analysis
    summary: RunSummary
    classifiers: Sequence[str]
    top_fraction: float
    pngs: dict[str, bytes]  # plot file stem -> PNG
    files: list[str]  # TSV files beside the report, by name
    batches: tuple[int, ...] = (1,)  # the search's batches the report covers


def _plots(content: Content, *names: str) -> tuple[Plot, ...]:
    """The named plots that were drawn, with their captions."""
    return tuple(
        Plot(name, PLOT_CAPTIONS[name], content.pngs[name])
        for name in names
        if name in content.pngs
    )


def lower_p_figures(content: Content, target: float = 0.001) -> dict | None:
    """What a selection-adjusted p of `target` would cost, at this run's measured rate."""
    null = content.analysis.null
    if null is None:
        return None
    # A run's own permutations evaluate its panel and its candidates (the latter may overlap).
    per_permutation = null.n_candidates + null.n_panel
    n_classifiers = len(content.classifiers)
    searched = int(content.analysis.outcome["signatures evaluated"])
    evaluated = int(searched + null.per_permutation["n_signatures"].sum()) * n_classifiers
    return verdict.lower_p_cost(
        target, per_permutation, n_classifiers, evaluated, content.summary.seconds
    )


def verdict_section(content: Content) -> Section:
    """What was found, how sure, at what cost: the first screen of the report."""
    analysis, overview = content.analysis, content.summary.overview
    ranked = analysis.top.dropna(subset=["mean_auc"])
    if ranked.empty:
        return Section("verdict", "Verdict", intro="No signature has a result: nothing to rank.")
    best = ranked.iloc[0]
    genes = [analysis.symbols.get(p, p) for p in str(best["probesets"]).split(",") if p]
    auc = float(best["mean_auc"])
    n_classifiers = len(content.classifiers)
    items = {
        "best signature": f"#{int(best['signature'])}, {len(genes)} genes: {', '.join(genes)}",
        "its mean AUC": f"{auc:.4f} (cross-validated, mean of {n_classifiers} classifiers); "
        f"median of all signatures {analysis.outcome['median mean AUC']}",
    }
    null = analysis.null
    if null is None:
        items["selection-adjusted p"] = "not computed (no permutation job)"
        lead = f"The best of {len(analysis.signatures)} random signatures reaches a mean AUC of "
        lead += f"{auc:.3f}; without a permutation job there is no test against selection."
    else:
        p = float(null.top["selection_adjusted_p"].iloc[0])
        n = len(null.per_permutation)
        needed = f"{null.threshold:.3f}" if np.isfinite(null.threshold) else "unreachable"
        items["selection-adjusted p"] = (
            f"{p:.3g} (smallest attainable {null.min_p:.3g} with {n} permutations; "
            f"mean AUC needed for p = 0.05: {needed})"
        )
        lower = lower_p_figures(content)
        if lower and null.min_p > lower["p"]:
            items["to go lower"] = verdict.lower_p_text(lower)
        items["random-signature baseline"] = verdict.baseline_verdict(null.baseline)
        lead = (
            f"The best of {null.n_searched} random signatures reaches a mean AUC of {auc:.3f}, "
            f"selection-adjusted p {p:.3g} (smallest attainable {null.min_p:.3g}): it "
            + verdict.selection_verdict(p, null.min_p, n)
            + "."
        )
    if analysis.validation is not None and len(analysis.validation):
        first = analysis.validation.iloc[0]
        interval = (
            f" (95% CI {first['validation_auc_low']:.2f}-{first['validation_auc_high']:.2f})"
            if "validation_auc_low" in first
            else ""
        )
        items["held-out validation"] = (
            f"mean AUC {float(first['validation_mean_auc']):.4f}{interval} on the held-out "
            f"samples against {float(first['discovery_mean_auc']):.4f} cross-validated on "
            f"discovery; mean optimism of the {len(analysis.validation)} validated signatures "
            f"{analysis.validation['optimism'].mean():.3f}"
        )
    items["contrast"] = f"{overview.get('contrast', '')}; samples {overview.get('samples', '')}"
    if overview.get("design", "~ group") != "~ group":
        items["design"] = (
            f"{overview['design']}; the classifiers saw {overview.get('classifier features')}"
        )
    if overview.get("caution"):
        items["caution"] = str(overview["caution"])
    items["cost"] = (
        f"{analysis.outcome['signatures evaluated']} signatures x {n_classifiers} classifiers"
        f" x {overview.get('cv folds', '?')} folds"
        + (f", {overview['permutations']} on permuted labels" if null is not None else "")
        + f"; {overview.get('run time', '?')} on the {overview.get('backend', '?')} backend, "
        f"{overview.get('slices', '?')} slices, {overview.get('slices retried', 0)} retried"
    )
    return Section("verdict", "Verdict", intro=lead, items=items)


def run_section(content: Content) -> Section:
    """What ran on what, and the headline numbers."""
    items = {**content.summary.overview, **content.analysis.outcome}
    if content.batches != (1,):
        batches = ", ".join(map(str, content.batches))
        items["search batches reported"] = f"{batches} (this run added {content.batches[-1]})"
    return Section("summary", "Run summary", items={k: str(v) for k, v in items.items()})


def signatures_section(content: Content) -> Section:
    """The best signatures, with gene symbols, and the plots of all signatures."""
    rows = top_signature_rows(content.analysis, content.classifiers)
    n_top = len(content.analysis.top)
    shown = f", the first {len(rows)} shown" if len(rows) < n_top else ""
    share = f"{content.top_fraction * 100:g}%"
    intro = f"The top {share} of ranked signatures by mean AUC: {n_top}{shown}. "
    intro += rank_p_meaning(content.analysis.null)
    table = table_view("signatures", "Top signatures", rows, "signatures.tsv")
    plots = _plots(content, "roc", "auc_by_classifier", "auc_by_length", "heatmap")
    return Section("signatures", "Top signatures", intro=intro, tables=(table,), plots=plots)


def null_statistic_text(null: NullEvidence) -> str:
    """What the selection-adjusted p compares: which signatures, on each labelling."""
    if null.exact:
        return (
            f"the best mean AUC of all {null.n_searched} searched signatures, on the real "
            "labels and on each permutation (every signature evaluated on every permutation)"
        )
    if not null.n_candidates:
        return (
            f"the best mean AUC of the {null.n_panel} random panel signatures, on the real "
            "labels and on each permutation"
        )
    return (
        f"the best mean AUC among the {null.n_candidates} searched signatures whose probesets "
        "separate a labelling's groups most (by mean squared t), on the real labels and on "
        "each permutation: chosen the same way on both, so the test is exact for that "
        "statistic"
    )


def rank_p_meaning(null: NullEvidence | None) -> str:
    """What the selection-adjusted p on every row means, and what it does not."""
    if null is None:
        return ""
    return (
        f"The selection_adjusted_p is a permutation test of {null_statistic_text(null)}; "
        f"on the real labels it is {null.statistic:.4f} (smallest attainable p "
        f"{null.min_p:.3g}). A row's p is the share of permutations whose statistic reaches "
        "the row's mean AUC (a row above the real labels' statistic gets its p). Only rank "
        "1's answers the search's question, does the best signature beat selection? Below "
        "rank 1 the p compares a signature with the best of a search, so it is conservative "
        "for it, and every row tests the same null (the labels carry no information): "
        "several rows below 0.05 are one finding, not that many significant signatures; "
        "whether a signature's own genes matter is what the random-signature baseline and "
        "the per-gene evidence speak to."
    )


def null_section(content: Content) -> Section:
    """Does the top signature beat selection among random signatures, and chance?"""
    null = content.analysis.null
    if null is None:
        return Section("null", "Signal or selection?", intro="No permutation job was run.")
    best = null.top.iloc[0]
    table = table_view(
        "null", "Top signatures against random signatures", null.top, "signatures.tsv"
    )
    return Section(
        "null",
        "Signal or selection?",
        intro=selection_verdict(null, float(best["mean_auc"]), float(best["selection_adjusted_p"]))
        + " "
        + rank_p_meaning(null),
        items=null_facts(null),
        tables=(table,),
        plots=_plots(content, "random_baseline"),
    )


def selection_verdict(null: NullEvidence, best: float, p: float) -> str:
    """One paragraph a reader can act on: does the best signature beat selection?"""
    base = null.baseline
    beats = p <= 0.05
    return (
        f"The best of {null.n_searched} random signatures reaches a mean AUC of {best:.3f}. "
        + (
            ""
            if best <= null.statistic
            else f"It was not among the signatures the null screens in on the real labels, "
            f"whose best reaches {null.statistic:.3f}: the test is of that value. "
        )
        + f"On permuted labels, the same statistic reaches it with probability "
        f"{p:.3g} (selection-adjusted p; the smallest attainable with "
        f"{len(null.per_permutation)} permutations is {null.min_p:.3g}): "
        + (
            "it beats what selection alone gives. "
            if beats
            else "it does not beat what selecting the best of many random signatures gives on "
            "labels that carry no information; treat it as noise. "
        )
        + f"Random signatures themselves score a median mean AUC of "
        f"{base['random_median_auc']:.3f} on the real labels against "
        f"{base['permuted_median_auc']:.3f} on permuted labels "
        f"({base['share_above_permuted_q95']:.0%} of them beat 95% of the permuted-label "
        "evaluations): where most random gene sets separate the phenotypes, a top signature's "
        "AUC says little about its own genes (Venet et al. 2011)."
    )


def null_facts(null: NullEvidence) -> dict[str, str]:
    """The null's numbers, plainly."""
    base = null.baseline
    method = (
        "exact: every searched signature on every permutation"
        if null.exact
        else f"the {null.n_candidates} signatures screened in for each labelling, evaluated on "
        "it; the statistic, their best mean AUC, is taken the same way on the real labels: "
        "an exact permutation test"
        if null.n_candidates
        else f"the {null.n_panel} random panel signatures on every permutation"
    )
    needed = f"{null.threshold:.3f}" if np.isfinite(null.threshold) else "unreachable"
    return {
        "label permutations": str(len(null.per_permutation)),
        "null": method,
        "the statistic on the real labels": f"{null.statistic:.4f}",
        "smallest attainable p": f"{null.min_p:.3g}",
        "mean AUC needed for selection-adjusted p = 0.05": needed,
        "random signatures better than on permuted labels (p)": f"{base['mean_auc_p']:.3g}",
    }


def validation_section(content: Content) -> Section:
    """Top signatures fitted on the discovery samples and scored on held-out ones."""
    table = content.analysis.validation
    if table is None:
        return Section(
            "validation",
            "Held-out validation",
            intro="Not run (opt in with validation_fraction).",
        )
    intro = (
        "The search used the discovery samples only. Each top signature was then fitted on "
        "all discovery samples and scored on the held-out samples: a held-out AUC near the "
        "discovery AUC supports the signature; one near 0.5 says it did not generalise. "
        "optimism is the discovery AUC minus the held-out one (the winner's curse of the "
        f"search: {table['optimism'].mean():.3f} on average here); validation_auc_low and "
        "_high bound each held-out mean AUC (95%, Hanley and McNeil's standard error)."
    )
    view = table_view("validation", "Discovery and held-out AUC", table, "validation.tsv")
    return Section("validation", "Held-out validation", intro=intro, tables=(view,))


def genes_section(content: Content) -> Section:
    """The most differentially expressed probesets and the volcano plot."""
    rows = top_gene_rows(content.analysis)
    table = table_view("genes", "Probesets by moderated p-value", rows, "genes.tsv")
    n_genes = len(content.analysis.genes)
    intro = (
        f"The {len(rows)} of {n_genes} probesets with the smallest moderated p-values (all of "
        "them in genes.tsv); in the plot below, hover a point for its gene or find one by name. "
    ) + gene_power_text(content.analysis.gene_power)
    return Section(
        "genes",
        "Top genes",
        intro=intro,
        tables=(table,),
        figure_html=volcano_svg(
            content.analysis.genes,
            content.analysis.symbols,
            content.analysis.heatmap.case,
            content.analysis.heatmap.control,
        ),
        plots=_plots(content, "volcano", "ma"),
    )


def gene_power_text(power: GenePower) -> str:
    """What the per-gene signature test can say at this run's scale."""
    if power.needed is None:
        return "Too few signatures for any per-gene signature test to reach significance."
    return (
        f"Signature evidence per probeset (auc_shift, rank_adj_p): {power.tested} probesets are "
        f"in at least one signature; a probeset must be in at least {power.needed} signatures, "
        "all ranked at the very top, before its exact rank test's BH-adjusted p can fall below "
        f"0.05, and {power.enough} are in that many; in this run {power.significant} "
        f"{'reaches' if power.significant == 1 else 'reach'} it. More signatures "
        "(extend_search) give every probeset more chances."
    )


def retries_section(content: Content) -> Section:
    """Every round of every job, and why slices failed."""
    intro = (
        "Each job first deploys all its slices; each retry redeploys the slices that have no "
        "result yet. 'why' gives each failed slice's reason."
    )
    table = table_view("rounds", "Rounds of slices", content.summary.rounds)
    return Section("retries", "Slices and retries", intro=intro, tables=(table,))


def samples_section(content: Content) -> Section:
    """The samples the statistics used: how they group, and how their values are spread."""
    view = content.analysis.samples
    intro = (
        f"{len(view.labels)} samples (the discovery samples when some are held out). PC1 and "
        f"PC2 explain {view.explained[0]:.0%} and {view.explained[1]:.0%} of the variance of "
        f"the {view.n_genes} most variable probesets."
    )
    return Section("samples", "Samples", intro=intro, plots=_plots(content, "pca", "sample_spread"))


def downloads_section(content: Content) -> Section:
    """Links to every file the run writes beside the report."""
    names = [*content.files, *RUN_FILES, *(f"plots/{name}.png" for name in content.pngs)]
    frame = pd.DataFrame(
        {
            "file": [Link(name, name) for name in names],
            "contents": [
                FILE_CONTENTS.get(name, PLOT_CAPTIONS.get(name[6:-4], "")) for name in names
            ],
        }
    )
    table = table_view("files", "Files", frame)
    intro = "Every file of the run's folder: tables as tab-separated text, records as JSON."
    return Section("downloads", "Downloads", intro=intro, tables=(table,))


def methods_section(content: Content) -> Section:
    """What each number is, how it is computed, its null and its limits."""
    params = content.summary.parameters
    facts = dict(zip(params["parameter"], params["value"]))
    heat = content.analysis.heatmap
    n_case, n_samples = heat.boundary, len(heat.sample_labels)
    majority = max(n_case, n_samples - n_case)
    facts |= {
        "case": heat.case,
        "control": heat.control,
        "majority": heat.case if n_case > n_samples - n_case else heat.control,
        "majority_accuracy": f"{majority / n_samples:.3f}" if n_samples else "n/a",
        "top_fraction": f"{content.top_fraction * 100:g}%",
        "design": content.summary.overview.get("design", "~ group"),
        "features": content.summary.overview.get("classifier features", ""),
        "counts": "voom" in str(content.summary.overview.get("classifier features", "")),
        **searched_facts(content),
    }
    return Section("methods", "Methods", partial="_methods.html.j2", facts=facts)


def searched_facts(content: Content) -> dict[str, str]:
    """How many signatures, permutations and panel signatures the report actually covers."""
    null, batches = content.analysis.null, content.batches
    searched = str(len(content.analysis.signatures))
    if len(batches) > 1:
        searched += f" (in {len(batches)} batches; each later batch from a seed derived from it)"
    if null is None:
        return {"n_signatures": searched, "null_panel": "none", "n_permutations": "0"}
    sizes = null.per_permutation["n_signatures"]
    counts = f"{sizes.min()}-{sizes.max()}" if sizes.min() != sizes.max() else f"{sizes.min()}"
    panel = (
        "every searched signature"
        if null.exact
        else f"{null.n_panel} signatures drawn at random with the seed (on the first "
        f"permutations); with the candidates, {counts} signatures per permutation"
    )
    return {
        "n_signatures": searched,
        "null_panel": panel,
        "n_permutations": str(len(null.per_permutation)),
    }


def parameters_section(content: Content) -> Section:
    """Every parameter of the run."""
    table = table_view("parameters", "Parameters", content.summary.parameters)
    return Section("parameters", "Parameters", tables=(table,))


def versions_section(content: Content) -> Section:
    """The package versions the report was made with."""
    table = table_view("versions", "Package versions", content.summary.versions)
    return Section("versions", "Versions", tables=(table,))


# The answer first; how the run went (job ids, sha256, rounds, parameters) at the end.
SECTIONS: tuple[Callable[[Content], Section], ...] = (
    verdict_section,
    signatures_section,
    null_section,
    validation_section,
    genes_section,
    samples_section,
    downloads_section,
    methods_section,
    run_section,
    retries_section,
    parameters_section,
    versions_section,
)


def report_sections(content: Content) -> list[Section]:
    """Every section of the report, in order."""
    return [make(content) for make in SECTIONS]
