"""The equilibrium figure: each scenario's learned bid functions against value, one line per
mechanism, with the closed-form equilibrium dashed where theory gives one. Mechanisms whose
bid functions coincide (VCG and Myerson's threshold both learn truthful bidding) are drawn in
decreasing widths, the first widest, so that each stays visible."""

from __future__ import annotations

from ega_sim.report.figures.common import (
    bottom_legend,
    figure_style,
    hide_unused,
    palette,
    panel_figure,
    pyplot,
    to_png,
)


def bid_function_figure(records: list[dict]) -> bytes:
    """PNG of the bid functions in `records` (result records of `ega-sim equilibrium`)."""
    plt = pyplot()
    scenarios = list(dict.fromkeys(record["scenario"] for record in records))
    mechanisms = list(dict.fromkeys(record["mechanism"] for record in records))
    colors = dict(zip(mechanisms, palette(len(mechanisms)), strict=True))
    widths = {m: max(3.4 - 0.8 * index, 1.0) for index, m in enumerate(mechanisms)}
    with figure_style():
        figure, axes = panel_figure(len(scenarios), 3.2, 2.8)
        for axis, scenario in zip(axes.ravel(), scenarios, strict=False):
            for record in (r for r in records if r["scenario"] == scenario):
                curve, color = record["bid_function"], colors[record["mechanism"]]
                for bids in curve["bids"]:
                    axis.plot(
                        curve["values"], bids, color=color, linewidth=widths[record["mechanism"]]
                    )
                if curve["theory"] is not None:
                    axis.plot(
                        curve["values"],
                        curve["theory"],
                        color=color,
                        linestyle="--",
                        linewidth=1.0,
                        alpha=0.8,
                    )
            axis.plot(curve["values"], curve["values"], color="grey", linewidth=0.6, linestyle=":")
            axis.set_title(scenario)
            axis.set_xlabel("value per click")
            axis.set_ylabel("bid per click")
        hide_unused(axes, len(scenarios))
        handles = [
            plt.Line2D([], [], color=colors[m], linewidth=widths[m], label=m) for m in mechanisms
        ]
        handles.append(plt.Line2D([], [], color="black", linestyle="--", label="theory"))
        handles.append(plt.Line2D([], [], color="grey", linestyle=":", label="truthful"))
        bottom_legend(figure, handles)
        figure.text(
            0.5,
            0.995,
            "Lines that coincide are drawn in decreasing widths. Below a reserve every losing "
            "bid is a best response, so bids there are not pinned down.",
            ha="center",
            va="top",
            fontsize=8,
        )
        figure.tight_layout(rect=(0, 0.08, 1, 0.97))
        return to_png(figure)
