"""Item tables of a market for the generative models: the semantic IDs of the two RQ-VAE
tokenizers (POIs and creatives, separate codebooks) and standardized observed features, built
from the platform's tables only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ega_sim.generative.tokenizer import (
    RQVAEConfig,
    creative_embeddings,
    poi_embeddings,
    semantic_ids,
    train_rqvae,
)
from ega_sim.progress import Progress
from ega_sim.seeding import derive_seed
from ega_sim.world.feed_market import ObservedMarket


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
class ItemTokenizers:
    """Semantic IDs of every POI and every creative of a market (platform-side features only).

    The last column of each ID is the RQ-VAE's disambiguation rank. The creative table holds,
    at every missing (advertiser, creative) slot, the "no creative" ID: the last index of each
    column's vocabulary, which organic items get too."""

    poi_ids: torch.Tensor  # [P, Cp + 1] long
    creative_ids: torch.Tensor  # [A, Cmax, Cc + 1] long
    poi_vocab: tuple[int, ...]  # embedding-table size of each POI ID column
    creative_vocab: tuple[int, ...]  # same for creatives, "no creative" index included
    reports: dict  # the two RQ-VAE fit reports

    @property
    def no_creative(self) -> torch.Tensor:
        """The "no creative" ID [Cc + 1]."""
        return torch.tensor(self.creative_vocab, device=self.creative_ids.device) - 1

    def to(self, device: torch.device | str) -> ItemTokenizers:
        return dataclasses.replace(
            self, poi_ids=self.poi_ids.to(device), creative_ids=self.creative_ids.to(device)
        )


def fit_item_tokenizers(
    platform: ObservedMarket,
    *,
    seed: int = 0,
    levels: int = 3,
    codebook_size: int = 32,
    steps: int = 200,
    progress: Progress = False,
) -> ItemTokenizers:
    """Train the POI and the creative RQ-VAE on the platform's tables (a few seconds on a CPU
    with the small default step count) and tabulate every item's semantic ID."""
    pois = poi_embeddings(platform).cpu()  # [P, F]
    poi_model, poi_report = train_rqvae(
        pois,
        RQVAEConfig(
            input_dim=pois.shape[1], levels=levels, codebook_size=codebook_size, steps=steps
        ),
        seed=derive_seed(seed, "reward_model", "poi_tokenizer"),
        progress=progress,
        desc="POI RQ-VAE",
    )
    poi_ids = semantic_ids(poi_model, pois)  # [P, C + 1]
    styles, where = creative_embeddings(platform)  # [n, Dc], [n, 2]
    styles, where = styles.cpu(), where.cpu()
    creative_model, creative_report = train_rqvae(
        styles,
        RQVAEConfig(
            input_dim=styles.shape[1], levels=levels, codebook_size=codebook_size, steps=steps
        ),
        seed=derive_seed(seed, "reward_model", "creative_tokenizer"),
        progress=progress,
        desc="creative RQ-VAE",
    )
    codes = semantic_ids(creative_model, styles)  # [n, C + 1]
    poi_vocab = (codebook_size,) * levels + (int(poi_ids[:, -1].max()) + 1,)
    creative_vocab = tuple(
        v + 1 for v in (codebook_size,) * levels + (int(codes[:, -1].max()) + 1,)
    )
    n_advertisers, max_creatives = platform.creative_valid.shape
    creative_ids = torch.tensor(creative_vocab).sub(1).repeat(n_advertisers, max_creatives, 1)
    creative_ids[where[:, 0], where[:, 1]] = codes  # [A, Cmax, C + 1]
    device = platform.poi_location.device
    return ItemTokenizers(
        poi_ids.to(device),
        creative_ids.to(device),
        poi_vocab,
        creative_vocab,
        {"poi": poi_report, "creative": creative_report},
    )


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
