"""Streaming evaluate (issue 18): per-chunk running sums give the figures that the whole
per-request series give, up to float summation order.

Tolerance: a float64 sum of n terms of one sign is off by at most n * 2^-53 relative; at
n = 6,000 requests that is 7e-13, so means and ratios are held to 1e-12. Standard errors
pool per-chunk squared deviations (Chan et al.) instead of one two-pass variance: held to
1e-9 relative (their float error is that of a ratio of such sums, magnified at most by
sqrt of the condition number of the variance, here < 1e3)."""

from __future__ import annotations

import math

import pytest
import torch

from ega_sim.evaluation import RunningMoments, _measure_chunk, evaluate_detailed
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.metrics.regret import MisreportSpec
from ega_sim.metrics.regret_summary import REGRET_SAMPLE, sample_positions
from ega_sim.seeding import make_generator
from ega_sim.world.build import make_world

REQUESTS = 6_000


def _close(a: float, b: float, rel: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


@pytest.mark.parametrize(
    ("name", "scenario", "method"),
    [
        ("cascade/gsp", "textbook", "exact"),
        ("myerson/threshold", "bimodal_ironing", "exact"),
        ("cascade/vcg", "lognormal_heavy_tail", "grid"),
    ],
)
def test_streamed_figures_equal_the_whole_series(name: str, scenario: str, method: str) -> None:
    world = make_world(scenario, "cpu")
    result, details = evaluate_detailed(
        name, world, requests=REQUESTS, seed=5, misreport=method, chunk_size=512
    )
    # The whole run as one chunk: per-request series, then means by torch over all of them.
    requests = world.sample_requests(REQUESTS, make_generator(5, "requests"))
    mechanism = make_mechanism(name, world)
    series = _measure_chunk(MisreportSpec(method), mechanism, world, requests, True)
    n = REQUESTS
    for key, field in (("revenue", "revenue_per_request"), ("welfare", "welfare_per_request")):
        assert _close(getattr(result, field), float(series[key].mean()), 1e-12)
        se = float(series[key].std()) / math.sqrt(n)
        assert _close(getattr(result, f"{field}_se"), se, 1e-9)
    pairs = float(series["pairs"].sum())
    assert _close(result.regret_mean, float(series["regret_sum"].sum()) / pairs, 1e-12)
    psi = float(series["regret_sum"].sum()) / float(series["utility_sum"].sum())
    assert _close(result.psi, psi, 1e-12)
    regret, utility = series["regret_pairs"], series["utility_pairs"]
    assert result.regret_max == float(regret.max())
    assert result.regret_pairs == regret.numel()
    tiny = 0.01 * float(utility[utility > 0].mean())
    kept = utility >= tiny
    per_ad = float(torch.where(kept, regret / utility, 0.0).sum()) / float(kept.sum())
    assert _close(result.psi_per_ad, per_ad, 1e-12)
    # The regret sample: REGRET_SAMPLE of the active pairs (regret or utility > 0, row-major)
    # at the positions the run's seed draws, picked here from the whole series by a mask.
    active = ~torch.isnan(regret) & ((regret > 0) | (utility > 0))
    active_regret, active_utility = regret[active], utility[active]
    assert active_regret.numel() > REGRET_SAMPLE  # the sample is a draw, not every pair
    keep = sample_positions(active.sum().item(), REGRET_SAMPLE, make_generator(5, "regret_sample"))
    assert details.regret_sample == tuple(active_regret[keep].tolist())
    assert details.utility_sample == tuple(active_utility[keep].tolist())
    if method == "grid":
        curve = series["curve_sum"].sum(0) / pairs  # [C]
        for streamed, whole in zip(details.curve_utility, curve.tolist(), strict=True):
            assert _close(streamed, whole, 1e-12)


def test_running_moments_match_numpy_and_keep_a_constant_series_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(10_007, generator=generator, dtype=torch.float64) * 3.0 + 1e3
    moments = RunningMoments()
    for part in x.split(777):
        moments.add(part)
    mean, se = moments.mean_and_se()
    assert _close(mean, float(x.mean()), 1e-12)
    assert _close(se, float(x.std()) / math.sqrt(x.numel()), 1e-9)
    constant = RunningMoments()
    for _ in range(50):
        constant.add(torch.full((100,), 1.6, dtype=torch.float64))
    assert constant.mean_and_se()[1] < 1e-15  # rounding noise only, not sqrt(eps) * mean


def _figures(result) -> dict:
    return {k: v for k, v in result.to_dict().items() if k not in ("seconds", "git_commit")}


def test_draw_blocks_and_pair_slices_change_nothing_but_summation_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests drawn in blocks (DRAW_BLOCK) and pair rows read back in slices (PAIR_ROWS):
    with both smaller than the run, every figure equals the one-block, one-slice run up to
    float summation order (1e-12, as above), the pair counts and the regret sample exactly;
    the draws are those of one generator, block after block, whatever the chunk size."""
    import ega_sim.evaluation as evaluation
    import ega_sim.metrics.regret_summary as regret_summary

    world = make_world("textbook", "cpu")
    whole = evaluate_detailed("cascade/gsp", world, requests=REQUESTS, seed=2, chunk_size=512)
    monkeypatch.setattr(evaluation, "DRAW_BLOCK", 1_000)
    monkeypatch.setattr(regret_summary, "PAIR_ROWS", 700)
    # One draw of 6,000 requests differs from six draws of 1,000: the blocked run's own draws.
    generator = make_generator(2, "requests")
    blocks = [world.sample_requests(1_000, generator) for _ in range(REQUESTS // 1_000)]
    results = []
    for chunk_size in (300, 512, 4_096):
        result, details = evaluate_detailed(
            "cascade/gsp", world, requests=REQUESTS, seed=2, chunk_size=chunk_size
        )
        results.append((_figures(result), details))
    first, first_details = results[0]
    for figures, details in results[1:]:
        assert details.regret_sample == first_details.regret_sample
        for key, value in figures.items():
            if isinstance(value, float):
                assert _close(value, first[key], 1e-9 if key.endswith("_se") else 1e-12), key
            elif isinstance(value, tuple):
                for a, b in zip(value, first[key], strict=True):
                    assert _close(a, b, 1e-9), key
            else:
                assert value == first[key], key
    # Truthful revenue of the blocked draws, recomputed by hand from the same requests.
    mechanism = make_mechanism("cascade/gsp", world)
    revenue = torch.cat(
        [
            _measure_chunk(MisreportSpec("none"), mechanism, world, block, False)["revenue"]
            for block in blocks
        ]
    )
    assert _close(first["revenue_per_request"], float(revenue.mean()), 1e-12)
    # Pair slices alone (one draw block): the same figures and sample as one slice.
    monkeypatch.setattr(evaluation, "DRAW_BLOCK", 262_144)
    sliced = evaluate_detailed("cascade/gsp", world, requests=REQUESTS, seed=2, chunk_size=512)
    assert sliced[1].regret_sample == whole[1].regret_sample
    assert len(whole[1].regret_sample) == regret_summary.REGRET_SAMPLE  # the sample was drawn
    for key, value in _figures(sliced[0]).items():
        if isinstance(value, float):
            assert _close(value, _figures(whole[0])[key], 1e-12), key


def test_sample_positions_draws_every_subset_equally_often() -> None:
    """Floyd's sampling: each of the C(6, 3) = 20 subsets has probability 1/20; over 24,000
    draws each count is 1,200 +- 4.5 SE (SE = sqrt(24,000 p (1 - p)) = 33.8)."""
    from collections import Counter

    from ega_sim.metrics.regret_summary import sample_positions

    generator = torch.Generator().manual_seed(11)
    draws = 24_000
    counts = Counter(tuple(sample_positions(6, 3, generator).tolist()) for _ in range(draws))
    assert len(counts) == 20
    se = math.sqrt(draws * (1 / 20) * (19 / 20))
    assert all(abs(n - draws / 20) <= 4.5 * se for n in counts.values()), counts
    big = sample_positions(10**12, 2_000, generator)  # no [count] tensor is ever made
    assert big.numel() == 2_000 and bool((big.diff() > 0).all()) and int(big[-1]) < 10**12
    assert sample_positions(5, 5, generator).tolist() == [0, 1, 2, 3, 4]
    assert sample_positions(5, 0, generator).numel() == 0
    with pytest.raises(ValueError, match="sample size"):
        sample_positions(3, 4, generator)
