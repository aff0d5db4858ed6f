"""Cell records to tidy tables: results (one row per cell and metric), curves (utility against
the misreport multiplier), regret (a per-pair sample) and closed_forms (a position auction's
revenue and regret from theory, per cell) and ratios (the per-request sums behind every
regret figure, so intervals over requests pool across seeds: intervals.py), written as CSV
and, when pyarrow is present, Parquet. Files are written atomically. A result row carries its
cell's 95% interval over requests (`low`, `high`) where the figure is a regret figure.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from ega_sim.atomic import write_bytes_atomic
from ega_sim.experiments.theory import CLOSED_FORM_KEYS
from ega_sim.intervals import RatioSums
from ega_sim.paths import inside

RATIO_COLUMNS = tuple(RatioSums().to_dict())  # n, sx, sy, sxx, syy, sxy

CELLS = "cells"
IDENTITY = ("experiment", "cell", "scenario", "label", "mechanism", "seed")
CELL_COLUMNS = ("requests", "regret_requests", "misreport", "regret_bidders")
TRAILING = ("seconds", "train_seconds", "device", "version", "git_commit")


def read_records(out: Path) -> list[dict]:
    """Every finished cell's record in OUT/cells/, by file name; a corrupt one is an error
    (records are written atomically, so one can only be corrupt if edited by hand)."""
    records = []
    for path in sorted((out / CELLS).glob("*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a cell record ({error}); delete it to rerun") from None
    return records


def _sweep_value(value):
    """A sweep value as a table cell: numbers and strings as they are, lists as JSON."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def _identity(record: dict, sweep_keys: list[str]) -> dict:
    row = {key: record[key] for key in IDENTITY}
    for key in sweep_keys:
        row[key] = _sweep_value(record["sweep"].get(key))
    return row


def _nan(value) -> float:
    """A stored figure as a float: null is NaN, "inf" is infinite."""
    return math.nan if value is None else float(value)


def tables(records: list[dict], sweep_keys: list[str]) -> dict[str, pd.DataFrame]:
    """The tidy tables of a set of cell records: results, curves, regret."""
    results, curves, regret, closed_forms, ratios = [], [], [], [], []
    for record in records:
        identity = _identity(record, sweep_keys)
        cell = {key: record[key] for key in CELL_COLUMNS if key != "regret_bidders"}
        cell["regret_bidders"] = (record.get("regret") or {}).get("bidders")
        trailing = {key: record[key] for key in TRAILING}
        intervals = (record.get("regret") or {}).get("intervals") or {}
        for metric, (value, se) in record["metrics"].items():
            low, high = intervals.get(metric, (None, None))
            results.append(
                {
                    **identity,
                    **cell,
                    "metric": metric,
                    "value": _nan(value),
                    "se": _nan(se),
                    "low": _nan(low),
                    "high": _nan(high),
                    **trailing,
                }
            )
        curve = record.get("curve")
        if curve:
            for m, u, se in zip(
                curve["multiplier"], curve["utility"], curve["utility_se"], strict=True
            ):
                curves.append({**identity, "multiplier": m, "utility": u, "utility_se": _nan(se)})
        expected = record.get("closed_form")
        if expected:
            closed_forms.append({**identity, **{k: _nan(v) for k, v in expected.items()}})
        sample = record.get("regret")
        for figure, sums in ((sample or {}).get("ratios") or {}).items():
            ratios.append({**identity, "metric": figure, **sums})
        if sample:
            for r, u in zip(sample["regret"], sample["utility"], strict=True):
                regret.append({**identity, "regret": r, "utility": u})
    identity_columns = [*IDENTITY, *sweep_keys]
    return {
        "results": pd.DataFrame(
            results,
            columns=[
                *identity_columns,
                *CELL_COLUMNS,
                "metric",
                "value",
                "se",
                "low",
                "high",
                *TRAILING,
            ],
        ),
        "curves": pd.DataFrame(
            curves, columns=[*identity_columns, "multiplier", "utility", "utility_se"]
        ),
        "regret": pd.DataFrame(regret, columns=[*identity_columns, "regret", "utility"]),
        "ratios": pd.DataFrame(ratios, columns=[*identity_columns, "metric", *RATIO_COLUMNS]),
        "closed_forms": pd.DataFrame(closed_forms, columns=[*identity_columns, *CLOSED_FORM_KEYS]),
    }


def write_tables(frames: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """NAME.csv for every table, and NAME.parquet too when pyarrow is installed."""
    try:
        import pyarrow  # noqa: F401

        parquet = True
    except ImportError:
        parquet = False
    written = []
    for name, frame in frames.items():
        csv = frame.to_csv(index=False).encode()
        written.append(write_bytes_atomic(inside(out, f"{name}.csv"), csv))
        if parquet:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            written.append(write_bytes_atomic(inside(out, f"{name}.parquet"), buffer.getvalue()))
    return written
