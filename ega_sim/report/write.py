"""Writing the report: the figures into OUT/figures/, then report.md and report.html from one
list of blocks, every file atomically; and the short summary `ega-sim run` prints."""

from __future__ import annotations

from pathlib import Path

from ega_sim.atomic import write_bytes_atomic, write_text_atomic
from ega_sim.paths import inside
from ega_sim.report.figures import DrawnFigure, draw_figures
from ega_sim.report.figures.common import display_width
from ega_sim.report.folder import ResultsFolder, read_results_folder
from ega_sim.report.formats import format_value, interval_text, metric_label
from ega_sim.report.references import reference_section
from ega_sim.report.render import (
    Block,
    FigureBlock,
    Heading,
    Paragraph,
    render_html,
    render_markdown,
)
from ega_sim.report.sections import provenance_section, results_section
from ega_sim.report.sweep_points import summary_row, sweep_point_text
from ega_sim.report.tables import rows_by_point


def _drawn_as(file_stem: str, figure: str) -> bool:
    """Whether a drawn figure's file stem belongs to a listed figure kind."""
    return file_stem == figure or file_stem.startswith(f"{figure}_")


def build_blocks(folder: ResultsFolder, drawn: list[DrawnFigure]) -> list[Block]:
    """The whole report as blocks: title, provenance, tables, reference, figures."""
    e = folder.experiment
    blocks: list[Block] = [Heading(1, e.get("title") or e["name"])]
    if e.get("description"):
        blocks.append(Paragraph(str(e["description"])))
    blocks += provenance_section(folder)
    blocks += results_section(folder)
    blocks += reference_section(folder)
    listed = list(e.get("figures", []))
    missing = [name for name in listed if not any(_drawn_as(f.name, name) for f in drawn)]
    if drawn or missing:
        blocks.append(Heading(2, "Figures"))
    if missing:
        blocks.append(
            Paragraph(
                "Listed but not drawn, the results hold no data for them: "
                + ", ".join(missing)
                + "."
            )
        )
    if drawn:
        for figure in drawn:
            blocks += [
                Heading(3, figure.title),
                FigureBlock(
                    f"figures/{figure.name}.png",
                    figure.title,
                    figure.caption,
                    figure.png,
                    display_width(figure.png),
                ),
            ]
    return blocks


def write_report(out: str | Path) -> list[Path]:
    """Draw the listed figures into OUT/figures/ and write OUT/report.md and OUT/report.html,
    every file atomically; returns the paths written."""
    folder = read_results_folder(out)
    drawn = draw_figures(
        folder.experiment,
        folder.summary,
        curves=folder.curves,
        regret=folder.regret,
        feed=folder.feed,
    )
    written = [
        write_bytes_atomic(inside(folder.out, "figures", f"{figure.name}.png"), figure.png)
        for figure in drawn
    ]
    blocks = build_blocks(folder, drawn)
    title = folder.experiment.get("title") or folder.experiment["name"]
    written.append(write_text_atomic(inside(folder.out, "report.md"), render_markdown(blocks)))
    html = render_html(blocks, title)
    written.append(write_text_atomic(inside(folder.out, "report.html"), html))
    return written


def _line_metrics(folder: ResultsFolder, scenario: str) -> tuple[str, ...]:
    if folder.experiment["kind"] == "misreport":
        return ("best_multiplier", "best_gain", "bandit_gain", "ppo_gain")
    if scenario in folder.feed:
        return ("rpm", "ctr_poi", "ctr_img", "welfare_per_request", "psi")
    return ("revenue_per_request", "welfare_per_request", "regret_mean", "psi")


def report_lines(out: str | Path) -> list[str]:
    """A short plain-text summary for the terminal: one line per scenario (and sweep point) and
    label, the first metric with its 95% t-interval over seeds (on the log or logit scale, inside
    the metric's support: stats.support_t_interval), the others as means over seeds,
    and regret figures pooled over the requests of every seed with their 95% interval."""
    folder = read_results_folder(out)
    e = folder.experiment
    lines = [
        f"{e['name']}: mean over seeds {', '.join(str(s) for s in e['seeds'])}"
        " [95% t-interval inside the support]; psi over all requests [95% interval]"
    ]
    for scenario in folder.scenarios:
        metrics = _line_metrics(folder, scenario)
        for point, at, label in rows_by_point(folder, scenario):
            where = sweep_point_text(folder.sweep_keys, point)
            pieces = [f"{scenario}{' ' + where if where else ''}", label]
            for index, metric in enumerate(metrics):
                row = summary_row(at, label, metric)
                if row is None:
                    continue
                with_interval = index == 0 or row.get("interval") == "requests"
                text = (
                    interval_text(row, metric)
                    if with_interval
                    else format_value(metric, row["mean"])
                )
                pieces.append(f"{metric_label(metric)} {text}")
            lines.append("  ".join(pieces))
    return lines
