"""The equilibrium learner: every advertiser's bid strategy updated at once against the same
mechanism code `evaluate` runs.

- `npga`: simultaneous pseudo-gradient ascent (bnelearn's NPGA: Bichler, Fichtl, Heidekrueger,
  Kohring and Sutterer, "Learning equilibria in symmetric auction games using artificial neural
  networks", Nature Machine Intelligence 2021). Each step draws one batch of requests; each
  strategy's gradient of its own utility, the others held at the current profile, is estimated
  by antithetic Gaussian perturbations of its parameters (evolution strategies), every
  perturbation scored on the same requests (common random numbers) in one batched call of the
  mechanism's unilateral outcome (metrics/regret.misreport_utility). Adam ascends it; a
  projection keeps the bid functions monotone. Three choices make it converge (measured on
  first price, whose closed form is known; README "Mechanisms at equilibrium"):
  * each parameter is scored only on the requests whose bid it moves (a knot of the piecewise
    function: the values between its neighbours). Scored on the total utility, the O(v^2)
    gradients of the low knots drown in the noise of the high ones: first price then stayed
    at 0.56 v instead of v / 2 at v = 0.5 after 300 steps.
  * sigma decays with the learning rate (Kiefer-Wolfowitz: the perturbation must shrink for
    the smoothed game's fixed point to approach the game's). A large sigma biases bids down
    where utility falls steeply on one side, as at the top of first price's support, where
    overbidding the highest competitor costs linearly and underbidding only quadratically;
    a small sigma from the start is unstable (near-ties look like steep gains).
  * the profile reported is the mean of the last iterates (Polyak-Ruppert): Adam's steps
    stay about its learning rate in size near the fixed point, the mean of them does not.
- `best_response`: damped iterated best response on the knots of a piecewise bid function:
  each step moves every knot's bid toward the exact interim best response at its value
  (certificate.py) on a fresh batch; rank mechanisms of position auctions only.

State (parameters, their running mean, optimizer, step) is saved atomically to a file every
`save_every` steps and read back with `weights_only=True` to resume; step t draws from the
stream (seed, "equilibrium", "step", t), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ega_sim.atomic import write_bytes_atomic
from ega_sim.equilibrium.certificate import best_response, check_exact_certificate, interim_table
from ega_sim.equilibrium.strategies import STRATEGY_KINDS, PiecewiseLinearBid
from ega_sim.metrics.regret import MisreportSpec, misreport_utility
from ega_sim.progress import Progress, Stage
from ega_sim.seeding import make_generator

LEARNING_METHODS = ("npga", "best_response")


@dataclass(frozen=True)
class LearnerConfig:
    """How the learner runs; checked when made (a ValueError naming the field)."""

    method: str = "npga"
    strategy: str = "piecewise"  # piecewise | network
    shared: bool = True  # one strategy for all seats (symmetric scenario) or one per seat
    knots: int = 10
    hidden: int = 8
    steps: int = 600
    batch: int = 8192  # requests per step
    # npga: antithetic perturbation pairs per step; with the piecewise bid function each knot is
    # scored on its own values, so the requests' noise dominates and few pairs suffice (the
    # network's parameters all move every bid: give it more).
    population: int = 4
    sigma: float = 0.2  # npga: perturbation scale at the first step, in parameter units
    learning_rate: float = 0.01  # npga: Adam's at the first step
    # npga: learning rate and sigma at the last step, a share of the first (linear decay)
    decay_to: float = 0.05
    damping: float = 0.5  # share of the way to the best response per step (best_response)
    initial_multiplier: float = 1.0  # the start: bid this multiple of the value (1: truthful)
    average_last: float = 0.3  # the profile found: the mean iterate over this last share of steps

    def __post_init__(self) -> None:
        if self.method not in LEARNING_METHODS:
            raise ValueError(
                f"method: expected one of {', '.join(LEARNING_METHODS)}, got {self.method!r}"
            )
        if self.strategy not in STRATEGY_KINDS:
            raise ValueError(
                f"strategy: expected one of {', '.join(STRATEGY_KINDS)}, got {self.strategy!r}"
            )
        for name in ("knots", "hidden", "batch", "population"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps: expected an integer >= 0, got {self.steps!r}")
        for name in ("sigma", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)!r}")
        for name in ("decay_to", "average_last"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"{name}: expected a number in [0, 1], got {getattr(self, name)!r}"
                )
        if self.decay_to == 0:
            raise ValueError("decay_to: expected a number in (0, 1], got 0")
        if not 0 < self.damping <= 1:
            raise ValueError(f"damping: expected a number in (0, 1], got {self.damping!r}")
        if not 0 <= self.initial_multiplier <= 2:
            raise ValueError(
                f"initial_multiplier: expected a number in [0, 2], got {self.initial_multiplier!r}"
            )
        if self.method == "best_response" and self.strategy != "piecewise":
            raise ValueError("method best_response: expected strategy 'piecewise' (its knots)")


class EquilibriumLearner:
    """Learns a strategy profile of `bid_function` on a world and mechanism (module docstring)."""

    def __init__(self, world, mechanism, bid_function, config: LearnerConfig, seed: int = 0):
        if config.method == "best_response":
            check_exact_certificate(mechanism, world)
            if not isinstance(bid_function, PiecewiseLinearBid):
                raise ValueError("method best_response: expected a piecewise bid function")
        self.world, self.mechanism, self.bid_function = world, mechanism, bid_function
        self.config, self.seed = config, seed
        n_seats = world.config.n_bidders
        self.n_strategies = 1 if config.shared else n_seats
        device = world.device
        self.seat_strategy = (  # [N] long: the strategy each seat plays
            torch.zeros(n_seats, dtype=torch.long, device=device)
            if config.shared
            else torch.arange(n_seats, device=device)
        )
        initial = bid_function.initial(config.initial_multiplier, self.n_strategies)
        self.parameters = bid_function.project(initial).to(device).requires_grad_(False)
        self.optimizer = torch.optim.Adam([self.parameters], lr=config.learning_rate)
        self.average = self.parameters.clone()  # [S, P] the mean of the averaged iterates
        self.averaged = 0  # how many iterates `average` holds
        self.step_index = 0
        self.history: list[dict] = []  # per step: mean utility per request of each strategy
        self.seconds = 0.0

    # --- one step -------------------------------------------------------------------------
    def _requests(self, stream: str = "step"):
        generator = make_generator(self.seed, "equilibrium", stream, self.step_index)
        return self.world.sample_requests(self.config.batch, generator), generator

    @property
    def profile(self) -> torch.Tensor:
        """The strategy profile found [S, P]: the mean of the iterates of the last
        `average_last` share of the steps (Polyak-Ruppert averaging: the iterates of noisy
        gradient ascent with a step size that stays useful wander around the fixed point, their
        mean does not), or the current iterate before any is averaged."""
        return self.average if self.averaged else self.parameters

    def bids(self, values: torch.Tensor, parameters: torch.Tensor | None = None) -> torch.Tensor:
        """Bids [B, N] of values [B, N] under `parameters` [S, P] (default: the profile)."""
        parameters = self.profile if parameters is None else parameters
        return self.bid_function.bids(parameters.unsqueeze(0), values, self.seat_strategy)[..., 0]

    def step(self) -> dict:
        """One update of every strategy; returns what it measured."""
        if self.config.method == "best_response":
            record = self._best_response_step()
        else:
            record = self._npga_step()
        self.step_index += 1
        if self.step_index > self.config.steps * (1.0 - self.config.average_last):
            self.averaged += 1  # a running mean of monotone profiles is monotone
            self.average += (self.parameters - self.average) / self.averaged
        self.history.append(record)
        return record

    def _per_strategy(self, per_seat: torch.Tensor) -> torch.Tensor:
        """Means over the seats of each strategy: [N, ...] -> [S, ...]."""
        total = per_seat.new_zeros((self.n_strategies, *per_seat.shape[1:]))
        total.index_add_(0, self.seat_strategy, per_seat)
        count = torch.bincount(self.seat_strategy, minlength=self.n_strategies).to(per_seat)
        return total / count.view(-1, *([1] * (per_seat.ndim - 1)))

    @torch.no_grad()
    def _npga_step(self) -> dict:
        config, theta = self.config, self.parameters
        requests, generator = self._requests()
        values = requests.value_per_click  # [B, N]
        bids = self.bids(values, theta)  # [B, N]
        pairs, decay = config.population, self._decay()
        sigma = config.sigma * decay
        noise = torch.randn((pairs, *theta.shape), generator=generator, dtype=theta.dtype)
        noise = noise.to(theta.device)  # [H, S, P]
        candidates = torch.cat([theta + sigma * noise, theta - sigma * noise])
        # Candidates need bids >= 0 only (the mechanism scores any bids), not monotonicity.
        candidates = torch.cat([self.bid_function.feasible(candidates), theta.unsqueeze(0)])
        misreports = self.bid_function.bids(candidates, values, self.seat_strategy)  # [B, N, C]
        utility = misreport_utility(
            MisreportSpec(), self.mechanism, self.world, requests, bids, misreports=misreports
        ).utility  # [B, N, 2H + 1], each seat deviating alone
        fitness = self._per_strategy(utility.mean(dim=0))  # [S, 2H + 1]
        gradient = self._localized_gradient(utility, noise, values, sigma)  # [S, P]
        for group in self.optimizer.param_groups:
            group["lr"] = config.learning_rate * decay
        with torch.enable_grad():
            theta.grad = -gradient  # Adam minimizes
            self.optimizer.step()
        theta.copy_(self.bid_function.project(theta))
        return {"step": self.step_index, "utility": fitness[:, -1].tolist()}

    def _decay(self) -> float:
        """The share of the initial step size and perturbation scale at this step: linear from
        1 down to `config.decay_to` at the last step."""
        fraction = min(self.step_index / max(self.config.steps, 1), 1.0)
        return 1.0 - (1.0 - self.config.decay_to) * fraction

    def _localized_gradient(
        self, utility: torch.Tensor, noise: torch.Tensor, values: torch.Tensor, sigma: float
    ) -> torch.Tensor:
        """The antithetic estimate [S, P] of each strategy's gradient of its mean utility per
        request, parameter p scored only on the requests whose value's bid depends on p.

        With seat i deviating alone, its utility on a request moves with its own bid at its
        own value, so the terms a parameter cannot move are zero in expectation and dropping
        them leaves the estimate unbiased; they are what swamps the small gradients at low
        values (a knot at value v moves utility by O(v^2)) when every knot is scored on the
        total utility of all values."""
        pairs = self.config.population
        difference = utility[:, :, :pairs] - utility[:, :, pairs : 2 * pairs]  # [B, N, H]
        seat_noise = noise.index_select(1, self.seat_strategy)  # [H, N, P]
        support = self.bid_function.support(values).to(utility)  # [B, N, P]
        per_seat = torch.einsum("bnh,hnp,bnp->np", difference, seat_noise, support)  # [N, P]
        return self._per_strategy(per_seat) / (2 * sigma * pairs * values.shape[0])

    @torch.no_grad()
    def _best_response_step(self) -> dict:
        requests, _ = self._requests()
        bids = self.bids(requests.value_per_click, self.parameters)
        table = interim_table(self.mechanism, self.world, requests, bids)
        knots = bids.new_tensor(self.bid_function.knots)  # [J]
        best, best_bid = best_response(table, knots)  # [N, J]
        target = self._per_strategy(best_bid / knots)  # [S, J] multipliers
        damping = self.config.damping
        moved = (1 - damping) * self.parameters + damping * target
        self.parameters.copy_(self.bid_function.project(moved))
        return {
            "step": self.step_index,
            "utility": self._per_strategy(best.mean(1, keepdim=True))[:, 0].tolist(),
        }

    # --- running, saving, resuming --------------------------------------------------------
    def run(
        self,
        *,
        state_path: Path | None = None,
        save_every: int = 50,
        progress: Progress = False,
        label: str = "equilibrium",
    ) -> None:
        """Step until `config.steps`, saving the state every `save_every` steps and at the end;
        progress as `ega_sim.progress` shows it (a bar on a terminal, paced lines off one)."""
        remaining = self.config.steps - self.step_index
        with Stage(label, self.config.steps, progress=progress, initial=self.step_index) as stage:
            for _ in range(max(remaining, 0)):
                started = time.perf_counter()
                record = self.step()
                self.seconds += time.perf_counter() - started
                stage.update(1, utility=", ".join(f"{u:.4g}" for u in record["utility"]))
                if state_path is not None and save_every and self.step_index % save_every == 0:
                    self.save(state_path)
        if state_path is not None:
            self.save(state_path)

    @property
    def steps_per_second(self) -> float:
        return self.step_index / self.seconds if self.seconds > 0 else float("nan")

    def state(self) -> dict:
        return {
            "config": asdict(self.config),
            "seed": self.seed,
            "mechanism": self.mechanism.name,
            "scenario": self.world.config.name,
            "step": self.step_index,
            "seconds": self.seconds,
            "parameters": self.parameters.detach().cpu(),
            "average": self.average.detach().cpu(),
            "averaged": self.averaged,
            "optimizer": self.optimizer.state_dict(),
        }

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        write_bytes_atomic(path, buffer.getvalue())

    def resume(self, path: Path) -> bool:
        """Load the state saved at `path` if there is one made by the same run (config, seed,
        scenario, mechanism); a ValueError if it was made by another; False if none."""
        path = Path(path)
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        mine = self.state()
        for key in ("config", "seed", "mechanism", "scenario"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"{path}: a learner state of another run ({key}: {state.get(key)!r}, this "
                    f"run: {mine[key]!r}); remove it or choose another --out"
                )
        self.parameters.copy_(state["parameters"].to(self.parameters))
        self.average.copy_(state["average"].to(self.average))
        self.averaged = int(state["averaged"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_index, self.seconds = int(state["step"]), float(state["seconds"])
        return True
