"""The payment network: per shown ad, price per click = sigmoid(MLP(features)) x own bid.

The rate lies in [0, 1], so price <= bid holds by construction (IR), and a rate that can fall
as the own bid rises lets the price stay flat inside a slot, which incentive compatibility
asks for (Myerson's lemma). What the features are depends on the allocator; each builder
(payment/features.py) documents its own. The network only sees numbers in value units divided
by `value_scale` (a typical value per click, fixed at training), so one set of training
settings fits markets of any value scale. Inputs are clipped to +-INPUT_CAP (in float32 an
absurd bid would overflow to infinity and the rate to NaN); the price itself is never clipped.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

INPUT_CAP = 1.0e6


@dataclass(frozen=True)
class PaynetConfig:
    """The network's shape."""

    hidden: int = 64
    layers: int = 2  # hidden layers

    def __post_init__(self) -> None:
        for key in ("hidden", "layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"paynet {key}: expected an integer >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class PaymentNetwork(nn.Module):
    """features [..., F] and own bid [...] -> price per click [...] in [0, bid]."""

    def __init__(
        self,
        n_features: int,
        config: PaynetConfig | None = None,
        generator: torch.Generator | None = None,
    ):
        """Hidden layers start as torch's default Linear init, drawn from `generator` (the
        run's seed); the output layer starts at zero, i.e. rate 1/2 everywhere."""
        config = PaynetConfig() if config is None else config
        super().__init__()
        self.n_features = n_features
        self.config = config
        width = [n_features + 1] + [config.hidden] * config.layers  # +1: the own bid itself
        blocks: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(width):
            blocks += [nn.Linear(fan_in, fan_out), nn.GELU()]
        self.body = nn.Sequential(*blocks)
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        self.head = nn.Linear(config.hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("value_scale", torch.ones(()))

    def rate(self, features: torch.Tensor, bid: torch.Tensor) -> torch.Tensor:
        """sigmoid(MLP([features, bid / value_scale])): [...] in [0, 1]."""
        scaled_bid = (bid / self.value_scale).unsqueeze(-1)
        inputs = torch.cat([features, scaled_bid.to(features.dtype)], dim=-1)  # [..., F + 1]
        inputs = inputs.clamp(-INPUT_CAP, INPUT_CAP).to(torch.float32)
        return torch.sigmoid(self.head(self.body(inputs))).squeeze(-1)

    def forward(self, features: torch.Tensor, bid: torch.Tensor) -> torch.Tensor:
        """Price per click [...] = rate x bid, in the bid's dtype; never above the bid."""
        return self.rate(features, bid).to(bid.dtype) * bid
