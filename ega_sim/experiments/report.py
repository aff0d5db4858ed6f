"""The report of an experiment: OUT/report.md, a self-contained OUT/report.html and the figures
in OUT/figures/, drawn from the results folder alone (so `ega-sim report DIR` can redraw it).

It reads OUT/experiment.json, OUT/results.csv and, when present, OUT/curves.csv and
OUT/regret.csv. Tables give the mean over seeds with its 95% Student-t interval and the
per-seed values (stats.py says why t and not a bootstrap); a reference table puts closed forms
(theory.py) or the paper's figures (paper.py) beside the measurements when the experiment asks.
Markdown and HTML are rendered from one list of blocks, so they always say the same thing.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ega_sim.atomic import write_bytes_atomic, write_text_atomic
from ega_sim.experiments import figures as fig
from ega_sim.experiments.paper import (
    PAPER_BASELINES,
    PAPER_CITATION,
    PAPER_FIGURE5_CLAIMS,
    PAPER_NOTE,
    paper_figures,
    paper_row_names,
    paper_table,
)
from ega_sim.experiments.stats import summarize
from ega_sim.experiments.theory import closed_form

REQUIRED_COLUMNS = ("scenario", "label", "seed", "metric", "value")
REFERENCES = ("none", "closed_form", "paper_table2", "paper_table3", "paper_figure5")

FEED_COLUMNS = (
    "rpm",
    "ctr_poi",
    "ctr_img",
    "welfare_per_request",
    "gmv_per_request",
    "ad_load",
    "psi",
    "psi_model",
    "ir_violation_rate",
)
POSITION_COLUMNS = (
    "revenue_per_request",
    "welfare_per_request",
    "utility_per_request",
    "clicks_per_request",
    "regret_mean",
    "regret_max",
    "psi",
    "ir_violation_rate",
)
MISREPORT_COLUMNS = (
    "truthful_utility",
    "best_multiplier",
    "best_gain",
    "bandit_multiplier",
    "bandit_gain",
    "ppo_multiplier",
    "ppo_gain",
)
_FORMATS = {
    "rpm": "{:.1f}",
    "rpm_model": "{:.1f}",
    "ctr_poi": "{:.4f}",
    "ctr_img": "{:.4f}",
    "feed_ctr_poi": "{:.4f}",
    "ctr_poi_model": "{:.4f}",
    "revenue_per_request": "{:.4f}",
    "welfare_per_request": "{:.4f}",
    "utility_per_request": "{:.4f}",
    "clicks_per_request": "{:.4f}",
    "truthful_utility": "{:.4f}",
    "ads_per_request": "{:.2f}",
    "ad_load": "{:.3f}",
    "gmv_per_request": "{:.3f}",
    "regret_mean": "{:.5f}",
    "regret_mean_model": "{:.5f}",
    "regret_max": "{:.4f}",
    "best_multiplier": "{:.2f}",
    "bandit_multiplier": "{:.2f}",
    "ppo_multiplier": "{:.2f}",
}
_PAPER_METRIC_NAMES = {"psi": "psi (its RM)"}  # the paper scores psi with its reward model
_SIGNED = frozenset({"best_gain", "bandit_gain", "ppo_gain"})


# --- reading the folder --------------------------------------------------------------------------


@dataclass
class ResultsFolder:
    """What a results folder holds, read and summarized."""

    out: Path
    experiment: dict
    results: pd.DataFrame
    curves: pd.DataFrame | None
    regret: pd.DataFrame | None
    labels: list[str]
    scenarios: list[str]
    sweep_keys: list[str]
    feed: set[str]
    summary: pd.DataFrame = field(repr=False)


def _read_optional_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        table = pd.read_csv(path, dtype={"scenario": str, "label": str, "cell": str})
    except pd.errors.EmptyDataError:
        return None
    return None if table.empty else table


def _ordered(preferred: list[str], found: pd.Series) -> list[str]:
    """`preferred` (the experiment's order) first, then anything else the table holds."""
    seen = [str(x) for x in pd.unique(found.astype(str))]
    return [x for x in preferred if x in seen] + [x for x in seen if x not in preferred]


def _scenario_names(references: list[str]) -> list[str]:
    """The names the results use for the experiment's scenario references, in its order (a
    reference that does not load from here stands for itself)."""
    from ega_sim.config.scenario import load_scenario

    names = []
    for reference in references:
        try:
            names.append(load_scenario(reference).name)
        except Exception:  # ordering only; the reference may be its name
            names.append(reference)
    return names


def read_results_folder(out: str | Path) -> ResultsFolder:
    """Read OUT/experiment.json and the CSV tables; a clear error names a missing or empty file."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such results folder")
    experiment_path = out / "experiment.json"
    if not experiment_path.is_file():
        raise FileNotFoundError(
            f"{experiment_path}: missing (the experiment's settings, written by `ega-sim run`); "
            "is this a results folder?"
        )
    try:
        experiment = json.loads(experiment_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{experiment_path}: not valid JSON ({error})") from error
    if not isinstance(experiment, dict):
        raise ValueError(f"{experiment_path}: expected a JSON object")
    results_path = out / "results.csv"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path}: missing (no cell has finished yet?)")
    try:
        results = pd.read_csv(results_path, dtype={"scenario": str, "label": str, "cell": str})
    except pd.errors.EmptyDataError:
        results = pd.DataFrame()
    if results.empty:
        raise ValueError(f"{results_path}: empty, there are no results to report")
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"{results_path}: missing column(s) {', '.join(missing)}")
    results = results[results["value"].notna()].copy()
    reference = experiment.get("reference", "none")
    if reference not in REFERENCES:
        raise ValueError(
            f"{experiment_path}: key 'reference' is {reference!r}, expected one of "
            + ", ".join(REFERENCES)
        )
    sweep_keys = [str(k) for k in experiment.get("sweep_keys", [])]
    absent = [k for k in sweep_keys if k not in results.columns]
    if absent:
        raise ValueError(
            f"{results_path}: no column for sweep key(s) {', '.join(absent)} "
            f"named in {experiment_path.name}"
        )
    labels = _ordered([str(x) for x in experiment.get("labels", [])], results["label"])
    references = [str(x) for x in experiment.get("scenarios", [])]
    scenarios = _ordered(_scenario_names(references), results["scenario"])
    experiment = {
        "name": out.name,
        "title": "",
        "description": "",
        "kind": "evaluate",
        "figures": [],
        "reference": "none",
        "mechanisms": {},
        "paper_rows": {},
        "seeds": sorted(int(s) for s in results["seed"].unique()),
        **experiment,
        "labels": labels,
        "scenarios": scenarios,
        "scenario_references": references,
        "sweep_keys": sweep_keys,
    }
    return ResultsFolder(
        out=out,
        experiment=experiment,
        results=results,
        curves=_read_optional_csv(out / "curves.csv"),
        regret=_read_optional_csv(out / "regret.csv"),
        labels=labels,
        scenarios=scenarios,
        sweep_keys=sweep_keys,
        feed=fig.feed_scenarios(results),
        summary=summarize(results, ["scenario", "label", *sweep_keys]),
    )


# --- formatting numbers --------------------------------------------------------------------------


def _percent_decimals(scale: float) -> int:
    magnitude = abs(scale) * 100
    if magnitude >= 1 or magnitude == 0 or not math.isfinite(magnitude):
        return 1
    return 2 if magnitude >= 0.1 else 3


def format_value(metric: str, value: float, scale: float | None = None) -> str:
    """A metric's value as tables show it: RPM 1 decimal, CTRs 4, psi and gains as percents
    (decimals chosen from `scale`, by default the value itself; an interval passes the larger
    of its mean and half-width so that its three numbers line up)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric in fig.PERCENT_METRICS:
        decimals = _percent_decimals(value if scale is None else scale)
        sign = "+" if metric in _SIGNED else ""
        return f"{100 * value:{sign}.{decimals}f}%"
    return _FORMATS.get(metric, "{:.4g}").format(value)


def _interval_scale(row: pd.Series) -> float:
    """What sets an interval's percent decimals: the larger of |mean| and the half-width."""
    half_width = (row["high"] - row["low"]) / 2 if math.isfinite(row["high"] - row["low"]) else 0
    return max(abs(row["mean"]), half_width) if math.isfinite(row["mean"]) else math.nan


@dataclass(frozen=True)
class Cell:
    """A table cell: its main text and a smaller second line (per-seed values, notes)."""

    text: str
    detail: str = ""


def interval_cell(row: pd.Series | None, metric: str, seeds: int) -> Cell:
    """The text "mean [low, high]" with the per-seed values (ordered by seed) as the second line."""
    if row is None:
        return Cell("n/a")
    mean, scale = row["mean"], _interval_scale(row)
    text = format_value(metric, mean, scale)
    if math.isfinite(row["low"]) and math.isfinite(row["high"]):
        low, high = (
            format_value(metric, row["low"], scale),
            format_value(metric, row["high"], scale),
        )
        text += f" [{low}, {high}]"
    values = ", ".join(format_value(metric, v, scale) for v in row["values"])
    detail = f"({values})"
    if row["n"] < seeds:
        detail = f"{row['n']} of {seeds} seeds: {detail}"
    return Cell(text, detail)


# --- blocks and their rendering ------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class FigureBlock:
    path: str  # relative to the report
    title: str
    caption: str
    png: bytes


Block = Heading | Paragraph | Table | FigureBlock


def _markdown_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.detail:
        text += "<br><sub>" + html.escape(cell.detail).replace("|", "\\|") + "</sub>"
    return text


def render_markdown(blocks: list[Block]) -> str:
    """The report as Markdown (GitHub flavour); figures linked by relative path."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(h.replace("|", "\\|") for h in block.header) + " |")
            lines.append("|" + "|".join(" --- " for _ in block.header) + "|")
            lines += [
                "| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in block.rows
            ]
            lines.append("")
        else:
            lines += [f"![{block.title}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
small { color: #666; } code { background: #f4f4f4; padding: 0 0.2em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; }
figcaption { color: #444; font-size: 0.9em; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """The report as one HTML file: figures embedded as data URIs, no external resources."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append("<table><thead><tr>")
            parts += [f"<th>{_inline_html(h)}</th>" for h in block.header]
            parts.append("</tr></thead><tbody>")
            for row in block.rows:
                cells = []
                for cell in row:
                    detail = f"<br><small>{html.escape(cell.detail)}</small>" if cell.detail else ""
                    cells.append(f"<td>{_inline_html(cell.text)}{detail}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
        else:
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(
                f'<figure><img alt="{html.escape(block.title)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- the sections --------------------------------------------------------------------------------


def _scenario_kind(folder: ResultsFolder, scenario: str) -> str:
    return "feed market" if scenario in folder.feed else "position auction"


def table_metrics(folder: ResultsFolder, scenario: str) -> list[str]:
    """The main metrics of a scenario's table that its results hold."""
    if folder.experiment["kind"] == "misreport":
        wanted = MISREPORT_COLUMNS
    else:
        wanted = FEED_COLUMNS if scenario in folder.feed else POSITION_COLUMNS
    held = set(folder.summary.loc[folder.summary["scenario"] == scenario, "metric"])
    return [m for m in wanted if m in held]


def _summary_row(part: pd.DataFrame, label: str, metric: str) -> pd.Series | None:
    found = part[(part["label"] == label) & (part["metric"] == metric)]
    return None if found.empty else found.iloc[0]


def _label_cell(folder: ResultsFolder, label: str) -> Cell:
    mechanism = str(folder.experiment.get("mechanisms", {}).get(label, label))
    return Cell(f"`{label}`", mechanism if mechanism != label else "")


def _swept_here(folder: ResultsFolder, scenarios: list[str]) -> list[int]:
    """Indices of the sweep keys that vary in these scenarios' results (a key no row of them
    sets gets no column)."""
    part = folder.summary[folder.summary["scenario"].isin(scenarios)]
    return [i for i, key in enumerate(folder.sweep_keys) if part[key].notna().any()]


def _sweep_header(folder: ResultsFolder, shown: list[int]) -> list[str]:
    return [fig.sweep_name(folder.sweep_keys[i]) for i in shown]


def _sweep_cells(point: tuple, shown: list[int]) -> list[Cell]:
    """The sweep point's values for the shown keys; "-" where the cell is outside the sweep."""
    return [Cell("-" if _nan(point[i]) else fig.format_sweep_value(point[i])) for i in shown]


def _rows_by_point(folder: ResultsFolder, scenario: str):
    """(sweep point, its summary rows, label) for every label with results, sweep points first."""
    part = folder.summary[folder.summary["scenario"] == scenario]
    for point in fig.sweep_points(part, folder.sweep_keys):
        at = part[fig.at_sweep_point(part, folder.sweep_keys, point)]
        for label in folder.labels:
            if (at["label"] == label).any():
                yield point, at, label


def _provenance(folder: ResultsFolder) -> list[Block]:
    e, results = folder.experiment, folder.results
    cells = results.drop_duplicates("cell") if "cell" in results.columns else results
    rows = [
        ("experiment", f"`{e['name']}` ({e['kind']})"),
        ("package version", str(e.get("version", "unknown"))),
        ("git commit", str(e.get("git_commit", "unknown"))),
        ("seeds", ", ".join(str(s) for s in e["seeds"])),
        ("requests per cell", str(e.get("requests", "n/a"))),
        ("regret requests per cell", str(e.get("regret_requests", "n/a"))),
        ("misreport search", str(e.get("misreport", "n/a"))),
        ("quick run", "yes (shrunk for a smoke test)" if e.get("quick") else "no"),
        (
            "cells with results",
            f"{len(cells)}" + (f" of {len(e['cells'])}" if e.get("cells") else ""),
        ),
    ]
    if "seconds" in cells.columns:
        rows.append(("total cell seconds", f"{float(cells['seconds'].sum()):.1f}"))
    if "train_seconds" in cells.columns:
        # A cell records the training its mechanism rests on, shared by many cells: give the
        # largest per mechanism rather than a sum that would count shared training many times.
        training = cells.groupby("label", sort=False)["train_seconds"].max()
        training = training[training > 0]
        if len(training):
            rows.append(
                (
                    "training seconds per mechanism (the most any of its cells rests on)",
                    ", ".join(f"{label} {seconds:.1f}" for label, seconds in training.items()),
                )
            )
    if "device" in results.columns:
        rows.append(
            ("devices", ", ".join(sorted(str(d) for d in results["device"].dropna().unique())))
        )
    for column, name in (
        ("git_commit", "commits of the cells"),
        ("version", "versions of the cells"),
    ):
        if column in results.columns:
            distinct = sorted(str(c) for c in results[column].dropna().unique())
            if len(distinct) > 1:
                rows.append((name, "several: " + ", ".join(distinct)))
    return [
        Heading(2, "Provenance"),
        Table(["setting", "value"], [[Cell(k), Cell(v)] for k, v in rows]),
    ]


def _results_tables(folder: ResultsFolder) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Results"),
        Paragraph(
            "Each cell: the mean over seeds with its 95% Student-t interval in brackets (a "
            "bootstrap interval undercovers with three seeds), and below it the per-seed values "
            "ordered by seed."
            + (
                " psi is total regret over total truthful utility."
                if (folder.summary["metric"] == "psi").any()
                else ""
            )
        ),
    ]
    seeds = len(folder.experiment["seeds"])
    for scenario in folder.scenarios:
        metrics = table_metrics(folder, scenario)
        if not metrics:
            continue
        shown = _swept_here(folder, [scenario])
        header = [*_sweep_header(folder, shown), "mechanism"]
        header += [fig.metric_label(m) for m in metrics]
        rows = []
        for point, at, label in _rows_by_point(folder, scenario):
            sweep_cells = _sweep_cells(point, shown)
            rows.append(
                [
                    *sweep_cells,
                    _label_cell(folder, label),
                    *(interval_cell(_summary_row(at, label, m), m, seeds) for m in metrics),
                ]
            )
        blocks += [
            Heading(3, f"{scenario} ({_scenario_kind(folder, scenario)})"),
            Table(header, rows),
        ]
    return blocks


def _nan(value: object) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


def _parse_sweep_value(value: object) -> object:
    """A sweep value read back from the CSV: lists were written as JSON; a whole float (a
    column with gaps turns 3 into 3.0) goes back to an int, which every number key accepts."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _scenario_at_point(reference: str, sweep_keys: list[str], point: tuple):
    """The scenario of `reference` with the sweep point's `scenario.` keys applied (as the
    runner applies them); None when it cannot be built (then no closed form is claimed).
    `mechanism.` and `training.` keys do not change a position auction's closed form."""
    from ega_sim.config.scenario import load_scenario

    overrides = {
        key.removeprefix("scenario."): _parse_sweep_value(value)
        for key, value in zip(sweep_keys, point, strict=False)
        if key.startswith("scenario.") and not _nan(value)
    }
    try:
        return load_scenario(reference, overrides or None)
    except Exception:  # an override that does not apply: no closed form rather than a wrong one
        return None


def scenario_references(folder: ResultsFolder) -> dict[str, str]:
    """Scenario name (the results' `scenario` column) -> the reference the experiment gave
    (a shipped name or a path), for every reference that loads from here."""
    from ega_sim.config.scenario import load_scenario

    references = {}
    for reference in folder.experiment.get("scenario_references", []):
        try:
            references.setdefault(load_scenario(reference).name, reference)
        except Exception:  # a path relative to elsewhere: tried by name instead
            continue
    return references


def _standard_errors_apart(measured: pd.Series | None, expected: float) -> str:
    if measured is None or math.isnan(expected) or not math.isfinite(measured["mean"]):
        return "n/a"
    difference = float(measured["mean"]) - expected
    se = float(measured["se_of_mean"])
    if not math.isfinite(se) or se == 0:
        return "exact" if abs(difference) <= 1e-9 else "n/a"
    text = f"{difference / se:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _closed_form_section(folder: ResultsFolder) -> list[Block]:
    from ega_sim.config.scenario import PositionAuctionConfig

    blocks: list[Block] = [
        Heading(2, "Closed forms"),
        Paragraph(
            "Expected revenue and mean ex-post regret per (request, bidder) pair of truthful "
            "bidding, from auction theory (ega_sim/experiments/theory.py), beside the measured "
            'means. "apart" is (measured - closed form) / standard error of the mean over all '
            "requests of all seeds: within about ±3 the two agree. n/a: no closed form."
        ),
    ]
    seeds = len(folder.experiment["seeds"])
    shown = _swept_here(folder, [s for s in folder.scenarios if s not in folder.feed])
    header = [
        "scenario",
        *_sweep_header(folder, shown),
        "mechanism",
        "revenue / request",
        "closed form",
        "apart",
        "mean regret",
        "closed form",
        "apart",
    ]
    rows, problems = [], []
    mechanisms = folder.experiment.get("mechanisms", {})
    references = scenario_references(folder)
    for scenario in folder.scenarios:
        if scenario in folder.feed:
            continue
        reference = references.get(scenario, scenario)
        if _scenario_at_point(reference, [], ()) is None:
            problems.append(f"`{scenario}` (no scenario file found from here)")
            continue
        for point, at, label in _rows_by_point(folder, scenario):
            mechanism = str(mechanisms.get(label, label))
            config = _scenario_at_point(reference, folder.sweep_keys, point)
            expected = (
                closed_form(config, mechanism)
                if isinstance(config, PositionAuctionConfig)
                else {"revenue_per_request": math.nan, "regret_mean": math.nan}
            )
            revenue = _summary_row(at, label, "revenue_per_request")
            regret = _summary_row(at, label, "regret_mean")
            rows.append(
                [
                    Cell(f"`{scenario}`"),
                    *_sweep_cells(point, shown),
                    _label_cell(folder, label),
                    interval_cell(revenue, "revenue_per_request", seeds),
                    Cell(format_value("revenue_per_request", expected["revenue_per_request"])),
                    Cell(_standard_errors_apart(revenue, expected["revenue_per_request"])),
                    interval_cell(regret, "regret_mean", seeds),
                    Cell(format_value("regret_mean", expected["regret_mean"])),
                    Cell(_standard_errors_apart(regret, expected["regret_mean"])),
                ]
            )
    if rows:
        blocks.append(Table(header, rows))
    else:
        blocks.append(Paragraph("No position auction in this experiment: no closed forms apply."))
    blocks += [Paragraph(f"No closed form for {p}.") for p in problems]
    return blocks


def _relative(value: float, base: float, metric: str) -> str:
    if not (math.isfinite(value) and math.isfinite(base)):
        return ""
    if metric in fig.PERCENT_METRICS:
        return f"{100 * (value - base):+.1f} pts"
    if base == 0:
        return ""
    return f"{value / base - 1:+.1%}"


def _paper_value(metric: str, value: float) -> str:
    """A paper figure as printed (RPM with its two decimals)."""
    if not math.isfinite(value):
        return "not reported"
    return f"{value:.2f}" if metric == "rpm" else format_value(metric, value)


def _paper_section(folder: ResultsFolder, reference: str) -> list[Block]:
    experiment_path = folder.out / "experiment.json"
    paper_rows = {str(k): str(v) for k, v in folder.experiment.get("paper_rows", {}).items()}
    known = paper_row_names(reference)
    unknown = sorted({v for v in paper_rows.values() if v not in known})
    if unknown:
        raise ValueError(
            f"{experiment_path}: key 'paper_rows' names {', '.join(map(repr, unknown))}, not a "
            f"row of {reference}; rows: {', '.join(known)}"
        )
    table = paper_table(reference)
    metrics = [c for c in table.columns if c != "row"]
    baseline_row = PAPER_BASELINES[reference]
    baseline_label = next((lab for lab, row in paper_rows.items() if row == baseline_row), None)
    number = reference.removeprefix("paper_table")
    blocks: list[Block] = [
        Heading(2, f"The paper's Table {number}"),
        Paragraph(
            f"{PAPER_CITATION}, Table {number}, beside our measurements (means over seeds). "
            f"The second line of each cell is the change against `{baseline_row}` (ours: "
            f"against the mechanism mapped to it); psi changes are in percentage points."
        ),
        Paragraph(PAPER_NOTE),
    ]
    mapped = [lab for lab in folder.labels if lab in paper_rows]
    if not mapped:
        blocks.append(Paragraph("No mechanism of this experiment is mapped to a paper row."))
        return blocks
    scenarios = [s for s in folder.scenarios if s in folder.feed] or folder.scenarios
    shown = _swept_here(folder, scenarios)
    header = [*_sweep_header(folder, shown), "mechanism", "paper row"]
    for metric in metrics:
        name = _PAPER_METRIC_NAMES.get(metric, fig.metric_label(metric))
        header += [f"{fig.metric_label(metric)}, ours", f"{name}, paper"]
    paper_base = paper_figures(reference, baseline_row)
    for scenario in scenarios:
        rows = []
        part = folder.summary[folder.summary["scenario"] == scenario]
        for point in fig.sweep_points(part, folder.sweep_keys):
            at = part[fig.at_sweep_point(part, folder.sweep_keys, point)]
            for label in mapped:
                if not (at["label"] == label).any():
                    continue
                theirs = paper_figures(reference, paper_rows[label])
                row = [
                    *_sweep_cells(point, shown),
                    _label_cell(folder, label),
                    Cell(paper_rows[label]),
                ]
                for metric in metrics:
                    ours = _summary_row(at, label, metric)
                    base = _summary_row(at, baseline_label, metric) if baseline_label else None
                    mean = float(ours["mean"]) if ours is not None else math.nan
                    ours_change = (
                        _relative(mean, float(base["mean"]), metric)
                        if base is not None and label != baseline_label
                        else ""
                    )
                    their_change = (
                        _relative(theirs[metric], paper_base[metric], metric)
                        if paper_rows[label] != baseline_row
                        else ""
                    )
                    row += [
                        Cell(format_value(metric, mean), ours_change),
                        Cell(_paper_value(metric, theirs[metric]), their_change),
                    ]
                rows.append(row)
        if rows:
            blocks += [Heading(3, f"{scenario}"), Table(header, rows)]
    return blocks


def _trend(xs: list[float], means: list[float], name: str) -> str:
    """A plain description of how a sweep's means move: first -> last, and an interior peak."""
    finite = [(x, m) for x, m in zip(xs, means, strict=True) if math.isfinite(m)]
    if len(finite) < 2:
        return "n/a"
    (x0, first), (x1, last) = finite[0], finite[-1]
    change = (last - first) / abs(first) if first else math.nan
    word = "flat"
    if math.isfinite(change) and change > 0.01:
        word = "rises"
    elif math.isfinite(change) and change < -0.01:
        word = "falls"
    text = (
        f"{word} ({change:+.1%} from {name} = {x0:g} to {x1:g})" if math.isfinite(change) else word
    )
    peak_x, peak = max(finite, key=lambda pair: pair[1])
    if peak_x not in (x0, x1) and peak > max(first, last) * 1.01:
        text += f", peaks at {name} = {peak_x:g}"
    return text


def _figure5_section(folder: ResultsFolder) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "The paper's Figure 5"),
        Paragraph(
            f"{PAPER_CITATION}, Figure 5 (token-bidding weights w = bid^alpha + beta), has no "
            "numbers we can quote; its claims: "
            + "; ".join(claim["claim"] for claim in PAPER_FIGURE5_CLAIMS.values())
            + ". Beside them, how our means move along each sweep."
        ),
        Paragraph(PAPER_NOTE),
    ]
    keys = [k for k in folder.sweep_keys if fig.sweep_name(k) in PAPER_FIGURE5_CLAIMS]
    if not keys:
        blocks.append(Paragraph("This experiment sweeps neither alpha nor beta."))
        return blocks
    header = ["scenario", "swept", "mechanism", "values", "RPM (ours)", "CTR-poi (ours)", "paper"]
    rows = []
    for scenario in folder.scenarios:
        part = folder.summary[folder.summary["scenario"] == scenario]
        revenue_metric = "rpm" if scenario in folder.feed else "revenue_per_request"
        for key in keys:
            name = fig.sweep_name(key)
            claims = PAPER_FIGURE5_CLAIMS[name]
            swept = part[part[key].notna()]
            others = [k for k in folder.sweep_keys if k != key]
            for label in folder.labels:
                mine = swept[swept["label"] == label]
                for other in fig.sweep_points(mine, others):
                    line = mine[fig.at_sweep_point(mine, others, other)]
                    cells = []
                    xs_text = ""
                    for metric in (revenue_metric, "ctr_poi"):
                        series = line[line["metric"] == metric].copy()
                        series["_x"] = pd.to_numeric(series[key], errors="coerce")
                        series = series.sort_values("_x")
                        if series.empty or series["_x"].isna().any():
                            cells.append(Cell("n/a"))
                            continue
                        xs = series["_x"].tolist()
                        means = series["mean"].astype(float).tolist()
                        xs_text = ", ".join(f"{x:g}" for x in xs)
                        cells.append(
                            Cell(
                                _trend(xs, means, name),
                                ", ".join(format_value(metric, m) for m in means),
                            )
                        )
                    if all(c.text == "n/a" for c in cells):
                        continue
                    context = fig.sweep_point_text(others, other)
                    rows.append(
                        [
                            Cell(f"`{scenario}`"),
                            Cell(name, context),
                            _label_cell(folder, label),
                            Cell(xs_text),
                            *cells,
                            Cell(f"RPM {claims['rpm']}; CTR {claims['ctr_poi']}"),
                        ]
                    )
    blocks.append(Table(header, rows) if rows else Paragraph("No sweep results to compare."))
    return blocks


def _reference_section(folder: ResultsFolder) -> list[Block]:
    reference = folder.experiment.get("reference", "none")
    if reference == "closed_form":
        return _closed_form_section(folder)
    if reference in ("paper_table2", "paper_table3"):
        return _paper_section(folder, reference)
    if reference == "paper_figure5":
        return _figure5_section(folder)
    return []


def _drawn_as(file_stem: str, figure: str) -> bool:
    """Whether a drawn figure's file stem belongs to a listed figure kind."""
    return file_stem == figure or file_stem.startswith(f"{figure}_")


def build_blocks(folder: ResultsFolder, drawn: list[fig.DrawnFigure]) -> list[Block]:
    """The whole report as blocks: title, provenance, tables, reference, figures."""
    e = folder.experiment
    blocks: list[Block] = [Heading(1, e.get("title") or e["name"])]
    if e.get("description"):
        blocks.append(Paragraph(str(e["description"])))
    blocks += _provenance(folder)
    blocks += _results_tables(folder)
    blocks += _reference_section(folder)
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
                FigureBlock(f"figures/{figure.name}.png", figure.title, figure.caption, figure.png),
            ]
    return blocks


# --- the public entry points ---------------------------------------------------------------------


def write_report(out: str | Path) -> list[Path]:
    """Draw the listed figures into OUT/figures/ and write OUT/report.md and OUT/report.html,
    every file atomically; returns the paths written."""
    folder = read_results_folder(out)
    drawn = fig.draw_figures(
        folder.experiment,
        folder.summary,
        curves=folder.curves,
        regret=folder.regret,
        feed=folder.feed,
    )
    written = [
        write_bytes_atomic(folder.out / "figures" / f"{figure.name}.png", figure.png)
        for figure in drawn
    ]
    blocks = build_blocks(folder, drawn)
    title = folder.experiment.get("title") or folder.experiment["name"]
    written.append(write_text_atomic(folder.out / "report.md", render_markdown(blocks)))
    written.append(write_text_atomic(folder.out / "report.html", render_html(blocks, title)))
    return written


def _line_metrics(folder: ResultsFolder, scenario: str) -> tuple[str, ...]:
    if folder.experiment["kind"] == "misreport":
        return ("best_multiplier", "best_gain", "bandit_gain", "ppo_gain")
    if scenario in folder.feed:
        return ("rpm", "ctr_poi", "ctr_img", "welfare_per_request", "psi")
    return ("revenue_per_request", "welfare_per_request", "regret_mean", "psi")


def report_lines(out: str | Path) -> list[str]:
    """A short plain-text summary for the terminal: one line per scenario (and sweep point) and
    label, the first metric with its 95% t-interval, the others as means over seeds."""
    folder = read_results_folder(out)
    e = folder.experiment
    lines = [
        f"{e['name']}: mean over seeds {', '.join(str(s) for s in e['seeds'])} [95% t-interval]"
    ]
    for scenario in folder.scenarios:
        metrics = _line_metrics(folder, scenario)
        for point, at, label in _rows_by_point(folder, scenario):
            where = fig.sweep_point_text(folder.sweep_keys, point)
            pieces = [f"{scenario}{' ' + where if where else ''}", label]
            for index, metric in enumerate(metrics):
                row = _summary_row(at, label, metric)
                if row is None:
                    continue
                scale = _interval_scale(row) if index == 0 else None
                text = format_value(metric, row["mean"], scale)
                if index == 0 and math.isfinite(row["low"]) and math.isfinite(row["high"]):
                    low = format_value(metric, row["low"], scale)
                    high = format_value(metric, row["high"], scale)
                    text += f" [{low}, {high}]"
                pieces.append(f"{fig.metric_label(metric)} {text}")
            lines.append("  ".join(pieces))
    return lines
