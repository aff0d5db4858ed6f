"""Evaluate a mechanism on a scenario: requests -> truthful bids -> outcomes -> metrics.

`evaluate` draws the requests from the run's seed, runs the mechanism on truthful bids in
chunks, measures outcomes under the ground-truth click model, measures each bidder's ex-post
regret (re-running the mechanism on misreports), and returns per-request means with standard
errors as an `EvaluationResult`. Memory is flat in the number of requests: requests are drawn
in blocks of DRAW_BLOCK (one generator, block after block, so the draws never depend on the
chunk size, and a run of up to DRAW_BLOCK requests draws exactly what one draw of them all
would), chunks are summed as they are measured (running moments and ratio sums), and the
per-pair rows that the per-ad psi and the regret sample read at the end go to a temporary
file (metrics/regret_summary.py). Feed markets add image clicks, feed CTR, GMV and the regret
the mechanism's own CTR model sees.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.scenario import ScenarioConfig
from ega_sim.intervals import defined_ratio
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.metrics.outcomes import measure_outcome
from ega_sim.metrics.regret import MisreportSpec
from ega_sim.metrics.regret_summary import (
    RATIO_FIGURES,
    RegretAccumulator,
    RegretSummary,
    regret_series,
)
from ega_sim.progress import Progress, track
from ega_sim.provenance import provenance
from ega_sim.seeding import make_generator
from ega_sim.threads import sets_threads
from ega_sim.world.build import World, as_world
from ega_sim.world.market_world import FeedMarketWorld

# Requests per mechanism call. Small chunks stay in the CPU caches (measured: 4,096 requests of
# n = 10 run 1.4x faster than 100,000 in one call, 2.7x with exact regret); a GPU wants large ones.
CPU_CHUNK = 4_096
CUDA_CHUNK = 65_536
# Requests drawn at a time (a multiple of both chunk sizes): about 5 MB of draws at n = 10.
DRAW_BLOCK = 65_536


# The per-request series of `_measure_chunk` summed into RunningMoments; the rest are regret's.
PER_REQUEST = (
    "revenue",
    "welfare",
    "utility",
    "clicks",
    "ads",
    "ir",
    "img_clicks",
    "feed_clicks",
    "gmv",
    "model_clicks",
    "model_revenue",
)


def default_chunk_size(device: torch.device) -> int:
    return CUDA_CHUNK if device.type == "cuda" else CPU_CHUNK


@dataclass(frozen=True)
class EvaluationResult:
    """Per-request means over a run, their standard errors (_se) and IC figures.

    Clicks are POI clicks (what advertisers pay for); ctr_poi and ctr_img are per ad impression;
    feed_ctr_poi is per shown item, ads and organic; figures a scenario kind does not have
    (image clicks and GMV in a position auction) are NaN, null in JSON, and so is every ratio
    whose denominator is 0 (ctr_poi, ad_load, psi, ... when no ad is ever shown).
    """

    mechanism: str
    scenario: str
    requests: int
    seed: int
    misreport: str
    device: str
    regret_requests: int  # regret is measured on the first regret_requests requests
    revenue_per_request: float
    revenue_per_request_se: float
    rpm: float  # revenue per 1,000 requests
    welfare_per_request: float  # advertiser value of the clicks
    welfare_per_request_se: float
    utility_per_request: float
    utility_per_request_se: float
    clicks_per_request: float  # ad clicks
    clicks_per_request_se: float
    ads_per_request: float
    ad_load: float  # ads per shown item
    ctr_poi: float
    ctr_img: float
    feed_ctr_poi: float
    gmv_per_request: float
    regret_bidders: str  # whose misreports were searched: "all" candidates or the "shown" ads
    regret_pairs: int  # (request, bidder) pairs searched: what the regret figures rest on
    regret_mean: float  # mean over the searched (request, bidder) pairs
    regret_mean_se: float  # over requests (a request's bidders are not independent)
    regret_max: float
    psi: float  # total regret / total truthful utility
    psi_per_ad: float  # mean of regret / utility over ads whose utility is not tiny
    regret_mean_model: float  # the same under the mechanism's own CTR model
    psi_model: float
    # 95% intervals over requests [low, high] (intervals.py: never below 0; NaN: undefined)
    regret_mean_interval: tuple[float, float]
    psi_interval: tuple[float, float]
    psi_per_ad_interval: tuple[float, float]
    regret_mean_model_interval: tuple[float, float]
    psi_model_interval: tuple[float, float]
    ir_violation_rate: float  # share of shown ads whose price per click exceeds their bid
    # share of the searched ads whose allocation is not monotone in their own bid (a worse
    # position or a lower own pCTR at a higher bid), where the regret search sees it: NaN else
    non_monotone_rate: float
    non_monotone_rate_interval: tuple[float, float]  # on the logit scale (intervals.py)
    ctr_poi_model: float  # ctr_poi as the mechanism's own CTR model predicts it
    rpm_model: float  # rpm with the model's clicks instead of the truth's
    seconds: float
    threads: int  # torch's CPU threads during the run (float sums depend on it)
    version: str
    git_commit: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationDetails:
    """What a report draws beyond the means: the utility curve of a unilateral misreport by a
    fixed multiplier (grid or dense search only), and a sample of per-pair regrets."""

    multipliers: tuple[float, ...]  # empty when the search has no fixed multipliers
    curve_utility: tuple[float, ...]  # mean over (request, bidder) of the deviator's utility
    curve_utility_se: tuple[float, ...]  # over requests
    regret_sample: tuple[float, ...]  # (request, bidder) pairs with regret or utility > 0
    utility_sample: tuple[float, ...]  # their truthful utility
    ratio_sums: dict  # figure -> RatioSums of its per-request sums, to pool runs


@dataclass
class RunningMoments:
    """n, sum and sum of squared deviations (float64) of a per-request series, added chunk by
    chunk: its mean and standard error without keeping the series (streaming evaluate, issue
    18). Each chunk's squared deviations are summed about its own mean and chunks are pooled by
    Chan, Golub and LeVeque's update (1979), so a constant series keeps a standard error of 0
    (a plain sum of squares would leave ~1e-10 of cancellation noise)."""

    n: int = 0
    total: float = 0.0
    deviations: float = 0.0  # sum of (x - mean)^2

    def add(self, per_request: torch.Tensor) -> None:
        add_series({"x": self}, {"x": per_request})

    def add_chunk(
        self, size: int, chunk_mean: float, chunk_total: float, chunk_deviations: float
    ) -> None:
        """Pool a chunk of `size` values given its mean, sum and squared deviations about its
        mean (what `add_series` computes)."""
        if self.n:
            delta = chunk_mean - self.mean
            chunk_deviations += delta * delta * self.n * size / (self.n + size)
        self.n += size
        self.total += chunk_total
        self.deviations += chunk_deviations

    @property
    def mean(self) -> float:
        return self.total / self.n

    def mean_and_se(self) -> tuple[float, float]:
        """The mean and its standard error (sample variance over n - 1; NaN below 2)."""
        if self.n < 2:
            return self.mean, math.nan
        return self.mean, math.sqrt(self.deviations / (self.n - 1) / self.n)


def add_series(moments: dict[str, RunningMoments], series: dict[str, torch.Tensor]) -> None:
    """Add each chunk series [B] to `moments[name]` (made if missing), with one reduction of
    the stacked [S, B] series per statistic instead of S of them (the same sums, bit for bit,
    as one series at a time)."""
    stacked = torch.stack([x.double() for x in series.values()])  # [S, B]
    size = stacked.shape[1]
    if size == 0:
        return
    chunk_mean = stacked.mean(1)  # [S]
    deviations = ((stacked - chunk_mean.unsqueeze(1)) ** 2).sum(1)  # [S]
    summary = zip(chunk_mean.tolist(), stacked.sum(1).tolist(), deviations.tolist(), strict=True)
    for name, (mean, total, squares) in zip(series, summary, strict=True):
        moments.setdefault(name, RunningMoments()).add_chunk(size, mean, total, squares)


def _measure_chunk(
    spec: MisreportSpec, mechanism, world, batch, with_regret: bool
) -> dict[str, torch.Tensor]:
    """Per-request series of one chunk (regret per request: mean over its bidders)."""
    bids = batch.value_per_click  # truthful
    context = mechanism.prepare(batch) if hasattr(mechanism, "prepare") else None
    extra = {} if context is None else {"context": context}
    outcome = mechanism.run(batch, bids, **extra)
    market = isinstance(world, FeedMarketWorld)
    if market:
        clicks = world.list_clicks(batch, outcome.allocation)
        ad_clicks = clicks.poi_clicks
    else:
        ad_clicks = world.expected_clicks(batch, outcome.allocation)
    measured = measure_outcome(batch, bids, outcome, ad_clicks)
    shown = outcome.allocation.shown if market else None
    nan = torch.full_like(measured.revenue, math.nan)
    series = {
        "revenue": measured.revenue,
        "welfare": measured.welfare,
        "utility": measured.utility.sum(1),
        "clicks": measured.clicks if not market else torch.where(shown, ad_clicks, 0.0).sum(1),
        "ads": measured.ad_count,
        "ir": measured.ir_violations,
        "img_clicks": torch.where(shown, clicks.img_clicks, 0.0).sum(1) if market else nan,
        "feed_clicks": clicks.poi_clicks.sum(1) if market else measured.clicks,
        "gmv": clicks.gmv.sum(1) if market else nan,
        "model_clicks": measured.model_clicks,
        "model_revenue": measured.model_revenue,
    }
    if with_regret:
        series |= regret_series(
            spec, mechanism, world, batch, bids, outcome, measured.utility, context, market
        )
    return series


def evaluate(mechanism, world: World | ScenarioConfig | str | Path, **options) -> EvaluationResult:
    """Run `mechanism` (a name like "cascade/vcg", or a mechanism) on truthful requests of a
    world (or of a scenario: a config, a path or a name); the options are
    `evaluate_detailed`'s."""
    return evaluate_detailed(mechanism, world, **options)[0]


@sets_threads
def evaluate_detailed(
    mechanism,
    world: World | ScenarioConfig | str | Path,
    *,
    requests: int = 10_000,
    seed: int = 0,
    misreport: str | MisreportSpec = "exact",
    regret_requests: int | None = None,
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    checkpoint: str | Path | None = None,
    progress: Progress = False,
    threads: int | None = 1,
) -> tuple[EvaluationResult, EvaluationDetails]:
    """`evaluate`, with the utility curve and a regret sample. A scenario's world is built on
    `device` (default the CPU; a world stays on its own). `checkpoint` is where a learned
    mechanism given by name loads its trained parts; regret is measured on the first
    `regret_requests` requests (all by default: a search that re-runs beam search is costly).
    `threads`: torch's CPU threads for the call (default 1, which never oversubscribes the
    cores; None keeps the caller's setting), restored afterwards and recorded in the result;
    ValueError unless an integer >= 1 or None. `progress`: see ega_sim/progress.py."""
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests: expected an integer >= 1, got {requests!r}")
    regret_requests = requests if regret_requests is None else regret_requests
    if isinstance(regret_requests, bool) or not isinstance(regret_requests, int):
        raise ValueError(f"regret_requests: expected an integer >= 1, got {regret_requests!r}")
    if regret_requests < 1:
        raise ValueError(f"regret_requests: expected an integer >= 1, got {regret_requests!r}")
    regret_requests = min(regret_requests, requests)
    spec = misreport if isinstance(misreport, MisreportSpec) else MisreportSpec(method=misreport)
    world = as_world(world, device)
    scenario, device = world.config, world.device
    if isinstance(mechanism, str):
        mechanism = make_mechanism(mechanism, world, checkpoint=checkpoint)
    chunk_size = default_chunk_size(device) if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")

    started = time.perf_counter()
    generator = make_generator(seed, "requests")
    with_regret = spec.method != "none"
    # Chunks end where the regret requests and the draw blocks end, so a chunk is measured
    # with or without regret and lies in one block.
    blocks = range(0, requests, DRAW_BLOCK)
    bounds = sorted({*range(0, requests, chunk_size), *blocks, regret_requests, requests})
    # Running sums, not per-request series: memory does not grow with the chunks measured.
    moments: dict[str, RunningMoments] = {}
    with RegretAccumulator(regret_requests) as regrets:
        block, block_start = None, 0
        chunks = list(itertools.pairwise(bounds))
        for start, stop in track(chunks, mechanism.name, progress=progress, unit="chunk"):
            if start % DRAW_BLOCK == 0:  # the next block of draws (the last may be short)
                block = None  # let the previous block go first
                block_start = start
                size = min(DRAW_BLOCK, requests - start)
                block = world.sample_requests(size, generator)
            batch = block.slice(start - block_start, stop - block_start)
            regret_here = with_regret and start < regret_requests
            series = _measure_chunk(spec, mechanism, world, batch, regret_here)
            add_series(moments, {key: series.pop(key) for key in PER_REQUEST})
            if regret_here:
                regrets.add(series)
        del block, batch, series  # the draws: let them go before the summary
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        summary = regrets.summary(spec, mechanism, seed) if with_regret else RegretSummary()

    revenue, revenue_se = moments["revenue"].mean_and_se()
    welfare, welfare_se = moments["welfare"].mean_and_se()
    utility, utility_se = moments["utility"].mean_and_se()
    clicks, clicks_se = moments["clicks"].mean_and_se()
    total = {key: part.total for key, part in moments.items()}
    ads = total["ads"]
    # A feed list fills every slot; a position auction shows only its ads.
    shown_items = requests * scenario.n_slots if isinstance(scenario, FeedMarketConfig) else ads
    figures = {name: summary.figures.get(name, math.nan) for name in (*RATIO_FIGURES, "regret_max")}
    intervals = {
        f"{name}_interval": summary.intervals.get(name, (math.nan, math.nan))
        for name in RATIO_FIGURES
    }
    result = EvaluationResult(
        mechanism=mechanism.name,
        scenario=scenario.name,
        requests=requests,
        seed=seed,
        misreport=spec.method,
        device=str(device),
        regret_requests=regret_requests if with_regret else 0,
        revenue_per_request=revenue,
        revenue_per_request_se=revenue_se,
        rpm=1000.0 * revenue,
        welfare_per_request=welfare,
        welfare_per_request_se=welfare_se,
        utility_per_request=utility,
        utility_per_request_se=utility_se,
        clicks_per_request=clicks,
        clicks_per_request_se=clicks_se,
        ads_per_request=ads / requests,
        ad_load=defined_ratio(ads, shown_items),
        ctr_poi=defined_ratio(total["clicks"], ads),
        ctr_img=defined_ratio(total["img_clicks"], ads),
        feed_ctr_poi=defined_ratio(total["feed_clicks"], shown_items),
        gmv_per_request=moments["gmv"].mean,
        regret_bidders=summary.bidders,
        regret_pairs=summary.pairs,
        regret_mean_se=summary.figures.get("regret_mean_se", math.nan),
        **figures,
        **intervals,
        ir_violation_rate=defined_ratio(total["ir"], ads),
        ctr_poi_model=defined_ratio(total["model_clicks"], ads),
        rpm_model=1000.0 * moments["model_revenue"].mean,
        seconds=seconds,
        threads=torch.get_num_threads(),
        **provenance(),
    )
    details = EvaluationDetails(
        spec.multipliers if summary.curve else (),
        summary.curve,
        summary.curve_se,
        summary.regret_sample,
        summary.utility_sample,
        {name: sums.to_dict() for name, sums in summary.sums.items()},
    )
    return result, details
