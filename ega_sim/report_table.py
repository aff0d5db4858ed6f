"""Plain-text and JSON Lines rendering of evaluation results for the terminal."""

from __future__ import annotations

import json
import math

from ega_sim.evaluation import EvaluationResult
from ega_sim.intervals import Z95, log_scale_interval

_POSITION_COLUMNS = (
    ("mechanism", "mechanism", "{}"),
    ("revenue/req", "revenue_per_request", "{:.4f}"),
    ("welfare/req", "welfare_per_request", "{:.4f}"),
    ("utility/req", "utility_per_request", "{:.4f}"),
    ("clicks/req", "clicks_per_request", "{:.4f}"),
    ("ads/req", "ads_per_request", "{:.2f}"),
    ("regret_mean", "regret_mean", "{:.5f}"),
    ("regret_max", "regret_max", "{:.4f}"),
    ("psi [95%]", "psi", "{:.4f}"),
    ("IR viol.", "ir_violation_rate", "{:.4f}"),
    ("seconds", "seconds", "{:.2f}"),
)
_MARKET_COLUMNS = (
    ("mechanism", "mechanism", "{}"),
    ("RPM", "rpm", "{:.1f}"),
    ("CTR-poi", "ctr_poi", "{:.4f}"),
    ("CTR-img", "ctr_img", "{:.4f}"),
    ("feed CTR", "feed_ctr_poi", "{:.4f}"),
    ("welfare/req", "welfare_per_request", "{:.4f}"),
    ("GMV/req", "gmv_per_request", "{:.3f}"),
    ("ads/req", "ads_per_request", "{:.2f}"),
    ("regret_mean", "regret_mean", "{:.5f}"),
    ("pairs", "regret_pairs", "{}"),
    ("psi [95%]", "psi", "{:.4f}"),
    ("psi (model) [95%]", "psi_model", "{:.4f}"),
    ("IR viol.", "ir_violation_rate", "{:.4f}"),
    ("seconds", "seconds", "{:.2f}"),
)


def _cell(template: str, value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else "inf"
    return template.format(value)


def _with_interval(text: str, template: str, interval: tuple[float, float]) -> str:
    """The figure followed by its 95% interval over requests, where one is defined."""
    if not all(math.isfinite(bound) for bound in interval):
        return text
    low, high = (template.format(bound) for bound in interval)
    return f"{text} [{low}, {high}]"


def format_table(results: list[EvaluationResult]) -> str:
    """An aligned table, one row per mechanism; revenue (or RPM) with its 95% interval over
    requests on the log scale (intervals.py: inside the support of a nonnegative mean)."""
    if not results:
        return "(no results)"
    first = results[0]
    market = math.isfinite(first.gmv_per_request)
    columns = _MARKET_COLUMNS if market else _POSITION_COLUMNS
    header = [name for name, _, _ in columns]
    rows = []
    for result in results:
        row = [
            _with_interval(_cell(template, getattr(result, key)), template, interval)
            if (interval := getattr(result, f"{key}_interval", None)) is not None
            else _cell(template, getattr(result, key))
            for _, key, template in columns
        ]
        scale = 1000.0 if market else 1.0  # RPM is revenue per 1,000 requests
        revenue = log_scale_interval(
            result.revenue_per_request * scale, result.revenue_per_request_se * scale, Z95
        )
        row[1] = _with_interval(row[1], columns[1][2], revenue)
        rows.append(row)
    widths = [max(len(header[c]), *(len(r[c]) for r in rows)) for c in range(len(header))]
    lines = [
        f"scenario {first.scenario}: {first.requests} requests, seed {first.seed}, "
        f"misreport search '{first.misreport}' of {first.regret_bidders} bidders on "
        f"{first.regret_requests} requests, device {first.device} ([..] are 95% intervals "
        "over requests, on the log scale: never below 0)",
        _align(header, widths),
    ]
    lines.extend(_align(row, widths) for row in rows)
    return "\n".join(lines)


def _align(cells: list[str], widths: list[int]) -> str:
    """First column left-aligned, numbers right-aligned."""
    padded = [cells[0].ljust(widths[0])]
    padded += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return "  ".join(padded)


def to_json_line(result: EvaluationResult) -> str:
    """One JSON object; plain floats, and null where a figure is undefined (NaN or infinite,
    e.g. psi when truthful bidders earn nothing, as under first price: intervals.py)."""
    return json.dumps(finite_or_null(result.to_dict()), allow_nan=False)


def finite_or_null(value):
    """`value` with every non-finite float (in dicts, lists, tuples) as None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value
