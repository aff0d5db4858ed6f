"""The report's sections on its own results: provenance (what ran, where, at which version)
and the results tables, one per scenario."""

from __future__ import annotations

import pandas as pd

from ega_sim.report.folder import ResultsFolder
from ega_sim.report.formats import metric_label
from ega_sim.report.render import Block, Cell, Details, Heading, Paragraph, Table
from ega_sim.report.sweep_points import summary_row
from ega_sim.report.tables import (
    drop_constant_columns,
    interval_cell,
    label_cell,
    rows_by_point,
    seed_values_cell,
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


def _size_text(values) -> str:
    """The distinct sizes of a mechanism's cells: "500", or "200 to 500" when seeds differ."""
    sizes = sorted({int(v) for v in values if v == v})  # v == v: not NaN
    if not sizes:
        return "n/a"
    return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"


def cell_sizes(cells, experiment: dict, labels: list[str]) -> list[tuple[str, str]]:
    """What each mechanism's figures rest on, as (the labels, their sizes) in the experiment's
    label order, labels of equal sizes together: requests per cell, regret requests and whose
    regret was searched, read from the cells themselves (results.csv), since mechanisms of one
    experiment may run on different sizes; the experiment's settings only when the cells did
    not record them."""
    if not {"label", "requests", "regret_requests"} <= set(cells.columns):
        return [
            (
                "every mechanism (the experiment's settings: the cells did not record theirs)",
                f"{experiment.get('requests', 'n/a')} requests; regret on "
                f"{experiment.get('regret_requests', 'n/a')} of them",
            )
        ]
    groups: dict[str, list[str]] = {}
    for label in [lab for lab in labels if (cells["label"] == lab).any()]:
        part = cells[cells["label"] == label]
        whose = ""
        if "regret_bidders" in part.columns:
            found = sorted({str(b) for b in part["regret_bidders"].dropna() if str(b)})
            whose = f" of {' or '.join(found)} bidders" if found else ""
        sizes = (
            f"{_size_text(part['requests'])} requests; regret{whose} on "
            f"{_size_text(part['regret_requests'])} of them"
        )
        groups.setdefault(sizes, []).append(f"`{label}`")
    return [(", ".join(group), sizes) for sizes, group in groups.items()]


def provenance_section(folder: ResultsFolder) -> list[Block]:
    """What ran, where and at which version: a settings table."""
    e, results = folder.experiment, folder.results
    cells = results.drop_duplicates("cell") if "cell" in results.columns else results
    rows = [
        ("experiment", f"`{e['name']}` ({e['kind']})"),
        ("package version", str(e.get("version", "unknown"))),
        ("git commit", str(e.get("git_commit", "unknown"))),
        ("seeds", ", ".join(str(s) for s in e["seeds"])),
        *((f"cells of {group}", sizes) for group, sizes in cell_sizes(cells, e, folder.labels)),
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
        training = training.reindex([lab for lab in folder.labels if lab in training.index])
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


def results_caption(folder: ResultsFolder) -> str:
    """What a results table's cells are and how their intervals are made (named from the
    summary itself: the figures pooled over requests are those whose cells recorded sums)."""
    text = (
        "Each cell: the mean over seeds and, in small type below it, its 95% interval: "
        "Student-t over seeds (a bootstrap interval undercovers with three seeds), taken on the "
        "log scale for figures that cannot be negative, mean x exp(±t se / mean), and on the "
        "logit scale for rates in [0, 1], so that no bound leaves the figure's support; signed "
        "figures (utility, gains) keep the plain t interval."
    )
    summary = folder.summary
    pooled = list(pd.unique(summary.loc[summary["interval"] == "requests", "metric"]))
    if pooled:
        text += (
            f" Regret figures ({', '.join(metric_label(m) for m in pooled)}) are instead "
            "pooled over the requests of every seed: the ratio of the sums and its 95% interval "
            "over requests (delta method on the log scale; on the logit scale for a share), "
            "because the spread between requests, not between seeds, dominates them. psi is "
            "total regret over total truthful utility."
        )
    return text + " Per-seed values: the folded block under each table, and results.csv."


def results_section(folder: ResultsFolder) -> list[Block]:
    """One compact table per scenario (mean, its interval below it; a column constant over
    every row said once under the table) and the per-seed values in a folded block."""
    blocks: list[Block] = [Heading(2, "Results"), Paragraph(results_caption(folder))]
    seeds = folder.experiment["seeds"]
    for scenario in folder.scenarios:
        metrics = table_metrics(folder, scenario)
        if not metrics:
            continue
        shown = swept_here(folder, [scenario])
        header = [*sweep_header(folder, shown), "mechanism"]
        rows, per_seed = [], []
        for point, at, label in rows_by_point(folder, scenario):
            first = [*sweep_value_cells(point, shown), label_cell(folder, label)]
            found = [summary_row(at, label, m) for m in metrics]
            rows.append(
                [
                    *first,
                    *(interval_cell(r, m, len(seeds)) for r, m in zip(found, metrics, strict=True)),
                ]
            )
            per_seed.append(
                [*first, *(seed_values_cell(r, m) for r, m in zip(found, metrics, strict=True))]
            )
        names = [metric_label(m) for m in metrics]
        table_header, table_rows, constant = drop_constant_columns(
            [*header, *names], rows, len(header)
        )
        blocks += [
            Heading(3, f"{scenario} ({_scenario_kind(folder, scenario)})"),
            Table(table_header, table_rows),
        ]
        if constant:
            blocks.append(Paragraph(constant))
        blocks.append(
            Details(
                f"Per-seed values (seeds {', '.join(str(s) for s in seeds)})",
                [Table([*header, *names], per_seed)],
            )
        )
    return blocks
