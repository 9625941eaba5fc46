"""`hpcq report`: one self-contained HTML page (plus Markdown) with a study's tables and plots.

The HTML embeds every image as a base64 data URI and its CSS inline, with no scripts and no external
references, so it opens offline from anywhere. The Markdown sits next to the PNG files it references.

Inputs, in a study folder laid out by the workflow (results/<study>/): `aggregate/runs.parquet` if present
(else run files found below the folder, read now), and `energy/crossover.json` if present (else the energy
model is run with the shipped config, fitted to bench_scale runs when there are any).
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

import hpcq
from hpcq.report.crossover_report import run_crossover
from hpcq.results.aggregate import AggregateResult, collect_runs, load_aggregate
from hpcq.results.analysis import draw_study_plots
from hpcq.results.markdown import markdown_table
from hpcq.results.plots import reproduction_plot
from hpcq.results.reproduction import head_table, paired_table, paper_protocol_runs, published_table
from hpcq.results.stats import PARTIAL_ETA_SQ, SELECTION_RULE, screening_statistics

RUN_COLUMNS = ("run_id", "run_kind", "model.kind", "model.n_qubits", "model.layers", "model.connectivity",
               "model.reuploads", "train.lr", "seed", "final.val_accuracy", "final.test_accuracy",
               "final.n_qubits", "final.ranks", "energy.method", "energy.joules", "run_path")
SCALE_COLUMNS = ("device", "final.n_qubits", "final.ranks", "final.time_per_pass_s", "final.achieved_gbps",
                 "final.copy_gbps", "final.local_state_bytes", "final.cache_bytes", "final.comm_time_s",
                 "final.comm_bytes", "energy.mean_watts", "energy.method")
MAX_RUN_ROWS = 300
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#222;
line-height:1.45;padding:0 1rem}
h1{border-bottom:2px solid #446;padding-bottom:.3rem}h2{margin-top:2.2rem;color:#334}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.82rem}
th,td{border:1px solid #ccd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}.note{color:#555;font-size:.9rem}
.wide{overflow-x:auto}
"""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


@dataclass
class StudyReport:
    html: Path
    markdown: Path
    sections: list[Section]
    images: list[Path]


@dataclass
class EnergySection:
    summary: dict
    scenarios: pd.DataFrame
    sensitivity: pd.DataFrame
    plot: Path


def _find_aggregate(source: Path) -> AggregateResult:
    for candidate in (source / "aggregate", source):
        if (candidate / "runs.parquet").is_file():
            return load_aggregate(candidate)
    return collect_runs(source)


def _energy(source: Path, runs: pd.DataFrame, out_dir: Path) -> EnergySection:
    done = source / "energy"
    if (done / "crossover.json").is_file() and (done / "energy_vs_qubits.png").is_file():
        return EnergySection(json.loads((done / "crossover.json").read_text()), pd.read_csv(done / "scenarios.csv"),
                             pd.read_csv(done / "sensitivity.csv"), done / "energy_vs_qubits.png")
    has_bench = "run_kind" in runs.columns and (runs["run_kind"] == "bench_scale").any()
    report = run_crossover(None, out_dir / "energy", runs=runs if has_bench else None)
    return EnergySection(report.summary(), report.scenarios, report.sensitivity, report.files["energy_vs_qubits.png"])


def _present(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    return table[[c for c in columns if c in table.columns]]


def study_sections(aggregated: AggregateResult, out_dir: Path, energy: EnergySection) -> list[Section]:
    """The report's content, shared by the HTML and the Markdown renderings."""
    runs = aggregated.runs
    screening = screening_statistics(runs, out_dir / "tables")
    figures = draw_study_plots(aggregated, screening, out_dir / "figures")
    png = {name: paths[0] for name, paths in figures.items()}
    kinds = runs["run_kind"].value_counts().to_dict() if len(runs) else {}
    overview = Section("Overview", [
        f"{len(runs)} runs read ({', '.join(f'{k}: {n}' for k, n in kinds.items()) or 'none'}); "
        f"{len(aggregated.skipped)} file(s) were skipped (unreadable, or a repeat of a run already counted; "
        "each with its reason below)."])
    if len(aggregated.skipped):
        overview.tables.append(("Skipped files (unreadable: delete and rerun; repeats: remove the copy)", aggregated.skipped))
    sections = [overview]
    if not screening.selection.empty:
        sections.append(Section("Model selection", [SELECTION_RULE], [("Configs by model kind", screening.selection)]))
        sections.append(Section("Quantum minus classical, paired by seed",
                                ["Difference in test accuracy between the selected quantum config and each classical "
                                 "kind's selected config on the same seeds; 95% Student-t interval."],
                                [("Paired differences", screening.paired)]))
    protocol = paper_protocol_runs(runs)
    if len(protocol):
        sections.append(paper_protocol_section(protocol, out_dir / "figures"))
    if "main_effects" in png:
        sections.append(Section("Screening: main effects and ANOVA",
                                ["Marginal mean test accuracy per factor level over quantum runs (95% CI), and a "
                                 f"type-II ANOVA on all varying factors; {PARTIAL_ETA_SQ}."],
                                [("Main effects", screening.main_effects), ("ANOVA", screening.anova)],
                                [("Main effects", png["main_effects"])]))
    for name, title in (("accuracy_vs_qubits", "Accuracy against qubits"), ("learning_curves", "Learning curves")):
        if name in png:
            sections.append(Section(title, figures=[(title, png[name])]))
    if "scaling" in png:
        bench = _present(runs[runs["run_kind"] == "bench_scale"], SCALE_COLUMNS).sort_values(
            [c for c in ("final.ranks", "final.n_qubits") if c in runs.columns])
        sections.append(Section("State-vector scaling", tables=[("bench_scale runs", bench)],
                                figures=[("Scaling", png["scaling"])]))
    sections.append(energy_section(energy))
    shown = _present(runs, RUN_COLUMNS).head(MAX_RUN_ROWS)
    note = f" (first {MAX_RUN_ROWS})" if len(runs) > MAX_RUN_ROWS else ""
    sections.append(Section("Runs", [f"Full table: runs.parquet / runs.csv of `hpcq aggregate`{note}."],
                            [("Runs", shown)]))
    return sections


def paper_protocol_section(protocol: pd.DataFrame, figures_dir: Path) -> Section:
    """Every body × head on the seed paper's protocol with its spread over seeds, the paired quantum-minus-
    classical differences on each body, and what others published for the same protocol, labelled as theirs."""
    heads, published = head_table(protocol), published_table()
    tables = [("Test accuracy per body and head (mean and sd over seeds, 95% Student-t interval)", heads),
              ("Quantum minus classical on the same body, paired by seed (95% Student-t interval; p_holm: "
               "the p value Holm-adjusted over every row of this table)",
               paired_table(protocol)),
              ("Published for the same protocol: their numbers, not rerun here", published)]
    text = ["The seed paper's protocol: 256 + 256 SST-2 sentences drawn per seed (435 train, 77 validation), "
            "tested on the other 9,101. Every head is reported, none selected; one test accuracy has a standard "
            "error of about 0.3 points, so differences smaller than the intervals below are not findings."]
    figure = reproduction_plot(heads, published, figures_dir)
    return Section("The paper's protocol, beside published numbers", text, tables,
                   [("Test accuracy per body and head, and published numbers", figure[0])] if figure else [])


def energy_section(energy: EnergySection) -> Section:
    """The crossover headline (measured or modelled), each parameter's provenance, the bench_scale runs that
    could not carry a parameter and why, what moves the crossover, the scenarios and the sensitivity."""
    summary = energy.summary
    tables = [("What moves the crossover most", pd.DataFrame(summary["explain"])),
              ("Parameters: measured (from which runs) or assumed (from which source)",
               pd.DataFrame(summary["parameters"]))]
    if summary["rejected_runs"]:
        tables.append(("bench_scale runs that cannot carry a parameter, and why", pd.DataFrame(summary["rejected_runs"])))
    tables += [("Assumption sets", energy.scenarios), ("Sensitivity, one parameter at a time", energy.sensitivity)]
    return Section("Energy: GPU against QPU", [summary["headline"] + ".", *summary["notes"]], tables,
                   [("Energy per inference against qubits", energy.plot)])


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class=\"note\">hpcq {html.escape(hpcq.__version__)}, generated "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
        for caption, path in section.figures:
            parts.append(f"<figure><img src=\"{_data_uri(path)}\" alt=\"{html.escape(caption)}\">"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        for caption, table in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3><div class=\"wide\">"
                         + table.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4g}")
                         + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: list[Section], out_dir: Path) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for text in section.paragraphs:
            lines += [text, ""]
        for caption, path in section.figures:
            lines += [f"![{caption}]({path.relative_to(out_dir).as_posix()})", ""]
        for caption, table in section.tables:
            lines += [f"**{caption}**", "", markdown_table(table), ""]
    return "\n".join(lines)


def build_report(source: Path, out_dir: Path) -> StudyReport:
    """Write report.html (self-contained) and report.md (+ figures/, tables/) for the study in `source`."""
    source, out_dir = Path(source), Path(out_dir)
    aggregated = _find_aggregate(source)
    energy = _energy(source, aggregated.runs, out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    if energy.plot.parent != figures_dir:
        energy.plot = Path(shutil.copy2(energy.plot, figures_dir / energy.plot.name))
    sections = study_sections(aggregated, out_dir, energy)
    title = f"hpcq study report: {source.resolve().name}"
    html_path, markdown_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(render_html(title, sections), encoding="utf-8")
    markdown_path.write_text(render_markdown(title, sections, out_dir), encoding="utf-8")
    images = [path for section in sections for _, path in section.figures]
    return StudyReport(html_path, markdown_path, sections, images)
