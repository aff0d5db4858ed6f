"""The equilibrium study's outputs: one JSON line per study, a Markdown table of revenue,
welfare, utility and epsilon at truthful bids and at equilibrium side by side, and the
bid-function figure, all written atomically into the --out folder."""

from __future__ import annotations

import json
from pathlib import Path

from ega_sim.atomic import write_bytes_atomic, write_text_atomic

COLUMNS = ("revenue", "welfare", "utility")


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _percent(record: dict, name: str) -> str:
    value, low, high = (record.get(f"{name}{end}") for end in ("", "_low", "_high"))
    if value is None:
        return "n/a"
    interval = "" if low is None else f" [{100 * low:.2f}, {100 * high:.2f}]"
    return f"{100 * value:.2f}%{interval}"


def _epsilon(record: dict, prefix: str) -> str:
    """The max over advertisers; with a dense certificate the pooled ratio first (the max
    over a feed market's many advertisers is that of one that earns little)."""
    worst = _percent(record, f"{prefix}epsilon_max")
    if record.get(f"{prefix}epsilon_pooled") is None:
        return worst
    return f"pooled {_percent(record, f'{prefix}epsilon_pooled')}; max {worst}"


def table_markdown(records: list[dict]) -> str:
    """Per study: each figure per request at truthful bids -> at equilibrium, and epsilon
    (max over advertisers, %, with its 95% interval)."""
    head = ["scenario", "mechanism", *COLUMNS, "epsilon truthful", "epsilon equilibrium", "steps/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for record in records:
        cells = [record["scenario"], record["mechanism"]]
        for name in COLUMNS:
            cells.append(f"{_number(record[f'truthful_{name}'])} -> {_number(record[name])}")
        cells += [
            _epsilon(record, "truthful_"),
            _epsilon(record, ""),
            _number(record["steps_per_second"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(records: list[dict], out: Path) -> list[Path]:
    """equilibrium.jsonl, equilibrium.md and bid_functions.png in `out`."""
    from ega_sim.report.figures.equilibrium import bid_function_figure

    out = Path(out)
    lines = "".join(json.dumps(record, allow_nan=False) + "\n" for record in records)
    return [
        write_text_atomic(out / "equilibrium.jsonl", lines),
        write_text_atomic(out / "equilibrium.md", table_markdown(records)),
        write_bytes_atomic(out / "bid_functions.png", bid_function_figure(records)),
    ]
