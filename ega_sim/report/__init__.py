"""The report of an experiment: tables, figures, report.md and report.html, drawn from the
results folder alone (so `ega-sim report DIR` can redraw it)."""

from ega_sim.report.formats import format_value
from ega_sim.report.write import report_lines, write_report

__all__ = ["format_value", "report_lines", "write_report"]
