"""Alignment checkpoints: the kept checkpoint is the platform's choice (most bid-weighted clicks
by the reward model on held-out logged requests within the likelihood drift tolerance), the
kept generator is that checkpoint's, and the truth curve is measured but never chooses."""

from __future__ import annotations

import pytest
import torch

import ega_sim
from ega_sim.config import load_scenario
from ega_sim.generative import alignment
from ega_sim.generative.config import AlignmentConfig
from ega_sim.logs.store import read_logs
from ega_sim.report.figures.alignment import alignment_curve_png
from ega_sim.seeding import make_generator


def _point(step, nll, model, truth):
    return {
        "step": step,
        "held_out_nll": nll,
        "bid_rpm_model_logged": model,
        "bid_rpm_truth_world": truth,
    }


def test_the_choice_is_the_best_model_figure_within_the_drift_tolerance():
    curve = [
        _point(0, 2.00, 100.0, 90.0),
        _point(10, 2.05, 120.0, 95.0),  # drift 2.5%: allowed
        _point(20, 2.20, 150.0, 99.0),  # drift 10%: out at 5%, in at 20%
        _point(30, 2.08, 110.0, 200.0),  # the truth's best never chooses
    ]
    assert alignment._choose(curve, 0.05) == 10
    assert alignment._choose(curve, 0.20) == 20
    assert alignment._choose(curve, 0.0) == 0  # only the start is within no drift


def test_alignment_config_is_validated():
    with pytest.raises(ValueError, match="checkpoints"):
        AlignmentConfig(checkpoints=-1)
    with pytest.raises(ValueError, match="held_out_share"):
        AlignmentConfig(held_out_share=1.0)
    with pytest.raises(ValueError, match="drift_tolerance"):
        AlignmentConfig(drift_tolerance=-0.1)


def test_checkpoints_keep_the_chosen_generator_and_draw_the_curve(feed_small_ega, feed_small_logs):
    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    world = ega_sim.make_world(scenario)
    mechanism = ega_sim.make_mechanism("ega/gsp", world, checkpoint=feed_small_ega)
    config = AlignmentConfig(
        steps=4, batch_size=8, learning_rate=5e-2, checkpoints=2, curve_requests=16
    )
    report = alignment.align(mechanism, logs, config, seed=3, world=world)

    curve = report["curve"]
    assert [point["step"] for point in curve] == [0, 2, 4]
    assert report["chosen_step"] == alignment._choose(curve, config.drift_tolerance)
    for point in curve:
        for key in ("bid_rpm_model_world", "bid_rpm_truth_world", "ctr_poi_truth_world"):
            assert key in point
    # The generator kept is the chosen checkpoint's: its lists on the curve's requests earn
    # what that checkpoint earned there (a later or earlier generator differs at lr 5e-2).
    requests = world.sample_requests(16, make_generator(3, "alignment", "curve"))
    again = alignment._list_figures(mechanism, requests, world, "world")
    kept = next(p for p in curve if p["step"] == report["chosen_step"])
    assert again["bid_rpm_truth_world"] == pytest.approx(kept["bid_rpm_truth_world"], rel=1e-6)
    assert again["bid_rpm_model_world"] == pytest.approx(kept["bid_rpm_model_world"], rel=1e-6)
    assert all(p.requires_grad for p in mechanism.parts.generator.parameters())

    png = alignment_curve_png(report)
    assert png.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="checkpoints > 0"):
        alignment_curve_png({"curve": [], "chosen_step": 0})


def test_without_checkpoints_the_last_step_is_kept(feed_small_ega, feed_small_logs):
    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    mechanism = ega_sim.make_mechanism("ega/gsp", scenario, checkpoint=feed_small_ega)
    before = [p.detach().clone() for p in mechanism.parts.generator.parameters()]
    report = alignment.align(mechanism, logs, AlignmentConfig(steps=2, batch_size=8), seed=1)
    assert report["chosen_step"] == 2 and report["curve"] == []
    after = list(mechanism.parts.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_an_early_choice_restores_that_checkpoint(feed_small_ega, feed_small_logs, monkeypatch):
    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    mechanism = ega_sim.make_mechanism("ega/gsp", scenario, checkpoint=feed_small_ega)
    start = {k: v.clone() for k, v in mechanism.parts.generator.state_dict().items()}
    monkeypatch.setattr(alignment, "_choose", lambda curve, tolerance: 0)
    config = AlignmentConfig(steps=3, batch_size=8, learning_rate=5e-2, checkpoints=3)
    report = alignment.align(mechanism, logs, config, seed=2)
    assert report["chosen_step"] == 0 and len(report["curve"]) == 4
    kept = mechanism.parts.generator.state_dict()
    assert all(torch.equal(kept[k], start[k]) for k in start)  # the aligned steps are undone
