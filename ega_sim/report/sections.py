"""The report's sections on its own results: provenance (what ran, where, at which version)
and the results tables, one per scenario."""

from __future__ import annotations

from ega_sim.report.folder import ResultsFolder
from ega_sim.report.formats import metric_label
from ega_sim.report.render import Block, Cell, Heading, Paragraph, Table
from ega_sim.report.sweep_points import summary_row
from ega_sim.report.tables import (
    interval_cell,
    label_cell,
    rows_by_point,
    sweep_header,
    sweep_value_cells,
    swept_here,
)

FEED_COLUMNS = (
    "rpm",
    "ctr_poi",
    "ctr_img",
    "welfare_per_request",
    "gmv_per_request",
    "ad_load",
    "psi",
    "psi_per_ad",
    "psi_model",
    "non_monotone_rate",
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


def _sizes(cells, experiment: dict) -> str:
    """What each mechanism's figures rest on: requests, regret requests and whose regret."""
    if not {"label", "requests", "regret_requests"} <= set(cells.columns):
        return f"{experiment.get('requests', 'n/a')}, {experiment.get('regret_requests', 'n/a')}"
    parts = []
    for label, part in cells.groupby("label", sort=False):
        first = part.iloc[0]
        bidders = first.get("regret_bidders")
        whose = f" ({bidders} bidders)" if isinstance(bidders, str) and bidders else ""
        parts.append(f"{label}: {int(first['requests'])}, {int(first['regret_requests'])}{whose}")
    return "; ".join(parts)


def provenance_section(folder: ResultsFolder) -> list[Block]:
    """What ran, where and at which version: a settings table."""
    e, results = folder.experiment, folder.results
    cells = results.drop_duplicates("cell") if "cell" in results.columns else results
    rows = [
        ("experiment", f"`{e['name']}` ({e['kind']})"),
        ("package version", str(e.get("version", "unknown"))),
        ("git commit", str(e.get("git_commit", "unknown"))),
        ("seeds", ", ".join(str(s) for s in e["seeds"])),
        ("requests and regret requests per cell", _sizes(cells, e)),
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


def results_section(folder: ResultsFolder) -> list[Block]:
    """One table per scenario: mean [95% t-interval] and the per-seed values."""
    blocks: list[Block] = [
        Heading(2, "Results"),
        Paragraph(
            "Each cell: the mean over seeds with its 95% Student-t interval in brackets (a "
            "bootstrap interval undercovers with three seeds), and below it the per-seed values "
            "ordered by seed."
            + (
                " psi is total regret over total truthful utility. Regret figures (mean regret, "
                "psi, per-ad psi, and their own-model versions) are instead pooled over the "
                "requests of every seed: the ratio of the sums and its 95% interval over "
                "requests (delta method on the log scale, never below 0), because the spread "
                "between requests, not between seeds, dominates them."
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
        shown = swept_here(folder, [scenario])
        header = [*sweep_header(folder, shown), "mechanism"]
        header += [metric_label(m) for m in metrics]
        rows = []
        for point, at, label in rows_by_point(folder, scenario):
            sweep_cells = sweep_value_cells(point, shown)
            rows.append(
                [
                    *sweep_cells,
                    label_cell(folder, label),
                    *(interval_cell(summary_row(at, label, m), m, seeds) for m in metrics),
                ]
            )
        blocks += [
            Heading(3, f"{scenario} ({_scenario_kind(folder, scenario)})"),
            Table(header, rows),
        ]
    return blocks
