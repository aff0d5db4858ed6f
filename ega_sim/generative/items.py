"""Item tables of a market for the generative models: the semantic IDs of the two RQ-VAE
tokenizers (POIs and creatives, separate codebooks) and standardized observed features, built
from the platform's tables only."""

from __future__ import annotations

import torch

from ega_sim.generative.pretrain import ItemTables
from ega_sim.generative.reward_model import ItemTokenizers, fit_item_tokenizers
from ega_sim.generative.tokenizer import poi_embeddings
from ega_sim.world.feed_market import ObservedMarket


def item_tables(observed: ObservedMarket, tokenizers: ItemTokenizers) -> ItemTables:
    """The generator's lookup tables from fitted tokenizers."""
    features = poi_embeddings(observed).float()
    features = (features - features.mean(0)) / features.std(0).clamp(min=1e-6)
    users = torch.arange(observed.user_history.shape[0], device=observed.user_history.device)
    return ItemTables(
        poi_codes=tokenizers.poi_ids,
        creative_codes=tokenizers.creative_ids,
        no_creative=tokenizers.no_creative,
        poi_features=features,
        user_features=observed.user_observed_interest(users).float(),
        user_history=observed.user_history,
        poi_vocab=max(tokenizers.poi_vocab),
        creative_vocab=max(tokenizers.creative_vocab),
    )


def build_item_tables(
    observed: ObservedMarket, *, seed: int = 0, steps: int = 1_500
) -> tuple[ItemTables, ItemTokenizers]:
    """Fit both tokenizers (`steps` optimizer steps each) and assemble the tables."""
    tokenizers = fit_item_tokenizers(observed, seed=seed, steps=steps)
    return item_tables(observed, tokenizers), tokenizers
