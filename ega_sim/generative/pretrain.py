"""Pre-training the generator on logged exposure lists (EGA-V2 stage 1): next-POI and
next-creative cross-entropy, teacher-forced, on every logged list in its shown order."""

from __future__ import annotations

import math
import time

import torch

from ega_sim.generative.config import PretrainConfig
from ega_sim.generative.generator import Generator, GeneratorConfig
from ega_sim.generative.items import ItemTables
from ega_sim.progress import Progress, Stage
from ega_sim.seeding import make_generator


def pretrain_generator(
    logs,
    tables: ItemTables,
    generator_config: GeneratorConfig,
    config: PretrainConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress = False,
) -> tuple[Generator, dict]:
    """Fit the generator to the logged lists; returns it (eval mode) and a report."""
    config = PretrainConfig() if config is None else config
    started = time.perf_counter()
    torch.manual_seed(seed)
    device = tables.poi_codes.device  # train where the tables (and the logs) are
    model = Generator(generator_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x = logs.exposures
    n = logs.n_requests
    order_stream = make_generator(seed, "generator", "order")
    steps = config.epochs * math.ceil(n / config.batch_size)
    bar = Stage("pre-train generator", steps, progress=progress)
    history = []
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=order_stream)
        for start in range(0, n, config.batch_size):
            rows = order[start : start + config.batch_size].to(device)
            batch = tables.list_batch(
                x["user"][rows], x["poi"][rows], x["advertiser"][rows], x["creative"][rows]
            )
            loss, parts = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(parts)
            bar.update(poi_loss=parts["poi_loss"], creative_loss=parts["creative_loss"])
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
