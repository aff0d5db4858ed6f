"""Train the payment network by ex-post regret minimization (RegretNet's augmented Lagrangian).

Per step, on a batch of requests with truthful bids and misreports (see the sources):
    loss = -revenue + sum_i lambda_i rgt_i + rho / 2 sum_i rgt_i^2
with rgt_i the mean regret of bidder seat i over the batch and revenue the mean per request,
both divided by the truthful welfare per request of a pilot batch (so the multipliers do not
depend on the market's value scale). Every `lambda_every` steps lambda_i += rho x (mean rgt_i
since the last update); every `rho_every` steps rho *= rho_growth, up to rho_max. Every
`validate_every` steps the network is validated on held-out requests with the strong search
of the source and the training state is saved, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ega_sim.checkpoints import load_tensors, save_tensors
from ega_sim.payment.config import PaynetTrainConfig
from ega_sim.payment.deviations import Deviations
from ega_sim.payment.network import PaymentNetwork
from ega_sim.progress import Progress, Stage


@dataclass
class TrainState:
    """Everything a resumed run needs."""

    step: int
    multipliers: torch.Tensor  # [N] lambda_i
    rho: float
    welfare_scale: float
    history: list[dict]
    regret_sum: torch.Tensor  # [N] sum of rgt_i since the last lambda update
    since_update: int


def validation_figures(deviations: Deviations) -> dict[str, float]:
    """Revenue, regret and IR of a validation batch, per request and per bidder (no grad).

    `regret_floor_mean` is the regret no IR payment rule (0 <= price <= bid) can remove:
    u(b') >= clicks(b') (v - b') and u(v) <= clicks(v) v, so a bidder shown more when bidding
    less (a non-monotone allocation) keeps max(0, max_c clicks_c (v - b_c) - clicks_0 v).
    It is 0 on a monotone allocator; on a generated list it says how much of the regret is
    the allocator's, not the prices'."""
    regret = deviations.regret()  # [B, N]
    value = deviations.value.unsqueeze(2)
    floor = (deviations.clicks * (value - deviations.bid)).amax(dim=2)
    floor = (floor - deviations.clicks[..., 0] * deviations.value).clamp(min=0.0)
    revenue = float(deviations.revenue().mean())
    shown = deviations.clicks[..., 0] > 0
    over_bid = shown & (deviations.price[..., 0] > deviations.bid[..., 0])
    return {
        "revenue_per_request": revenue,
        "welfare_per_request": float(deviations.welfare().mean()),
        "regret_mean": float(regret.mean()),  # per (request, bidder)
        "regret_max": float(regret.max()),
        "regret_per_revenue": float(regret.sum(1).mean()) / revenue if revenue > 0 else 0.0,
        "regret_floor_mean": float(floor.mean()),
        "ir_violations": int(over_bid.sum()),
    }


def _save_state(path: Path, network, optimizer, schedule, state: TrainState, generator) -> None:
    save_tensors(
        path,
        {
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "step": state.step,
            "multipliers": state.multipliers,
            "rho": state.rho,
            "welfare_scale": state.welfare_scale,
            "history": json.dumps(state.history),
            "regret_sum": state.regret_sum,
            "since_update": state.since_update,
            "generator": generator.get_state(),
        },
    )


def train_payment_network(
    network: PaymentNetwork,
    source,
    validate: Callable[[], Deviations],
    config: PaynetTrainConfig,
    generator: torch.Generator,
    *,
    state_path: Path | None = None,
    progress: Progress = False,
) -> dict:
    """Train `network` in place on `source` (training_batch(size, generator) -> Deviations,
    n_bidders); `validate()` gives a held-out batch under no_grad. Resumes from
    `state_path` when it holds a saved state. Returns the report (final validation figures,
    history, seconds)."""
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.steps, eta_min=config.learning_rate / 10
    )
    started = time.perf_counter()
    if state_path is not None and state_path.is_file():
        saved = load_tensors(state_path)
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        state = TrainState(
            saved["step"],
            saved["multipliers"],
            saved["rho"],
            saved["welfare_scale"],
            json.loads(saved["history"]),
            saved["regret_sum"],
            saved["since_update"],
        )
    else:
        with torch.no_grad():
            pilot = source.training_batch(config.batch_size, generator)
        welfare_scale = float(pilot.welfare().mean())
        if not welfare_scale > 0:
            raise ValueError(
                "paynet: the truthful welfare of a pilot batch is 0 (no ad is ever shown), so "
                "there is no revenue to learn"
            )
        multipliers = torch.full((source.n_bidders,), config.lambda_init, dtype=torch.float64)
        regret_sum = torch.zeros_like(multipliers)
        state = TrainState(0, multipliers, config.rho_init, welfare_scale, [], regret_sum, 0)

    network.train()
    bar = Stage("train paynet", config.steps, progress=progress, initial=state.step)
    for step in range(state.step, config.steps):
        batch = source.training_batch(config.batch_size, generator)
        regret = batch.regret().mean(dim=0) / state.welfare_scale  # [N] rgt_i
        revenue = batch.revenue().mean() / state.welfare_scale
        multipliers = state.multipliers.to(regret)
        loss = -revenue + (multipliers * regret).sum() + state.rho / 2 * (regret**2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

        state.regret_sum = state.regret_sum + regret.detach().cpu().to(torch.float64)
        state.since_update += 1
        state.step = step + 1
        if state.step % config.lambda_every == 0:
            mean_regret = state.regret_sum / state.since_update
            state.multipliers = state.multipliers + state.rho * mean_regret
            state.regret_sum = torch.zeros_like(state.regret_sum)
            state.since_update = 0
        if state.step % config.rho_every == 0:
            state.rho = min(state.rho * config.rho_growth, config.rho_max)
        bar.update(  # tensors, read only when shown
            revenue=revenue.detach() * state.welfare_scale,
            regret=regret.detach().sum() * state.welfare_scale,
            lam=state.multipliers.mean(),
            rho=state.rho,
        )
        if state.step % config.validate_every == 0 or state.step == config.steps:
            network.eval()
            with torch.no_grad():
                figures = validation_figures(validate())
            network.train()
            state.history.append(
                {
                    "step": state.step,
                    "rho": state.rho,
                    **figures,
                    "lambda_mean": float(state.multipliers.mean()),
                }
            )
            if state_path is not None:
                _save_state(state_path, network, optimizer, schedule, state, generator)
    bar.close()
    network.eval()
    with torch.no_grad():
        final = validation_figures(validate())
        # A cached source (generated lists) is a fixed training set: its figures beside the
        # held-out ones show how far the network generalizes.
        training = validation_figures(source.all()) if hasattr(source, "all") else None
    return {
        "validation": final,
        "training": training,
        "history": state.history,
        "welfare_scale": state.welfare_scale,
        "lambda": state.multipliers.tolist(),
        "rho": state.rho,
        "seconds": time.perf_counter() - started,
    }
