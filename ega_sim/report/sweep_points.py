"""Sweep points of a summary table: listing them, selecting their rows and naming them, so that
tables and figures walk the results the same way."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ega_sim.report.formats import format_sweep_value, sweep_name


def is_missing(value: object) -> bool:
    """Whether a sweep value is NaN: the row is outside that sweep key."""
    return isinstance(value, float | np.floating) and math.isnan(value)


def parse_sweep_value(value: object) -> object:
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


def sweep_points(frame: pd.DataFrame, sweep_keys: Sequence[str]) -> list[tuple]:
    """The distinct sweep points of a table (tuples in sweep-key order), sorted by value,
    a point outside the sweep (NaN) last; [()] when there are no sweep keys."""
    keys = [key for key in sweep_keys if key in frame.columns]
    if not keys:
        return [()]
    distinct = frame[keys].drop_duplicates()
    points = [tuple(row) for row in distinct.itertuples(index=False, name=None)]
    return sorted(points, key=lambda point: tuple(sort_key(v) for v in point))


def sort_key(value: object) -> tuple:
    """How sweep values sort: numbers by value, then other values as text, NaN last."""
    if is_missing(value):
        return (1, 0, 0.0, "")
    if isinstance(value, float | int | np.floating | np.integer):
        return (0, 0, float(value), "")
    return (0, 1, 0.0, str(value))


def sweep_point_text(sweep_keys: Sequence[str], point: tuple) -> str:
    """ "alpha=1.2, beta=2" (keys outside the sweep are left out); "" for no sweep."""
    return ", ".join(
        f"{sweep_name(key)}={format_sweep_value(value)}"
        for key, value in zip(sweep_keys, point, strict=False)
        if not is_missing(value)
    )


def at_sweep_point(frame: pd.DataFrame, sweep_keys: Sequence[str], point: tuple) -> pd.Series:
    """A row mask: the rows of `frame` at this sweep point (NaN matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in zip(sweep_keys, point, strict=False):
        if key not in frame.columns:
            continue
        mask &= frame[key].isna() if is_missing(value) else frame[key] == value
    return mask


def summary_row(part: pd.DataFrame, label: str, metric: str) -> pd.Series | None:
    """The summary row of one label and metric in `part`; None when it has none."""
    found = part[(part["label"] == label) & (part["metric"] == metric)]
    return None if found.empty else found.iloc[0]
