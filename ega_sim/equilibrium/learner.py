"""The equilibrium learner: every advertiser's bid strategy updated at once against the same
mechanism code `evaluate` runs.

- `npga`: simultaneous pseudo-gradient ascent (bnelearn's NPGA: Bichler, Fichtl, Heidekrueger,
  Kohring and Sutterer, "Learning equilibria in symmetric auction games using artificial neural
  networks", Nature Machine Intelligence 2021). Each step draws one batch of requests; each
  strategy's gradient of its own utility, the others held at the current profile, is estimated
  by antithetic Gaussian perturbations of its parameters (evolution strategies), every
  perturbation scored on the same requests (common random numbers) in one batched call of the
  mechanism's unilateral outcome (metrics/regret.misreport_utility). Adam ascends it; a
  projection keeps the bid functions monotone.
- `best_response`: damped iterated best response on the knots of a piecewise bid function:
  each step moves every knot's bid toward the exact interim best response at its value
  (certificate.py) on a fresh batch; rank mechanisms of position auctions only.

State (parameters, optimizer, step) is saved atomically to a file every `save_every` steps and
read back with `weights_only=True` to resume; step t draws from the stream (seed, "equilibrium",
"step", t), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ega_sim.atomic import write_bytes_atomic
from ega_sim.equilibrium.certificate import best_response, check_exact_certificate, interim_table
from ega_sim.equilibrium.strategies import STRATEGY_KINDS, PiecewiseLinearBid
from ega_sim.metrics.regret import MisreportSpec, misreport_utility
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
    steps: int = 300
    batch: int = 4096  # requests per step
    population: int = 16  # antithetic perturbation pairs per step (npga)
    sigma: float = 0.02  # perturbation scale, in parameter units (npga)
    learning_rate: float = 0.01  # Adam (npga)
    damping: float = 0.5  # share of the way to the best response per step (best_response)
    initial_multiplier: float = 1.0  # the start: bid this multiple of the value (1: truthful)

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
        self.step_index = 0
        self.history: list[dict] = []  # per step: mean utility per request of each strategy
        self.seconds = 0.0

    # --- one step -------------------------------------------------------------------------
    def _requests(self, stream: str = "step"):
        generator = make_generator(self.seed, "equilibrium", stream, self.step_index)
        return self.world.sample_requests(self.config.batch, generator), generator

    def bids(self, values: torch.Tensor, parameters: torch.Tensor | None = None) -> torch.Tensor:
        """Bids [B, N] of values [B, N] under the profile (default: the current one)."""
        parameters = self.parameters if parameters is None else parameters
        return self.bid_function.bids(parameters.unsqueeze(0), values, self.seat_strategy)[..., 0]

    def step(self) -> dict:
        """One update of every strategy; returns what it measured."""
        if self.config.method == "best_response":
            record = self._best_response_step()
        else:
            record = self._npga_step()
        self.step_index += 1
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
        bids = self.bids(values)  # [B, N]
        pairs = config.population
        noise = torch.randn((pairs, *theta.shape), generator=generator, dtype=theta.dtype)
        noise = noise.to(theta.device)  # [H, S, P]
        candidates = torch.cat([theta + config.sigma * noise, theta - config.sigma * noise])
        # Candidates need bids >= 0 only (the mechanism scores any bids), not monotonicity.
        candidates = torch.cat([self.bid_function.feasible(candidates), theta.unsqueeze(0)])
        misreports = self.bid_function.bids(candidates, values, self.seat_strategy)  # [B, N, C]
        utility = misreport_utility(
            MisreportSpec(), self.mechanism, self.world, requests, bids, misreports=misreports
        ).utility  # [B, N, 2H + 1], each seat deviating alone
        fitness = self._per_strategy(utility.mean(dim=0))  # [S, 2H + 1]
        difference = (fitness[:, :pairs] - fitness[:, pairs : 2 * pairs]).T  # [H, S]
        gradient = (difference.unsqueeze(2) * noise).sum(0) / (2 * config.sigma * pairs)
        for group in self.optimizer.param_groups:  # linear decay to a tenth at the last step
            fraction = self.step_index / max(config.steps, 1)
            group["lr"] = config.learning_rate * (1.0 - 0.9 * min(fraction, 1.0))
        with torch.enable_grad():
            theta.grad = -gradient  # Adam minimizes
            self.optimizer.step()
        theta.copy_(self.bid_function.project(theta))
        return {"step": self.step_index, "utility": fitness[:, -1].tolist()}

    @torch.no_grad()
    def _best_response_step(self) -> dict:
        requests, _ = self._requests()
        bids = self.bids(requests.value_per_click)
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
        progress: bool = False,
        log_every: int = 50,
        label: str = "equilibrium",
    ) -> None:
        """Step until `config.steps`, saving the state every `save_every` steps and at the end;
        a progress bar on a terminal, a line every `log_every` steps off one."""
        remaining = self.config.steps - self.step_index
        bar = tqdm(
            total=self.config.steps,
            initial=self.step_index,
            desc=label,
            unit="step",
            disable=not progress,
        )
        for _ in range(max(remaining, 0)):
            started = time.perf_counter()
            record = self.step()
            self.seconds += time.perf_counter() - started
            bar.update(1)
            if not progress and log_every and self.step_index % log_every == 0:
                utility = ", ".join(f"{u:.4g}" for u in record["utility"])
                print(
                    f"{label}: step {self.step_index}/{self.config.steps}, utility {utility}",
                    file=sys.stderr,
                    flush=True,
                )
            if state_path is not None and save_every and self.step_index % save_every == 0:
                self.save(state_path)
        bar.close()
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
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_index, self.seconds = int(state["step"]), float(state["seconds"])
        return True
