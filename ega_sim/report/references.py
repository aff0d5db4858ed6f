"""The reference section: closed forms (computed by experiments/theory.py when a cell ran, read
from closed_forms.csv) or the paper's Tables 2 and 3 or Figure 5 (paper.py) beside the
measurements, as the experiment's `reference` asks."""

from __future__ import annotations

import math

import pandas as pd

from ega_sim.report.folder import ResultsFolder
from ega_sim.report.formats import (
    PERCENT_METRICS,
    format_value,
    metric_label,
    sweep_name,
)
from ega_sim.report.paper import (
    PAPER_BASELINES,
    PAPER_CITATION,
    PAPER_FIGURE5_CLAIMS,
    PAPER_NOTE,
    paper_figures,
    paper_row_names,
    paper_table,
)
from ega_sim.report.render import Block, Cell, Heading, Paragraph, Table
from ega_sim.report.sweep_points import (
    at_sweep_point,
    summary_row,
    sweep_point_text,
    sweep_points,
)
from ega_sim.report.tables import (
    interval_cell,
    label_cell,
    rows_by_point,
    sweep_header,
    sweep_value_cells,
    swept_here,
)

_PAPER_METRIC_NAMES = {"psi": "psi (its RM)"}  # the paper scores psi with its reward model


def _closed_form_at(folder: ResultsFolder, scenario: str, point: tuple, label: str) -> dict:
    """The closed forms recorded by the cells of (scenario, sweep point, label): NaN where
    theory has none, or where the cells were run by an ega-sim that did not record them."""
    found = {"revenue_per_request": math.nan, "regret_mean": math.nan}
    table = folder.closed_forms
    if table is None:
        return found
    rows = table[(table["scenario"] == scenario) & (table["label"] == label)]
    rows = rows[at_sweep_point(rows, folder.sweep_keys, point)]
    if not rows.empty:
        found = {key: float(rows.iloc[0][key]) for key in found}
    return found


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
    shown = swept_here(folder, [s for s in folder.scenarios if s not in folder.feed])
    header = [
        "scenario",
        *sweep_header(folder, shown),
        "mechanism",
        "revenue / request",
        "closed form",
        "apart",
        "mean regret",
        "closed form",
        "apart",
    ]
    rows = []
    for scenario in folder.scenarios:
        if scenario in folder.feed:
            continue
        for point, at, label in rows_by_point(folder, scenario):
            expected = _closed_form_at(folder, scenario, point, label)
            revenue = summary_row(at, label, "revenue_per_request")
            regret = summary_row(at, label, "regret_mean")
            rows.append(
                [
                    Cell(f"`{scenario}`"),
                    *sweep_value_cells(point, shown),
                    label_cell(folder, label),
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
    return blocks


def _relative(value: float, base: float, metric: str) -> str:
    if not (math.isfinite(value) and math.isfinite(base)):
        return ""
    if metric in PERCENT_METRICS:
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
    shown = swept_here(folder, scenarios)
    header = [*sweep_header(folder, shown), "mechanism", "paper row"]
    for metric in metrics:
        name = _PAPER_METRIC_NAMES.get(metric, metric_label(metric))
        header += [f"{metric_label(metric)}, ours", f"{name}, paper"]
    paper_base = paper_figures(reference, baseline_row)
    for scenario in scenarios:
        rows = []
        part = folder.summary[folder.summary["scenario"] == scenario]
        for point in sweep_points(part, folder.sweep_keys):
            at = part[at_sweep_point(part, folder.sweep_keys, point)]
            for label in mapped:
                if not (at["label"] == label).any():
                    continue
                theirs = paper_figures(reference, paper_rows[label])
                row = [
                    *sweep_value_cells(point, shown),
                    label_cell(folder, label),
                    Cell(paper_rows[label]),
                ]
                for metric in metrics:
                    ours = summary_row(at, label, metric)
                    base = summary_row(at, baseline_label, metric) if baseline_label else None
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
    keys = [k for k in folder.sweep_keys if sweep_name(k) in PAPER_FIGURE5_CLAIMS]
    if not keys:
        blocks.append(Paragraph("This experiment sweeps neither alpha nor beta."))
        return blocks
    header = ["scenario", "swept", "mechanism", "values", "RPM (ours)", "CTR-poi (ours)", "paper"]
    rows = []
    for scenario in folder.scenarios:
        part = folder.summary[folder.summary["scenario"] == scenario]
        revenue_metric = "rpm" if scenario in folder.feed else "revenue_per_request"
        for key in keys:
            name = sweep_name(key)
            claims = PAPER_FIGURE5_CLAIMS[name]
            swept = part[part[key].notna()]
            others = [k for k in folder.sweep_keys if k != key]
            for label in folder.labels:
                mine = swept[swept["label"] == label]
                for other in sweep_points(mine, others):
                    line = mine[at_sweep_point(mine, others, other)]
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
                    context = sweep_point_text(others, other)
                    rows.append(
                        [
                            Cell(f"`{scenario}`"),
                            Cell(name, context),
                            label_cell(folder, label),
                            Cell(xs_text),
                            *cells,
                            Cell(f"RPM {claims['rpm']}; CTR {claims['ctr_poi']}"),
                        ]
                    )
    blocks.append(Table(header, rows) if rows else Paragraph("No sweep results to compare."))
    return blocks


def reference_section(folder: ResultsFolder) -> list[Block]:
    """The section the experiment's `reference` asks for; none for "none"."""
    reference = folder.experiment.get("reference", "none")
    if reference == "closed_form":
        return _closed_form_section(folder)
    if reference in ("paper_table2", "paper_table3"):
        return _paper_section(folder, reference)
    if reference == "paper_figure5":
        return _figure5_section(folder)
    return []
