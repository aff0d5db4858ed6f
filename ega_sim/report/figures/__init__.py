"""The report's figures (seaborn style, small PNGs): means over seeds with 95% intervals and
the per-seed points; one module per figure, `draw_figures` draws the ones an experiment lists."""

from ega_sim.report.figures.draw import FIGURE_NAMES, DrawnFigure, draw_figures

__all__ = ["FIGURE_NAMES", "DrawnFigure", "draw_figures"]
