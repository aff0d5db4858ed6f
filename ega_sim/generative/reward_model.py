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

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from tqdm.auto import tqdm

from ega_sim.generative.tokenizer import (
    RQVAEConfig,
    creative_embeddings,
    poi_embeddings,
    semantic_ids,
    train_rqvae,
)
from ega_sim.logs.store import Logs
from ega_sim.ranking.features import (
    creative_feature_size,
    creative_features,
    item_feature_size,
    poi_features,
)
from ega_sim.ranking.train import auc
from ega_sim.seeding import derive_seed, make_generator
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
# Model inputs: semantic IDs of the market's items, and the tensors of a batch of lists


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
    rows = torch.arange(logs.n_requests) if rows is None else rows
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


def _base_rates(outcomes: torch.Tensor) -> torch.Tensor:
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
        for tower, rate in zip(self.towers, _base_rates(outcomes), strict=True):
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


# ---------------------------------------------------------------------------------------------
# Training


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
    config: RewardModelConfig = RewardModelConfig(),
    *,
    seed: int = 0,
    progress: bool = False,
) -> tuple[PermutationAwareRM, dict]:
    """Fit the RM on logged lists (90/10 request split, see split_requests); returns it (eval
    mode) and a report: validation AUC and log loss of each head, beside the log loss of the
    constant predictor (the training base rates)."""
    started = time.perf_counter()
    torch.manual_seed(seed)  # initial weights; data order and split have their own streams
    train_rows, validation_rows = split_requests(logs.n_requests, config.validation_share, seed)
    training, train_outcomes = logged_inputs(logs, tokenizers, train_rows)
    validation, validation_outcomes = logged_inputs(logs, tokenizers, validation_rows)
    model = PermutationAwareRM.for_market(config, logs.platform, tokenizers)
    model.start_at_base_rates(train_outcomes)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    n_train = len(train_rows)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    order_stream = make_generator(seed, "reward_model", "order")
    bar = tqdm(
        total=config.epochs * steps_per_epoch, desc="train RM", unit="step", disable=not progress
    )
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n_train, generator=order_stream)
        for start in range(0, n_train, config.batch_size):
            index = order[start : start + config.batch_size]
            poi, img, cvr = _losses(model.logits(training.select(index)), train_outcomes[index])
            loss = poi + img + cvr
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    bar.close()
    model.eval()
    constant = torch.logit(_base_rates(train_outcomes)).expand_as(validation_outcomes)
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
