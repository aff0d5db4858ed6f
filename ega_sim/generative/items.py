"""Item tables of a market for the generative models: semantic IDs from two RQ-VAE tokenizers
(POIs and creatives, separate codebooks) and standardized observed features, built from the
platform's tables only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.generative.pretrain import ItemTables
from ega_sim.generative.tokenizer import (
    RQVAEConfig,
    creative_embeddings,
    poi_embeddings,
    semantic_ids,
    train_rqvae,
)
from ega_sim.world.feed_market import ObservedMarket


@dataclass(frozen=True)
class TokenizerConfigs:
    poi: RQVAEConfig | None = None  # None: RQVAEConfig defaults sized to the input
    creative_codebook_size: int = 16
    steps: int = 1_500


def build_item_tables(
    observed: ObservedMarket, configs: TokenizerConfigs = TokenizerConfigs(), *, seed: int = 0
) -> tuple[ItemTables, dict]:
    """Train both tokenizers and assemble the ItemTables; returns them and the tokenizer
    reports (codebook usage, reconstruction error, collisions)."""
    pois = poi_embeddings(observed)
    poi_config = configs.poi or RQVAEConfig(input_dim=pois.shape[1], steps=configs.steps)
    poi_model, poi_report = train_rqvae(pois, poi_config, seed=seed, desc="POI tokenizer")
    poi_ids = semantic_ids(poi_model, pois)  # [P, C + 1]

    styles, where = creative_embeddings(observed)
    creative_config = RQVAEConfig(
        input_dim=styles.shape[1], steps=configs.steps, codebook_size=configs.creative_codebook_size
    )
    creative_model, creative_report = train_rqvae(
        styles, creative_config, seed=seed + 1, desc="creative tokenizer"
    )
    creative_ids = semantic_ids(creative_model, styles)  # [n, C + 1]
    creative_vocab = int(max(creative_config.codebook_size, int(creative_ids.max()) + 1))
    table = torch.full(
        (observed.creative_count.shape[0], observed.max_creatives, creative_ids.shape[1]),
        creative_vocab,
        dtype=torch.long,
    )
    table[where[:, 0], where[:, 1]] = creative_ids

    features = pois.float()
    features = (features - features.mean(0)) / features.std(0).clamp(min=1e-6)
    users = torch.arange(observed.user_history.shape[0])
    tables = ItemTables(
        poi_codes=poi_ids,
        creative_codes=table,
        poi_features=features,
        user_features=observed.user_observed_interest(users).float(),
        user_history=observed.user_history,
        organic_code=creative_vocab,
    )
    report = {
        "poi_tokenizer": poi_report,
        "creative_tokenizer": creative_report,
        "poi_vocab": poi_vocab(tables, poi_config.codebook_size),
        "creative_vocab": creative_vocab,
    }
    return tables, report


def poi_vocab(tables: ItemTables, codebook_size: int) -> int:
    """Codes per POI level: the codebook, or more if a disambiguation rank is larger."""
    return int(max(codebook_size, int(tables.poi_codes.max()) + 1))
