"""A study's analysis in one call: aggregate the run files, compute the screening statistics, draw the plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hpcq.results import plots
from hpcq.results.aggregate import AggregateResult, aggregate, load_aggregate, summary_lines
from hpcq.results.stats import ScreeningResult, screening_statistics


@dataclass
class StudyAnalysis:
    aggregated: AggregateResult
    screening: ScreeningResult
    figures: dict[str, list[Path]] = field(default_factory=dict)


def draw_study_plots(aggregated: AggregateResult, screening: ScreeningResult, out_dir: Path) -> dict[str, list[Path]]:
    """Every study plot that the data allow (a plot without its data is left out, not drawn empty)."""
    drawn = {
        "main_effects": plots.main_effects_plot(screening.main_effects, out_dir),
        "accuracy_vs_qubits": plots.accuracy_vs_qubits_plot(aggregated.runs, screening.selection, out_dir),
        "learning_curves": plots.learning_curves_plot(aggregated.runs, aggregated.curves, screening.selection,
                                                      out_dir),
        "scaling": plots.scaling_plot(aggregated.runs, out_dir),
    }
    return {name: paths for name, paths in drawn.items() if paths}


def analyse_study(source: Path, out_dir: Path, *, progress: bool = True) -> StudyAnalysis:
    """`source` is a results folder (aggregated now) or an aggregate folder (runs.parquet, read back)."""
    source, out_dir = Path(source), Path(out_dir)
    if (source / "runs.parquet").is_file():
        aggregated = load_aggregate(source)
    else:
        aggregated = aggregate(source, out_dir, progress=progress)
    screening = screening_statistics(aggregated.runs, out_dir)
    return StudyAnalysis(aggregated, screening, draw_study_plots(aggregated, screening, out_dir))


def render_analysis(analysis: StudyAnalysis, out_dir: Path) -> None:
    """What `hpcq aggregate` prints."""
    for line in summary_lines(analysis.aggregated, out_dir):
        print(line)
    paired = analysis.screening.paired
    for row in (paired.dropna(subset=["mean_diff"]) if "mean_diff" in paired else paired.iloc[0:0]).itertuples():
        print(f"quantum ({row.quantum_config}) - {row.classical_kind}: {row.mean_diff:+.4f} "
              f"[95% CI {row.ci_low:+.4f}, {row.ci_high:+.4f}] over {row.n_pairs} seeds")
    if analysis.figures:
        print("plots: " + ", ".join(sorted(analysis.figures)))
