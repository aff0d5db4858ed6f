"""Train the cascade's position-aware pCTR model on logged exposures, and store it.

Every logged slot is one example: features of (user, POI, creative), its position, and whether
the POI was clicked. Requests are split into training and validation sets (10% held out); the
report gives validation log loss and AUC beside those of a constant predictor.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ega_sim.checkpoints import (
    CASCADE_FORMAT,
    PCTR_FILE,
    save_tensors,
    write_checkpoint_record,
)
from ega_sim.logs.store import Logs
from ega_sim.progress import Progress, Stage
from ega_sim.ranking.features import (
    creative_feature_size,
    creative_features,
    item_feature_size,
    poi_features,
)
from ega_sim.ranking.pctr import PCTRConfig, PositionAwarePCTR
from ega_sim.seeding import make_generator


@dataclass(frozen=True)
class PCTRTrainConfig:
    epochs: int = 6
    batch_size: int = 2048
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    validation_share: float = 0.1
    hidden: int = 64
    layers: int = 2


def exposure_examples(logs: Logs, rows: torch.Tensor | None = None):
    """(item [E, F], creative [E, Fc], position [E], clicked [E]) of the logged slots."""
    x = logs.exposures
    rows = torch.arange(logs.n_requests) if rows is None else rows
    user, poi = x["user"][rows], x["poi"][rows]
    item, _ = poi_features(logs.platform, user, poi)  # [R, K, F]
    creative = creative_features(logs.platform, x["advertiser"][rows], x["creative"][rows])
    n_slots = poi.shape[1]
    position = torch.arange(n_slots).expand_as(poi)
    flat = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731
    return (
        flat(item).float(),
        flat(creative).float(),
        flat(position),
        flat(x["poi_click"][rows]).float(),
    )


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores, dtype=torch.float64)
    sorted_scores = scores[order]
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64, device=scores.device)
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    first = torch.cumsum(counts, 0) - counts + 1
    average = (first + (counts - 1) / 2.0).to(torch.float64)
    ranks[order] = average[inverse]
    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _log_loss(model: PositionAwarePCTR, examples) -> float:
    item, creative, position, clicked = examples
    with torch.no_grad():
        log_click, log_no_click = model.log_click_probability(item, creative, position)
    return float(-(clicked * log_click + (1 - clicked) * log_no_click).mean())


def train_pctr(
    logs: Logs,
    config: PCTRTrainConfig = PCTRTrainConfig(),
    *,
    seed: int = 0,
    progress: Progress = False,
) -> tuple[PositionAwarePCTR, dict]:
    """Fit the model on the logs; returns it (eval mode) and a report of the fit. `progress`:
    see ega_sim/progress.py."""
    started = time.perf_counter()
    torch.manual_seed(seed)  # initial weights; the data order has its own stream below
    generator = make_generator(seed, "pctr", "split")
    permutation = torch.randperm(logs.n_requests, generator=generator)
    n_validation = max(1, int(logs.n_requests * config.validation_share))
    validation = exposure_examples(logs, permutation[:n_validation])
    training = exposure_examples(logs, permutation[n_validation:])
    platform = logs.platform
    model = PositionAwarePCTR(
        PCTRConfig(
            item_features=item_feature_size(platform),
            creative_features=creative_feature_size(platform),
            n_positions=platform.config.n_slots,
            hidden=config.hidden,
            layers=config.layers,
        )
    )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    n_train = training[0].shape[0]
    order_stream = make_generator(seed, "pctr", "order")
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    bar = Stage("train pCTR", steps, progress=progress)
    for _ in range(config.epochs):
        order = torch.randperm(n_train, generator=order_stream)
        for start in range(0, n_train, config.batch_size):
            index = order[start : start + config.batch_size]
            item, creative, position, clicked = (t[index] for t in training)
            log_click, log_no_click = model.log_click_probability(item, creative, position)
            loss = -(clicked * log_click + (1 - clicked) * log_no_click).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update(loss=loss.detach())
    bar.close()
    model.eval()
    item, creative, position, clicked = validation
    with torch.no_grad():
        log_click, _ = model.log_click_probability(item, creative, position)
    base_rate = float(training[3].mean())
    constant = -(clicked * math.log(base_rate) + (1 - clicked) * math.log(1 - base_rate)).mean()
    report = {
        "train_exposures": n_train,
        "validation_exposures": int(clicked.numel()),
        "validation_log_loss": _log_loss(model, validation),
        "constant_log_loss": float(constant),
        "validation_auc": auc(log_click, clicked),
        "seen_probability": model.seen_probability().tolist(),
        "seconds": time.perf_counter() - started,
    }
    return model, report


def save_cascade_checkpoint(
    out: str | Path,
    model: PositionAwarePCTR,
    report: dict,
    scenario,
    train_config: PCTRTrainConfig,
    logs_meta: dict,
) -> Path:
    """DIR/pctr.pt (a state dict) and DIR/checkpoint.json (with the fingerprint of the
    scenario's world and pctr.pt's checksum), as trained_parts.py reads them."""
    out = Path(out)
    save_tensors(out / PCTR_FILE, model.state_dict())
    write_checkpoint_record(
        out,
        kind="cascade",
        format_version=CASCADE_FORMAT,
        scenario=scenario,
        files=[PCTR_FILE],
        pctr=model.config.to_dict(),
        train=asdict(train_config),
        report=report,
        logs={k: logs_meta.get(k) for k in ("scenario", "seed", "requests", "git_commit")},
    )
    return out
