"""The report of an experiment: tables, figures, report.md and report.html, drawn from the
results folder alone (so `ega-sim report DIR` can redraw it).

Its names load on first use (PEP 562), so importing a leaf such as `ega_sim.report.names`
does not pull in pandas, scipy and matplotlib."""

from __future__ import annotations

from ega_sim.lazy import lazy_getattr

_EXPORTS = {
    "format_value": "ega_sim.report.formats",
    "report_lines": "ega_sim.report.write",
    "write_report": "ega_sim.report.write",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
