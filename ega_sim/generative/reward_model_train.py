"""Training the permutation-aware reward model on logged clicks and orders (then frozen):
binary cross-entropy of its three heads, a held-out request split, AUC and log loss."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from ega_sim.generative.items import ItemTokenizers
from ega_sim.generative.reward_model import (
    ListInputs,
    PermutationAwareRM,
    RewardModelConfig,
    base_rates,
    logged_inputs,
)
from ega_sim.logs.store import Logs
from ega_sim.progress import Progress, Stage
from ega_sim.ranking.train import auc
from ega_sim.seeding import make_generator


def split_requests(
    n_requests: int, validation_share: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, validation rows) of the RM's request split: its own named stream."""
    generator = make_generator(seed, "reward_model", "split")
    permutation = torch.randperm(n_requests, generator=generator)
    n_validation = max(1, int(n_requests * validation_share))
    return permutation[n_validation:], permutation[:n_validation]


def _losses(logit: torch.Tensor, outcome: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mean BCE of the three heads; logit and outcome [B, K, 3]. CVR only where a POI click."""
    bce = nn.functional.binary_cross_entropy_with_logits
    clicked = outcome[..., 0] > 0.5  # [B, K]
    poi = bce(logit[..., 0], outcome[..., 0])
    img = bce(logit[..., 1], outcome[..., 1])
    cvr = (
        bce(logit[..., 2][clicked], outcome[..., 2][clicked])
        if bool(clicked.any())
        else logit.new_zeros(())
    )
    return poi, img, cvr


@torch.no_grad()
def evaluate_reward_model(
    model: PermutationAwareRM, inputs: ListInputs, outcomes: torch.Tensor
) -> dict:
    """AUC and log loss of each head on lists with known outcomes [R, K, 3]."""
    logit = model.logits(inputs)  # [R, K, 3]
    clicked = outcomes[..., 0] > 0.5
    poi, img, cvr = _losses(logit, outcomes)
    return {
        "poi_auc": auc(logit[..., 0].flatten(), outcomes[..., 0].flatten()),
        "img_auc": auc(logit[..., 1].flatten(), outcomes[..., 1].flatten()),
        "cvr_auc": auc(logit[..., 2][clicked], outcomes[..., 2][clicked]),
        "poi_log_loss": float(poi),
        "img_log_loss": float(img),
        "cvr_log_loss": float(cvr),
        "log_loss": float(poi + img + cvr),
    }


def train_reward_model(
    logs: Logs,
    tokenizers: ItemTokenizers,
    config: RewardModelConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress = False,
) -> tuple[PermutationAwareRM, dict]:
    """Fit the RM on logged lists (90/10 request split, see split_requests); returns it (eval
    mode) and a report: validation AUC and log loss of each head, beside the log loss of the
    constant predictor (the training base rates)."""
    config = RewardModelConfig() if config is None else config
    started = time.perf_counter()
    torch.manual_seed(seed)  # initial weights; data order and split have their own streams
    device = logs.exposures["user"].device  # train where the logs are
    train_rows, validation_rows = (
        rows.to(device) for rows in split_requests(logs.n_requests, config.validation_share, seed)
    )
    training, train_outcomes = logged_inputs(logs, tokenizers, train_rows)
    validation, validation_outcomes = logged_inputs(logs, tokenizers, validation_rows)
    model = PermutationAwareRM.for_market(config, logs.platform, tokenizers).to(device)
    model.start_at_base_rates(train_outcomes)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    n_train = len(train_rows)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    order_stream = make_generator(seed, "reward_model", "order")
    bar = Stage("train reward model", config.epochs * steps_per_epoch, progress=progress)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n_train, generator=order_stream)
        for start in range(0, n_train, config.batch_size):
            index = order[start : start + config.batch_size].to(device)
            poi, img, cvr = _losses(model.logits(training.select(index)), train_outcomes[index])
            loss = poi + img + cvr
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update(loss=loss.detach())
    bar.close()
    model.eval()
    constant = torch.logit(base_rates(train_outcomes)).expand_as(validation_outcomes)
    report = {
        "train_requests": n_train,
        "validation_requests": len(validation_rows),
        **{
            f"validation_{k}": v
            for k, v in evaluate_reward_model(model, validation, validation_outcomes).items()
        },
        "constant_log_loss": float(sum(_losses(constant, validation_outcomes))),
        "seconds": time.perf_counter() - started,
    }
    return model, report
