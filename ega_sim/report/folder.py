"""Reading a results folder: OUT/experiment.json, OUT/results.csv and, when present,
OUT/curves.csv, OUT/regret.csv, OUT/closed_forms.csv and OUT/ratios.csv, checked and summarized
by scenario,
label and sweep point. The report reads these files only."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ega_sim.report.names import REFERENCES
from ega_sim.report.stats import summarize

REQUIRED_COLUMNS = ("scenario", "label", "seed", "metric", "value")


@dataclass
class ResultsFolder:
    """What a results folder holds, read and summarized."""

    out: Path
    experiment: dict
    results: pd.DataFrame
    curves: pd.DataFrame | None
    regret: pd.DataFrame | None
    closed_forms: pd.DataFrame | None  # position auctions' closed forms, per cell
    ratios: pd.DataFrame | None  # the per-request sums behind each cell's regret figures
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


def feed_scenarios(results: pd.DataFrame) -> set[str]:
    """Scenarios that are feed markets: those with image click-through rows."""
    return set(results.loc[results["metric"] == "ctr_img", "scenario"].astype(str))


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
    ratios = _read_optional_csv(out / "ratios.csv")
    labels = _ordered([str(x) for x in experiment.get("labels", [])], results["label"])
    names = [str(x) for x in experiment.get("scenario_names", [])]
    scenarios = _ordered(names, results["scenario"])
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
        "sweep_keys": sweep_keys,
    }
    return ResultsFolder(
        out=out,
        experiment=experiment,
        results=results,
        curves=_read_optional_csv(out / "curves.csv"),
        regret=_read_optional_csv(out / "regret.csv"),
        closed_forms=_read_optional_csv(out / "closed_forms.csv"),
        ratios=ratios,
        labels=labels,
        scenarios=scenarios,
        sweep_keys=sweep_keys,
        feed=feed_scenarios(results),
        summary=summarize(results, ["scenario", "label", *sweep_keys], ratios=ratios),
    )
