"""The federated search's global report: combine the sites' summaries, render, write."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.federation.meta import (
    SiteResult,
    Universe,
    combine_genes,
    combine_signatures,
    combined_null_maxima,
    site_result,
    with_selection_p,
)
from tasks.federation.parameters import FederationParameters
from tasks.federation.sites import Federation
from tasks.io import (
    publish_run_folder,
    read_annotation,
    save_json,
    save_text,
    save_tsv,
)
from tasks.report.analysis import gene_symbols, with_symbols
from tasks.report.render import Section, render_html, render_markdown, table_view
from tasks.science.plan import Signature

SHOWN_SIGNATURES = 20
SHOWN_GENES = 30


@dataclass(frozen=True)
class FederatedInputs:
    """What the coordinator has at the end: the sites, the plan, the sites' summaries."""

    federation: Federation
    params: FederationParameters
    run_id: str
    universe: Universe
    signatures: Sequence[Signature]
    plan_sha256: str
    summaries: dict[str, dict]
    failures: dict[str, str]


@dataclass(frozen=True)
class FederatedAnalysis:
    """The global tables and what the verdict says."""

    sites: list[SiteResult]
    signatures: pd.DataFrame
    genes: pd.DataFrame
    null: pd.Series
    site_table: pd.DataFrame
    failures: dict[str, str]


def accepted_sites(inputs: FederatedInputs) -> tuple[list[SiteResult], dict[str, str]]:
    """Sites whose summary is of this plan; the others, and why, with the failures."""
    failures = dict(inputs.failures)
    sites = []
    ids = [s.id for s in inputs.signatures]
    for name, payload in sorted(inputs.summaries.items()):
        if payload.get("plan_sha256") != inputs.plan_sha256:
            failures[name] = "its summary is of another plan"
        elif payload["signatures"]["signature"] != ids:
            failures[name] = "its summary lacks planned signatures"
        else:
            sites.append(site_result(payload))
    return sites, failures


def site_rows(inputs: FederatedInputs, failures: dict[str, str]) -> pd.DataFrame:
    """One row per site of the sites file: its groups, what it lacked, its status, its report."""
    rows = []
    for site in inputs.federation.sites:
        payload = inputs.summaries.get(site.name, {})
        run = payload.get("run", {})
        samples = payload.get("samples", {})
        rows.append(
            {
                "site": site.name,
                "status": "included" if site.name not in failures else failures[site.name],
                "n_case": samples.get("case"),
                "n_control": samples.get("control"),
                "probesets_lacked": len(inputs.universe.lacked.get(site.name, [])),
                "failed_slices": len(run.get("failed_slices", [])),
                "site_report": run.get("report", ""),
            }
        )
    return pd.DataFrame(rows)


def analyse_federation(inputs: FederatedInputs) -> FederatedAnalysis:
    """Combine the accepted sites' signatures, genes and nulls."""
    sites, failures = accepted_sites(inputs)
    classifiers = list(inputs.params.classifiers)
    maxima = combined_null_maxima(sites)
    table = with_selection_p(combine_signatures(sites, classifiers), maxima)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    probesets = {s.id: ",".join(s.probesets) for s in inputs.signatures}
    table["probesets"] = table["signature"].map(probesets)
    genes = combine_genes(sites)
    return FederatedAnalysis(sites, table, genes, maxima, site_rows(inputs, failures), failures)


def verdict(analysis: FederatedAnalysis, symbols: dict[str, str], inputs: FederatedInputs) -> dict:
    """The answer in a few facts: the best combined signature, how sure, which sites."""
    best = analysis.signatures.iloc[0]
    n_null = len(analysis.null)
    per_site = ", ".join(f"{s.name} {best[f'mean_auc_{s.name}']:.3f}" for s in analysis.sites)
    covered = f"{len(analysis.sites)} of {len(inputs.federation.sites)}"
    if analysis.failures:
        covered += f"; left out: {', '.join(sorted(analysis.failures))}"
    facts = {
        "best signature": f"#{int(best['signature'])}: {with_symbols(best['probesets'], symbols)}",
        "combined mean AUC": f"{best['mean_auc']:.4f} (per site: {per_site}; I² {best['i2']:.2f})",
        "selection-adjusted p": (
            f"{best['selection_adjusted_p']:.3g} (smallest attainable {1 / (n_null + 1):.3g}, "
            f"{n_null} permutations at every site)"
            if n_null
            else "no permutations: no null"
        ),
        "sites": covered,
        "top gene": _top_gene(analysis.genes, symbols),
    }
    return facts


def _top_gene(genes: pd.DataFrame, symbols: dict[str, str]) -> str:
    """The meta-analysis's first gene, its pooled logFC and adjusted p."""
    top = genes.iloc[0]
    name = with_symbols(str(genes.index[0]), symbols)
    return f"{name}: logFC {top['logFC']:.3f} ± {top['SE']:.3f}, adj. p {top['adj.P.Val']:.3g}"


def federated_sections(
    analysis: FederatedAnalysis, inputs: FederatedInputs, symbols: dict[str, str]
) -> list[Section]:
    """Verdict first, then sites, signatures, genes, methods and downloads."""
    shown = analysis.signatures.head(SHOWN_SIGNATURES).copy()
    shown["genes"] = shown["probesets"].map(lambda p: with_symbols(p, symbols))
    signature_columns = ["rank", "signature", "genes", "mean_auc", "selection_adjusted_p", "i2"]
    signature_columns += [f"mean_auc_{s.name}" for s in analysis.sites]
    genes = analysis.genes.head(SHOWN_GENES).reset_index()
    genes.insert(1, "symbol", genes["probeset"].map(lambda p: symbols.get(p, "")))
    gene_columns = ["probeset", "symbol", "logFC", "SE", "P.Value", "adj.P.Val", "I2"]
    gene_columns += [f"logFC_{s.name}" for s in analysis.sites]
    n_sig, n_genes = len(analysis.signatures), len(analysis.genes)
    return [
        Section("verdict", "Verdict", items=verdict(analysis, symbols, inputs)),
        Section(
            "sites",
            "Sites",
            intro="Each site searched the same plan on its own samples, with its own server and "
            "workers; its full report stays at the site (the path is on the site's machine).",
            tables=(table_view("sites", "Sites", analysis.site_table, "sites.tsv"),),
        ),
        Section(
            "signatures",
            "Signatures by combined AUC",
            intro=f"The first {len(shown)} of {n_sig} signatures (all in signatures.tsv). The "
            "combined AUC is the sites' AUCs weighted by site size; I² is the share of the "
            "sites' spread beyond chance. Each p compares a signature's combined mean AUC with "
            "the best combined mean AUC of every permutation: it allows for having picked the "
            "best of all signatures, so a p near the best one's says 'as good as the best', "
            "not 'another independent finding'.",
            tables=(
                table_view(
                    "signatures", "Top signatures", shown[signature_columns], "signatures.tsv"
                ),
            ),
        ),
        Section(
            "genes",
            "Genes (meta-analysis)",
            intro=f"The first {len(genes)} of {n_genes} probesets by the meta-analysis of the "
            "sites' differential expression, by p (all in genes.tsv).",
            tables=(table_view("genes", "Top genes", genes[gene_columns], "genes.tsv"),),
        ),
        Section("methods", "Methods", items=methods(inputs, analysis)),
        Section("downloads", "Downloads", items=downloads()),
    ]


def methods(inputs: FederatedInputs, analysis: FederatedAnalysis) -> dict[str, str]:
    """How the sites' summaries were combined, and why that is valid."""
    lacked = {s: len(p) for s, p in inputs.universe.lacked.items() if p}
    return {
        "universe": f"{len(inputs.universe.probesets)} probesets every site has"
        + (f" (lacked: {lacked})" if lacked else ""),
        "plan": f"{len(inputs.signatures)} signatures from the universe and seed "
        f"{inputs.params.seed}; every site checked the plan's digest {inputs.plan_sha256[:12]}",
        "combined AUC": "per signature and classifier, the sites' cross-validated AUCs "
        "weighted by the sites' sample counts; mean_auc averages the classifiers; I² from "
        "Cochran's Q with Hanley-McNeil variances of the sites' mean AUCs",
        "null": "each site permuted its own labels (permutation j at every site from the "
        "run's seed) and evaluated every signature on each; permutation j's statistic is the "
        "best combined mean AUC over all signatures, computed exactly as on the real labels. "
        "Under the null at every site labels are exchangeable within each site, so the real "
        "labelling is one more draw from the same distribution and p = (1 + permutations "
        "reaching it) / (permutations + 1) is a valid permutation test of the best signature",
        "genes": "fixed-effect inverse-variance meta-analysis of logFC, weighted by limma's "
        "moderated standard errors (SE = stdev.unscaled × sqrt(s2.post)); z = pooled logFC / "
        "SE with a normal p, BH-adjusted; Cochran's Q and I² for heterogeneity. Chosen over "
        "Stouffer's z because it gives an effect size with its error on the log2 scale the "
        "sites share (one platform); for sites on different scales, Stouffer's is the safer",
        "what left the sites": "probeset names, group sizes, per-signature AUC and accuracy, "
        "per-permutation mean AUCs, per-gene logFC, SE, t, df and mean expression; never a "
        "sample's value, label or identifier",
    }


def downloads() -> dict[str, str]:
    """Every file the global report's folder holds."""
    return {
        "signatures.tsv": "every signature: combined and per-site AUCs, p, I²",
        "genes.tsv": "every probeset: the meta-analysis and per-site statistics",
        "null.tsv": "each permutation's best combined mean AUC",
        "sites.tsv": "the sites: groups, status, lacked probesets, site reports",
        "universe.tsv": "the probesets each site lacked",
        "report.json": "the verdict and the parameters, for machines",
        "report.md": "this report as Markdown",
    }


def write_federated_report(results_dir: Path, inputs: FederatedInputs) -> Path:
    """Compute, render and write the global report's folder at once; return report.html."""
    analysis = analyse_federation(inputs)
    annotation = inputs.federation.annotation_path
    symbols = gene_symbols(read_annotation(Path(annotation)) if annotation else None)
    sections = federated_sections(analysis, inputs, symbols)
    title = f"{inputs.federation.name}: {inputs.federation.case} vs {inputs.federation.control}"
    run_dir = results_dir / f"federated-{inputs.federation.name}-{inputs.run_id}"
    work_dir = run_dir.with_name(f"{run_dir.name}.incomplete-{secrets.token_hex(3)}")
    save_tsv(analysis.signatures, work_dir / "signatures.tsv")
    save_tsv(analysis.genes.reset_index(), work_dir / "genes.tsv")
    save_tsv(analysis.null.rename_axis("permutation").reset_index(), work_dir / "null.tsv")
    save_tsv(analysis.site_table, work_dir / "sites.tsv")
    lacked = [(s, p) for s, ps in inputs.universe.lacked.items() for p in ps]
    save_tsv(pd.DataFrame(lacked, columns=["site", "probeset_lacked"]), work_dir / "universe.tsv")
    save_text(render_html(title, sections), work_dir / "report.html")
    save_text(render_markdown(title, sections), work_dir / "report.md")
    record = {
        "verdict": verdict(analysis, symbols, inputs),
        "parameters": inputs.params.model_dump(),
        "sites": sorted(s.name for s in analysis.sites),
        "failed_sites": analysis.failures,
        "plan_sha256": inputs.plan_sha256,
        "n_permutations": len(analysis.null),
    }
    save_json(record, work_dir / "report.json")
    publish_run_folder(work_dir, run_dir)
    return run_dir / "report.html"
