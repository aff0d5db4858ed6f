"""The alignment curve: the generator's bid-weighted clicks and CTR-poi at each alignment
checkpoint, by the reward model and (when a world was given) by the truth, with the checkpoint
kept marked. Drawn from an alignment stage report (its `curve` and `chosen_step`)."""

from __future__ import annotations

from ega_sim.report.figures.common import LEGEND_FONTSIZE, figure_style, pyplot, to_png

PANELS = (
    ("bid_rpm", "bid-weighted clicks / 1,000 requests"),
    ("ctr_poi", "CTR-poi"),
)


def alignment_curve_png(report: dict) -> bytes:
    """PNG of an alignment report's curve: on the world's requests by the reward model (dashed)
    and the truth (solid) when measured there, else on the held-out logged requests by the
    reward model. Raises ValueError if the report has no curve (checkpoints = 0)."""
    curve = report.get("curve") or []
    if not curve:
        raise ValueError("the alignment report has no curve: train with alignment.checkpoints > 0")
    where = "world" if "bid_rpm_truth_world" in curve[0] else "logged"
    steps = [point["step"] for point in curve]
    plt = pyplot()
    with figure_style():
        figure, axes = plt.subplots(1, len(PANELS), figsize=(8.0, 3.4))
        for axis, (metric, title) in zip(axes, PANELS, strict=True):
            for source, style in (("model", "--"), ("truth", "-")):
                key = f"{metric}_{source}_{where}"
                if key in curve[0]:
                    values = [point[key] for point in curve]
                    axis.plot(steps, values, style, marker="o", label=f"{source} ({where})")
            axis.axvline(report["chosen_step"], color="grey", linewidth=1)
            axis.set_xlabel("alignment step (grey: the checkpoint kept)")
            axis.set_title(title)
            axis.legend(fontsize=LEGEND_FONTSIZE)
        figure.suptitle("Alignment: the reward model's view against the truth")
        figure.tight_layout()
    return to_png(figure)
