"""The report of an experiment: tables, figures, report.md and report.html, drawn from the
results folder alone (so `ega-sim report DIR` can redraw it).

Its names load on first use (PEP 562), so importing a leaf such as `ega_sim.report.names`
does not pull in pandas, scipy and matplotlib."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "format_value": "ega_sim.report.formats",
    "report_lines": "ega_sim.report.write",
    "write_report": "ega_sim.report.write",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ega_sim.report' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
