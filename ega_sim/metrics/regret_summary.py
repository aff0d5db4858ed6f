"""From misreports to the regret figures of a run: per-request series of each chunk, added
into running sums (RegretAccumulator), then the figures with their 95% intervals over
requests.

Which bidders are searched: every candidate (`all`), or, the paper's way for generated lists,
the ads shown at truthful bids (`shown`, the default of the generative mechanisms, whose every
misreport re-runs beam search). A pair not searched has no regret (NaN), not a regret of 0, and
counts in no figure. Every figure is a ratio of per-request sums (intervals.py): the mean
regret per searched (request, bidder) pair, psi = total regret / total truthful utility, the
paper's per-ad psi, and the same under the mechanism's own CTR model.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ega_sim.intervals import RatioSums, figure_interval
from ega_sim.mechanisms.base import per_bidder
from ega_sim.metrics.market import model_regret
from ega_sim.metrics.regret import MisreportSpec, misreport_utility, regret_of
from ega_sim.seeding import make_generator

REGRET_SAMPLE = 2_000
TINY_UTILITY_SHARE = 0.01
RATIO_FIGURES = (
    "regret_mean",
    "psi",
    "psi_per_ad",
    "regret_mean_model",
    "psi_model",
    "non_monotone_rate",
)


def searched_kind(spec: MisreportSpec, mechanism) -> str:
    """Whose misreports are searched, "all" or "shown": the spec's bidders, or by default the
    mechanism's (module docstring)."""
    if spec.bidders == "default":
        return getattr(mechanism, "regret_bidders", "all")
    return spec.bidders


def searched_bidders(spec: MisreportSpec, mechanism, outcome, n_bidders: int) -> torch.Tensor:
    """[B, N] bool: the bidders whose misreports are searched (module docstring)."""
    if searched_kind(spec, mechanism) == "all":
        return torch.ones(
            (outcome.slot_bidder.shape[0], n_bidders),
            dtype=torch.bool,
            device=outcome.slot_bidder.device,
        )
    shown = outcome.allocation.shown.to(torch.uint8)
    return per_bidder(shown, outcome.slot_bidder, n_bidders).bool()


def regret_series(
    spec: MisreportSpec, mechanism, world, requests, bids, outcome, utility, context, market
) -> dict[str, torch.Tensor]:
    """Per-request regret series of one chunk; `utility` [B, N] is the truthful utility under
    the world's click model. Pair series ([B, N], NaN where not searched) feed the per-ad psi
    and the regret sample; sums over pairs ([B]) feed every other figure."""
    everyone = searched_kind(spec, mechanism) == "all"  # then no NaN, nothing masked
    searched = None if everyone else searched_bidders(spec, mechanism, outcome, bids.shape[1])
    extra = {} if context is None else {"context": context}
    search = misreport_utility(
        spec,
        mechanism,
        world,
        requests,
        bids,
        searched=searched,
        with_model=True,
        outcome=outcome,
        **extra,
    )
    deviation, deviation_model = search.utility, search.utility_model
    regret = regret_of(deviation, utility)  # [B, N], NaN: not searched
    if market and hasattr(mechanism, "ad_auction"):  # the cascade: its separable ad auction
        regret_model, utility_model = model_regret(spec, mechanism, requests, bids, context)
        if not everyone:
            regret_model = torch.where(searched, regret_model, torch.nan)
    elif market:  # under the allocation's own CTRs (the reward model, for ega and gr)
        shown = outcome.allocation.shown
        value = bids.gather(1, outcome.slot_bidder.clamp(min=0))
        margin = torch.where(shown, value - outcome.price_per_click, 0.0)
        slot_utility = margin * torch.where(shown, outcome.allocation.slot_ctr_model, 0.0)
        utility_model = per_bidder(slot_utility, outcome.slot_bidder, bids.shape[1])
        regret_model = regret_of(deviation_model, utility_model)
    else:  # a position auction's mechanism knows the true click model
        regret_model, utility_model = regret, utility
    if everyone:  # where(searched, x, y) is x: the same numbers without the masks
        batch, n_bidders = utility.shape
        pairs = torch.full((batch,), float(n_bidders), dtype=regret.dtype, device=regret.device)
        utility_pairs, utility_searched, utility_model_searched = utility, utility, utility_model
    else:
        pairs = searched.to(regret.dtype).sum(1)
        utility_pairs = torch.where(searched, utility, torch.nan)
        utility_searched = torch.where(searched, utility, 0.0)
        utility_model_searched = torch.where(searched, utility_model, 0.0)
    regret_sum, utility_sum = regret.nansum(1), utility_searched.sum(1)
    series = {
        "regret_pairs": regret,
        "utility_pairs": utility_pairs,
        "pairs": pairs,
        "regret_sum": regret_sum,
        "utility_sum": utility_sum,
        # a position auction's model is the truth: the same series, summed once
        "regret_model_sum": regret_sum if regret_model is regret else regret_model.nansum(1),
        "utility_model_sum": (
            utility_sum if utility_model is utility else utility_model_searched.sum(1)
        ),
    }
    if search.monotone is not None:  # the own-bid responses the search saw
        seen = ~torch.isnan(search.monotone)
        series["responses"] = seen.to(regret.dtype).sum(1)
        series["non_monotone"] = torch.where(seen, 1.0 - search.monotone, 0.0).sum(1)
    if spec.multipliers:  # fixed multipliers: utility against multiplier is a curve
        if not everyone:
            deviation = torch.where(searched.unsqueeze(2), deviation, 0.0)
        series["curve_sum"] = deviation.sum(1)  # [B, C]
    return series


def ratio_sums(x: torch.Tensor, y: torch.Tensor) -> RatioSums:
    """RatioSums of per-request numerators x [B] and denominators y [B] (float64 sums)."""
    x, y = x.double(), y.double()
    return RatioSums(
        int(x.numel()),
        float(x.sum()),
        float(y.sum()),
        float((x * x).sum()),
        float((y * y).sum()),
        float((x * y).sum()),
    )


@dataclass(frozen=True)
class RegretSummary:
    """A run's regret figures (NaN without a regret search)."""

    bidders: str = "none"  # which bidders were searched: shown, all (or none)
    pairs: int = 0  # (request, bidder) pairs searched
    figures: dict[str, float] = field(default_factory=dict)  # regret_mean, regret_max, psi, ...
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    sums: dict[str, RatioSums] = field(default_factory=dict)  # to pool runs (intervals.py)
    curve: tuple[float, ...] = ()  # mean utility of a deviator at each fixed multiplier
    curve_se: tuple[float, ...] = ()
    regret_sample: tuple[float, ...] = ()
    utility_sample: tuple[float, ...] = ()


# figure -> (numerator, denominator) series of regret_series whose per-request sums it pools
_STREAMED = {
    "regret_mean": ("regret_sum", "pairs"),
    "psi": ("regret_sum", "utility_sum"),
    "regret_mean_model": ("regret_model_sum", "pairs"),
    "psi_model": ("regret_model_sum", "utility_model_sum"),
    "non_monotone_rate": ("non_monotone", "responses"),
}
PAIR_ROWS = 65_536  # requests per slice of pair rows read back at the end


class RegretAccumulator:
    """A run's regret series added chunk by chunk (`add`), kept as running RatioSums, and the
    two [N] pair rows of each request (regret, truthful utility: 16 N bytes) that the per-ad
    psi and the regret sample need, written to two temporary files: memory stays flat in the
    requests, and `summary` reads the rows back in slices of PAIR_ROWS requests. Use it as a
    context manager (the files go when the block ends) or call `close`."""

    def __init__(self, requests: int):
        self.requests = requests
        self.filled = 0
        self.sums: dict[str, RatioSums] = {}
        self.curve: list[RatioSums] = []
        self.bidders = 0  # N, once a chunk has come
        self.dtype: torch.dtype | None = None
        # [R, N] regret and utility rows; closed by close() / the with block
        self._regret = tempfile.TemporaryFile(prefix="ega-sim-regret-")  # noqa: SIM115
        self._utility = tempfile.TemporaryFile(prefix="ega-sim-utility-")  # noqa: SIM115

    def __enter__(self) -> RegretAccumulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._regret.close()
        self._utility.close()

    def add(self, series: dict[str, torch.Tensor]) -> None:
        """One chunk's regret_series; chunks come in request order."""
        for name, (x, y) in _STREAMED.items():
            if x in series:
                part = ratio_sums(series[x], series[y])
                self.sums[name] = self.sums[name] + part if name in self.sums else part
        if "curve_sum" in series:
            columns = [ratio_sums(c, series["pairs"]) for c in series["curve_sum"].T]
            self.curve = (
                columns
                if not self.curve
                else [a + b for a, b in zip(self.curve, columns, strict=True)]
            )
        regret, utility = series["regret_pairs"], series["utility_pairs"]  # [B, N]
        self.bidders, self.dtype = regret.shape[1], regret.dtype
        self._regret.write(regret.cpu().contiguous().numpy().tobytes())
        self._utility.write(utility.cpu().contiguous().numpy().tobytes())
        self.filled += regret.shape[0]

    def _slices(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pair rows back, (regret, utility) [<= PAIR_ROWS, N] at a time, in order; each
        slice is read into the same two buffers, so it holds only until the next one."""
        self._regret.seek(0)
        self._utility.seek(0)
        buffers = torch.empty((2, min(PAIR_ROWS, self.filled), self.bidders), dtype=self.dtype)
        for start in range(0, self.filled, PAIR_ROWS):
            count = min(PAIR_ROWS, self.filled - start)
            regret, utility = buffers[:, :count]
            for rows, file, name in (
                (regret, self._regret, "regret"),
                (utility, self._utility, "utility"),
            ):
                if file.readinto(rows.numpy()) != rows.numel() * rows.element_size():
                    raise OSError(f"the temporary file of {name} pair rows was cut short")
            yield regret, utility

    def summary(self, spec: MisreportSpec, mechanism, seed: int) -> RegretSummary:
        """The run's figures (RegretSummary) from what was added."""
        bidders = searched_kind(spec, mechanism)
        # First pass: the searched pairs, their largest regret, and the mean positive utility
        # that sets the per-ad psi's "tiny" utility.
        pairs = count = active = 0
        positive_sum, regret_max = 0.0, -math.inf
        for regret, utility in self._slices():
            searched = ~torch.isnan(regret)
            positive = searched & (utility > 0)
            pairs += int(torch.count_nonzero(searched))
            count += int(torch.count_nonzero(positive))
            active += int(torch.count_nonzero(searched & ((regret > 0) | (utility > 0))))
            # x * mask with nansum, not where(mask, x, 0).sum() (3x slower on the CPU): the same
            # sum in the same order (NaN and -0.0 add nothing)
            positive_sum += float((utility * positive).nansum())
            searched_regret = regret.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
            regret_max = max(regret_max, float(searched_regret.max()))  # -inf: not searched
        mean_positive = positive_sum / count if count else 0
        sums = {name: self.sums[name] for name in ("regret_mean", "psi")}
        sums["psi_per_ad"], sample = self._per_ad_sums_and_sample(
            count, mean_positive, active, seed
        )
        for name in ("regret_mean_model", "psi_model"):
            sums[name] = self.sums[name]
        # sum x / sum y; NaN (null) where y sums to 0: psi when truthful bidders earn nothing
        # (first price, or no ad ever shown), the per-ad psi when no ad's utility counts
        figures = {name: part.ratio for name, part in sums.items()}
        figures["regret_mean_se"] = sums["regret_mean"].standard_error()
        if "non_monotone_rate" in self.sums:  # share of the searched ads not monotone
            sums["non_monotone_rate"] = self.sums["non_monotone_rate"]
            figures["non_monotone_rate"] = sums["non_monotone_rate"].ratio  # NaN: none seen
        figures["regret_max"] = regret_max if pairs else math.nan
        curve = tuple(point.ratio for point in self.curve)
        curve_se = tuple(point.standard_error() for point in self.curve)
        return RegretSummary(
            bidders=bidders,
            pairs=pairs,
            figures=figures,
            intervals={name: figure_interval(name, part) for name, part in sums.items()},
            sums=sums,
            curve=curve,
            curve_se=curve_se,
            regret_sample=sample[0],
            utility_sample=sample[1],
        )

    def _per_ad_sums_and_sample(self, count: int, mean_positive: float, active: int, seed: int):
        """The second pass over the pair rows. The paper's per-ad psi over ads whose utility
        is not tiny (>= TINY_UTILITY_SHARE of the mean positive utility, over `count` searched
        pairs): per request, the sum of regret / utility and the count. And up to
        REGRET_SAMPLE of the `active` searched pairs (regret or utility > 0, in request and
        bidder order), drawn without replacement from the run's seed."""
        total = RatioSums()
        tiny = TINY_UTILITY_SHARE * mean_positive
        keep = None
        if active > REGRET_SAMPLE:
            generator = make_generator(seed, "regret_sample")
            keep = sample_positions(active, REGRET_SAMPLE, generator)
        regrets, utilities, seen = [], [], 0
        for regret, utility in self._slices():
            searched = ~torch.isnan(regret)
            kept = searched & (utility >= tiny) if count else torch.zeros_like(searched)
            x = (regret / utility * kept).nansum(1)  # where(kept, regret / utility, 0).sum(1)
            total = total + ratio_sums(x, kept.to(x.dtype).sum(1))
            chosen = (searched & ((regret > 0) | (utility > 0))).view(-1)  # row-major
            if keep is None:
                regret, utility = regret.view(-1)[chosen], utility.view(-1)[chosen]
            else:  # the kept ranks among the chosen pairs, and where those pairs are
                ranks = chosen.cumsum(0)  # [B * N]: chosen pairs up to here
                chosen_here = int(ranks[-1]) if ranks.numel() else 0
                here = keep[(keep >= seen) & (keep < seen + chosen_here)] - seen
                seen += chosen_here
                where = torch.searchsorted(ranks, here + 1)  # the pair of rank `here`
                regret, utility = regret.view(-1)[where], utility.view(-1)[where]
            regrets += regret.tolist()
            utilities += utility.tolist()
        return total, (tuple(regrets), tuple(utilities))


def sample_positions(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`size` distinct positions of range(count), uniformly at random, sorted: Floyd's
    algorithm (Bentley and Floyd, CACM 1987), in memory O(size) however large `count` is
    (a randperm of every pair would hold 8 bytes per pair). ValueError if size > count."""
    if not 0 <= size <= count:
        raise ValueError(f"sample size: expected 0 <= size <= {count}, got {size}")
    uniform = torch.rand(size, generator=generator, dtype=torch.float64).tolist()
    chosen: set[int] = set()
    for step, u in enumerate(uniform):  # j = count - size + step; t uniform on 0..j
        j = count - size + step
        t = min(int(u * (j + 1)), j)
        chosen.add(j if t in chosen else t)
    return torch.tensor(sorted(chosen), dtype=torch.long)
