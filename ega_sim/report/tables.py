"""Pieces the report's tables share: the interval cell, the mechanism cell, the sweep columns
and the walk over a scenario's rows by sweep point and label."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from ega_sim.report.folder import ResultsFolder
from ega_sim.report.formats import (
    format_sweep_value,
    format_value,
    interval_bounds,
    interval_scale,
    sweep_name,
)
from ega_sim.report.render import Cell
from ega_sim.report.sweep_points import at_sweep_point, is_missing, sweep_points


def interval_cell(row: pd.Series | None, metric: str, seeds: int) -> Cell:
    """The mean, with its 95% interval "[low, high]" as the smaller second line (and how many
    seeds it rests on when fewer than the experiment's)."""
    if row is None:
        return Cell("n/a")
    scale = interval_scale(row)
    text = format_value(metric, row["mean"], scale)
    bounds = interval_bounds(row, metric)
    if row["n"] < seeds:
        bounds = f"{bounds} ({row['n']} of {seeds} seeds)".strip()
    return Cell(text, bounds)


def seed_values_cell(row: pd.Series | None, metric: str) -> Cell:
    """The per-seed values of a summary row, ordered by seed: "(a, b, c)"."""
    if row is None:
        return Cell("n/a")
    scale = interval_scale(row)
    return Cell("(" + ", ".join(format_value(metric, v, scale) for v in row["values"]) + ")")


def drop_constant_columns(
    header: list[str], rows: list[list[Cell]], first: int
) -> tuple[list[str], list[list[Cell]], str]:
    """Drop the columns from index `first` on whose main text is the same in every row (two
    rows or more): they carry nothing. Returns the header, the rows and a line naming the
    dropped columns with their common value ("" when none is dropped)."""
    if len(rows) < 2:
        return header, rows, ""
    constant = [j for j in range(first, len(header)) if len({row[j].text for row in rows}) == 1]
    if not constant:
        return header, rows, ""
    keep = [j for j in range(len(header)) if j not in constant]
    common = "; ".join(f"{header[j]} {rows[0][j].text}" for j in constant)
    return (
        [header[j] for j in keep],
        [[row[j] for j in keep] for row in rows],
        f"The same in every row, so not a column: {common}.",
    )


def label_cell(folder: ResultsFolder, label: str) -> Cell:
    """A label in code style, with its mechanism below when the two differ."""
    mechanism = str(folder.experiment.get("mechanisms", {}).get(label, label))
    return Cell(f"`{label}`", mechanism if mechanism != label else "")


def swept_here(folder: ResultsFolder, scenarios: list[str]) -> list[int]:
    """Indices of the sweep keys that vary in these scenarios' results (a key no row of them
    sets gets no column)."""
    part = folder.summary[folder.summary["scenario"].isin(scenarios)]
    return [i for i, key in enumerate(folder.sweep_keys) if part[key].notna().any()]


def sweep_header(folder: ResultsFolder, shown: list[int]) -> list[str]:
    """The column names of the shown sweep keys."""
    return [sweep_name(folder.sweep_keys[i]) for i in shown]


def sweep_value_cells(point: tuple, shown: list[int]) -> list[Cell]:
    """The sweep point's values for the shown keys; "-" where the cell is outside the sweep."""
    return [Cell("-" if is_missing(point[i]) else format_sweep_value(point[i])) for i in shown]


def rows_by_point(
    folder: ResultsFolder, scenario: str
) -> Iterator[tuple[tuple, pd.DataFrame, str]]:
    """(sweep point, its summary rows, label) for every label with results, sweep points first."""
    part = folder.summary[folder.summary["scenario"] == scenario]
    for point in sweep_points(part, folder.sweep_keys):
        at = part[at_sweep_point(part, folder.sweep_keys, point)]
        for label in folder.labels:
            if (at["label"] == label).any():
                yield point, at, label
