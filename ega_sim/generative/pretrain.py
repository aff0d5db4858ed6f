"""Pre-training the generator on logged exposure lists (EGA-V2 stage 1): next-POI and
next-creative cross-entropy, teacher-forced, on every logged list in its shown order."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ega_sim.generative.generator import Generator, GeneratorConfig
from ega_sim.seeding import make_generator


@dataclass(frozen=True)
class ItemTables:
    """Per-market lookup tables the generator reads (platform-side only)."""

    poi_codes: torch.Tensor  # [P, Lp] long semantic IDs
    creative_codes: torch.Tensor  # [A, Cmax, Lc] long (missing creatives: no_creative)
    no_creative: torch.Tensor  # [Lc] long, the creative ID of organic items
    poi_features: torch.Tensor  # [P, F] float32, standardized observed POI embeddings
    user_features: torch.Tensor  # [U, D] float32, users' inferred interests
    user_history: torch.Tensor  # [U, H] long POIs
    poi_vocab: int  # embedding rows per POI level (the largest level's)
    creative_vocab: int  # the same for creatives, "no creative" included

    def list_batch(
        self,
        user: torch.Tensor,
        poi: torch.Tensor,
        advertiser: torch.Tensor,
        creative: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Generator inputs for lists of user [B] and slots [B, K] (advertiser/creative -1 for
        organic items)."""
        history = self.user_history[user]  # [B, H]
        is_ad = advertiser >= 0
        creative_codes = self.creative_codes[advertiser.clamp(min=0), creative.clamp(min=0)]
        creative_codes = torch.where(is_ad.unsqueeze(-1), creative_codes, self.no_creative)
        return {
            "history_codes": self.poi_codes[history],
            "history_features": self.poi_features[history],
            "user": self.user_features[user],
            "poi_codes": self.poi_codes[poi],
            "features": self.poi_features[poi],
            "creative_codes": creative_codes,
        }


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 3
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5


def pretrain_generator(
    logs,
    tables: ItemTables,
    generator_config: GeneratorConfig,
    config: PretrainConfig = PretrainConfig(),
    *,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Generator, dict]:
    """Fit the generator to the logged lists; returns it (eval mode) and a report."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = Generator(generator_config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x = logs.exposures
    n = logs.n_requests
    order_stream = make_generator(seed, "generator", "order")
    steps = config.epochs * math.ceil(n / config.batch_size)
    bar = tqdm(total=steps, desc="pre-train generator", unit="step", disable=not progress)
    history = []
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=order_stream)
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size]
            batch = tables.list_batch(
                x["user"][rows], x["poi"][rows], x["advertiser"][rows], x["creative"][rows]
            )
            loss, parts = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(parts)
            bar.update()
            bar.set_postfix(
                poi=f"{parts['poi_loss']:.3f}",
                creative=f"{parts['creative_loss']:.3f}",
                refresh=False,
            )
    bar.close()
    model.eval()
    tail = history[-max(1, len(history) // 10) :]
    report = {
        "steps": len(history),
        "final_poi_loss": sum(p["poi_loss"] for p in tail) / len(tail),
        "final_creative_loss": sum(p["creative_loss"] for p in tail) / len(tail),
        "first_poi_loss": history[0]["poi_loss"],
        "seconds": time.perf_counter() - started,
    }
    return model, report
