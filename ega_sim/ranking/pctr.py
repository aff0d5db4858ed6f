"""The cascade's pointwise, position-aware pCTR model (PAL: Guo et al., RecSys 2019).

P(POI click at position k | user, item, creative) = P(seen | k) x P(click | seen, x), with
P(seen | k) = sigmoid(position_logit[k]) and P(click | seen, x) = sigmoid(MLP(x)). Trained on
logged exposures, the two factors separate position from relevance; the auction then ranks by
bid x q with q = P(click at the top | x) = P(seen | 1) x P(click | seen, x), and prices with the
slot factors alpha_k = P(seen | k) / P(seen | 1).

Features x (ranking/features.py): observed POI latent, the user's inferred interest, their dot
product, observed quality, distance, price level and ad flag, plus the creative's observed style
(zeros and a flag for an organic item's own picture).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PCTRConfig:
    item_features: int
    creative_features: int
    n_positions: int
    hidden: int = 64
    layers: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class PositionAwarePCTR(nn.Module):
    def __init__(self, config: PCTRConfig):
        super().__init__()
        self.config = config
        width = config.item_features + config.creative_features
        blocks: list[nn.Module] = []
        for _ in range(config.layers):
            blocks += [nn.Linear(width, config.hidden), nn.ReLU()]
            width = config.hidden
        self.tower = nn.Sequential(*blocks, nn.Linear(width, 1))
        self.position_logit = nn.Parameter(torch.zeros(config.n_positions))

    def click_logit(self, item: torch.Tensor, creative: torch.Tensor) -> torch.Tensor:
        """logit P(click | seen) [...] from item [..., F_item] and creative [..., F_creative]."""
        x = torch.cat([item, creative], dim=-1).to(self.position_logit.dtype)
        return self.tower(x).squeeze(-1)

    def log_click_probability(self, item, creative, position) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(click at position) and log P(no click) [...]; position is 0-based, long."""
        log_seen = nn.functional.logsigmoid(self.position_logit[position])
        log_click = log_seen + nn.functional.logsigmoid(self.click_logit(item, creative))
        log_no_click = torch.log1p(-torch.exp(log_click).clamp(max=1 - 1e-7))
        return log_click, log_no_click

    def seen_probability(self) -> torch.Tensor:
        """P(seen | k) [K]."""
        return torch.sigmoid(self.position_logit)

    def top_ctr(self, item: torch.Tensor, creative: torch.Tensor) -> torch.Tensor:
        """q = P(click at position 1 | x) [...]."""
        return self.seen_probability()[0] * torch.sigmoid(self.click_logit(item, creative))

    def slot_factors(self, positions: tuple[int, ...]) -> torch.Tensor:
        """alpha of the given 1-based positions relative to position 1, made non-increasing
        (a running minimum: a later slot is never assumed to beat an earlier one)."""
        seen = self.seen_probability().detach()
        alpha = seen[[p - 1 for p in positions]] / seen[0]
        return torch.cummin(alpha.clamp(max=1.0), dim=0).values
