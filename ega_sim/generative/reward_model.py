"""The permutation-aware reward model (RM) of EGA-V2 (section 3.3): a list in, per-item CTRs out.

The cascade's pCTR model (ranking/pctr.py) scores each item alone, at a position. The true user
of a feed does not: an item is clicked less below a similar item or below many ads, and less
when a tempting item above it ended the session. The RM sees the whole candidate list at once,
so it can learn such externalities, and it is what the generative allocator uses to pick the
best of its beam-searched lists.

Each of the K items of a list becomes one token:

    token_k = W x [item features_k, creative features_k]       (ranking/features.py)
              + sum over levels of E_level[POI semantic ID_k]  (RQ-VAE codes, tokenizer.py)
              + sum over levels of E'_level[creative semantic ID_k] ("no creative" for organic)
              + E_ad[is_ad_k] + E_pos[k]

A transformer encoder with NO causal mask (every item attends to the whole list, above and
below; the position embedding tells it which is which) mixes the tokens, and three per-item
sigmoid towers give P(POI click), P(image click) and the CVR P(order | POI click). It is trained
with binary cross-entropy on logged clicks and orders only (the platform's noisy tables, never
the ground truth), then frozen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from ega_sim.generative.items import ItemTokenizers
from ega_sim.logs.store import Logs
from ega_sim.ranking.features import (
    creative_feature_size,
    creative_features,
    item_feature_size,
    poi_features,
)
from ega_sim.world.feed_market import ObservedMarket

HEADS = ("poi", "img", "cvr")


@dataclass(frozen=True)
class RewardModelConfig:
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.0
    epochs: int = 4
    batch_size: int = 512  # lists per step
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    validation_share: float = 0.1

    def __post_init__(self) -> None:
        for key in ("d_model", "heads", "layers", "epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"RewardModelConfig.{key}: expected an integer >= 1, got {value!r}"
                )
        if self.d_model % self.heads:
            raise ValueError(
                f"RewardModelConfig.d_model: expected a multiple of heads ({self.heads}), "
                f"got {self.d_model}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RewardModelConfig.dropout: expected [0, 1), got {self.dropout!r}")
        if not self.learning_rate > 0.0:
            raise ValueError(
                f"RewardModelConfig.learning_rate: expected > 0, got {self.learning_rate!r}"
            )
        if not self.weight_decay >= 0.0:
            raise ValueError(
                f"RewardModelConfig.weight_decay: expected >= 0, got {self.weight_decay!r}"
            )
        if not 0.0 < self.validation_share < 1.0:
            raise ValueError(
                "RewardModelConfig.validation_share: expected a share in (0, 1), "
                f"got {self.validation_share!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Model inputs: the tensors of a batch of lists


@dataclass(frozen=True)
class ListInputs:
    """What the RM reads of B lists of K items."""

    item: torch.Tensor  # [B, K, F] user x POI features
    creative: torch.Tensor  # [B, K, Fc] creative features (zeros and a flag for organic)
    poi_ids: torch.Tensor  # [B, K, Cp + 1] long
    creative_ids: torch.Tensor  # [B, K, Cc + 1] long ("no creative" for organic)
    is_ad: torch.Tensor  # [B, K] bool

    def select(self, rows: torch.Tensor) -> ListInputs:
        return ListInputs(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def to(self, device: torch.device | str) -> ListInputs:
        return ListInputs(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def list_inputs(
    platform: ObservedMarket,
    tokenizers: ItemTokenizers,
    user: torch.Tensor,
    poi: torch.Tensor,
    advertiser: torch.Tensor,
    creative: torch.Tensor,
) -> ListInputs:
    """Inputs of lists: user [B], poi [B, K], advertiser and creative [B, K] (-1 for organic
    items; an ad is any slot with advertiser >= 0)."""
    item, _ = poi_features(platform, user, poi)  # [B, K, F]
    is_ad = advertiser >= 0  # [B, K]
    creative_ids = tokenizers.creative_ids[advertiser.clamp(min=0), creative.clamp(min=0)]
    creative_ids = torch.where(is_ad.unsqueeze(-1), creative_ids, tokenizers.no_creative)
    return ListInputs(
        item=item.float(),
        creative=creative_features(platform, advertiser, creative).float(),  # [B, K, Fc]
        poi_ids=tokenizers.poi_ids[poi],  # [B, K, Cp + 1]
        creative_ids=creative_ids,  # [B, K, Cc + 1]
        is_ad=is_ad,
    )


def logged_inputs(
    logs: Logs, tokenizers: ItemTokenizers, rows: torch.Tensor | None = None
) -> tuple[ListInputs, torch.Tensor]:
    """Inputs of the logged lists (all requests, or `rows`) and their outcomes [R, K, 3]:
    POI click, image click, order."""
    x = logs.exposures
    device = logs.exposures["user"].device
    rows = torch.arange(logs.n_requests, device=device) if rows is None else rows
    inputs = list_inputs(
        logs.platform,
        tokenizers,
        x["user"][rows],
        x["poi"][rows],
        x["advertiser"][rows],
        x["creative"][rows],
    )
    outcomes = torch.stack([x[k][rows] for k in ("poi_click", "img_click", "order")], dim=-1)
    return inputs, outcomes.float()


# ---------------------------------------------------------------------------------------------
# The model


def base_rates(outcomes: torch.Tensor) -> torch.Tensor:
    """[3]: POI CTR, image CTR and CVR (orders per POI click) of outcomes [R, K, 3]."""
    clicked = outcomes[..., 0] > 0.5
    rates = torch.stack(
        [outcomes[..., 0].mean(), outcomes[..., 1].mean(), outcomes[..., 2][clicked].mean()]
    )
    return rates.nan_to_num(0.5).clamp(1e-4, 1 - 1e-4)


class PermutationAwareRM(nn.Module):
    def __init__(
        self,
        config: RewardModelConfig,
        *,
        item_features: int,
        creative_features: int,
        n_positions: int,
        poi_vocab: tuple[int, ...],
        creative_vocab: tuple[int, ...],
    ):
        super().__init__()
        self.config = config
        self.shape = {
            "item_features": item_features,
            "creative_features": creative_features,
            "n_positions": n_positions,
            "poi_vocab": tuple(poi_vocab),
            "creative_vocab": tuple(creative_vocab),
        }
        d = config.d_model
        self.project = nn.Linear(item_features + creative_features, d)
        self.poi_codes = nn.ModuleList(nn.Embedding(n, d) for n in poi_vocab)
        self.creative_codes = nn.ModuleList(nn.Embedding(n, d) for n in creative_vocab)
        self.ad_flag = nn.Embedding(2, d)
        self.position = nn.Embedding(n_positions, d)
        self.norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, dim_feedforward=2 * d, dropout=config.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1)) for _ in HEADS
        )

    @classmethod
    def for_market(
        cls, config: RewardModelConfig, platform: ObservedMarket, tokenizers: ItemTokenizers
    ) -> PermutationAwareRM:
        return cls(
            config,
            item_features=item_feature_size(platform),
            creative_features=creative_feature_size(platform),
            n_positions=platform.config.n_slots,
            poi_vocab=tokenizers.poi_vocab,
            creative_vocab=tokenizers.creative_vocab,
        )

    @torch.no_grad()
    def start_at_base_rates(self, outcomes: torch.Tensor) -> None:
        """Set each tower's output bias to the logit of its base rate in outcomes [R, K, 3], so
        training starts from the constant predictor instead of 50%."""
        for tower, rate in zip(self.towers, base_rates(outcomes), strict=True):
            tower[-1].bias.fill_(float(torch.logit(rate)))

    def forward(
        self,
        item: torch.Tensor,
        creative: torch.Tensor,
        poi_ids: torch.Tensor,
        creative_ids: torch.Tensor,
        is_ad: torch.Tensor,
    ) -> torch.Tensor:
        """Logits [B, K, 3] (POI click, image click, CVR) of B lists of K items."""
        n_slots = item.shape[1]
        x = self.project(torch.cat([item, creative], dim=-1))  # [B, K, d]
        for level, table in enumerate(self.poi_codes):
            x = x + table(poi_ids[..., level])
        for level, table in enumerate(self.creative_codes):
            x = x + table(creative_ids[..., level])
        x = x + self.ad_flag(is_ad.long())
        x = x + self.position(torch.arange(n_slots, device=item.device))  # [K, d] broadcast
        token = self.norm(x)  # [B, K, d]: each item alone
        context = self.encoder(token)  # [B, K, d]: each item in its list, no causal mask
        joined = torch.cat([token, context], dim=-1)  # [B, K, 2d]
        return torch.cat([tower(joined) for tower in self.towers], dim=-1)  # [B, K, 3]

    def logits(self, inputs: ListInputs) -> torch.Tensor:
        """Logits [B, K, 3] of a ListInputs."""
        return self(inputs.item, inputs.creative, inputs.poi_ids, inputs.creative_ids, inputs.is_ad)

    @torch.no_grad()
    def predict(self, inputs: ListInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P(POI click) [B, K], P(image click) [B, K], CVR = P(order | POI click) [B, K])."""
        p = torch.sigmoid(self.logits(inputs))
        return p[..., 0], p[..., 1], p[..., 2]
