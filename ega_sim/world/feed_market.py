"""Generate a feed market: POIs, advertisers with creatives, users with histories.

Everything is drawn from `market.world_seed` with one named stream per part, so a market is
the same on every machine. The `FeedMarket` holds the ground truth (latent vectors, qualities,
creative appeals, value means) and, separately, the platform's noisy observations of it
(`observed_*`); mechanisms and learned models read only the observations and the logs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.seeding import make_generator
from ega_sim.world.sampling import noisy_top_k

N_PRICE_LEVELS = 4


class _TensorFields:
    """`to(device)` for a frozen dataclass of tensors."""

    def to(self, device: torch.device | str):
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return dataclasses.replace(self, **moved)


@dataclass(frozen=True)
class ObservedMarket(_TensorFields):
    """What the platform knows of a market: locations, price levels, categories, who
    advertises with which creatives, users' histories, and noisy latents, qualities and
    creative styles. Learned models and mechanisms read this, never the FeedMarket truth."""

    config: FeedMarketConfig
    poi_category: torch.Tensor  # [P] long
    poi_location: torch.Tensor  # [P, 2]
    poi_price_level: torch.Tensor  # [P] long, 1..4
    advertiser_poi: torch.Tensor  # [A] long
    creative_count: torch.Tensor  # [A] long
    user_location: torch.Tensor  # [U, 2]
    user_history: torch.Tensor  # [U, H] long
    observed_poi_latent: torch.Tensor  # [P, D] latent + noise
    observed_poi_quality: torch.Tensor  # [P] quality + noise
    observed_creative_style: torch.Tensor  # [A, Cmax, Dc] style + noise

    @property
    def max_creatives(self) -> int:
        return self.observed_creative_style.shape[1]

    @property
    def creative_valid(self) -> torch.Tensor:
        """[A, Cmax] bool: which creative slots exist."""
        slots = torch.arange(self.max_creatives, device=self.creative_count.device)
        return slots < self.creative_count.unsqueeze(1)

    @property
    def is_advertiser(self) -> torch.Tensor:
        """[P] bool."""
        flags = torch.zeros(
            self.poi_location.shape[0], dtype=torch.bool, device=self.advertiser_poi.device
        )
        flags[self.advertiser_poi] = True
        return flags

    def user_observed_interest(self, users: torch.Tensor) -> torch.Tensor:
        """[B, D]: users' interests as the platform infers them, the normalized mean observed
        latent of their histories."""
        history = self.observed_poi_latent[self.user_history[users]]  # [B, H, D]
        return F.normalize(history.mean(dim=1), dim=-1)


@dataclass(frozen=True)
class FeedMarket(_TensorFields):
    """The generated market: the ground truth, and the platform's view of it (`platform`).
    P POIs, A advertisers (a subset of the POIs), U users."""

    config: FeedMarketConfig
    platform: ObservedMarket  # what the platform sees: locations, histories, noisy features
    poi_quality: torch.Tensor  # [P] standard normal
    poi_latent: torch.Tensor  # [P, D] unit vectors (category centroid + spread)
    poi_thumbnail_appeal: torch.Tensor  # [P] appeal of an organic item's own picture
    advertiser_value_mean: torch.Tensor  # [A] mean value per click
    creative_style: torch.Tensor  # [A, Cmax, Dc] style vectors (0 for missing creatives)
    creative_appeal: torch.Tensor  # [A, Cmax] standard-normal appeal (0 for missing)
    user_latent: torch.Tensor  # [U, D] unit interest vectors

    def to(self, device: torch.device | str) -> FeedMarket:
        return dataclasses.replace(super().to(device), platform=self.platform.to(device))

    @property
    def n_pois(self) -> int:
        return self.poi_quality.shape[0]

    @property
    def n_advertisers(self) -> int:
        return self.advertiser_value_mean.shape[0]

    @property
    def n_users(self) -> int:
        return self.user_latent.shape[0]

    @property
    def max_creatives(self) -> int:
        return self.creative_appeal.shape[1]

    @property
    def organic_poi(self) -> torch.Tensor:
        """[P - A] long: POIs that do not advertise."""
        return torch.nonzero(~self.platform.is_advertiser).squeeze(1)

    def observed(self) -> ObservedMarket:
        """The platform's view of this market."""
        return self.platform


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def generate_market(config: FeedMarketConfig) -> FeedMarket:
    """Draw a market from the scenario's world seed (float64 on the CPU). feed_medium takes
    seconds: build it once, in its world (world/build.py), and hand the world down."""
    m, obs = config.market, config.observation
    seed = m.world_seed

    def stream(name: str) -> torch.Generator:
        return make_generator(seed, "market", name)

    n_pois, dim = m.n_pois, m.latent_dim
    g = stream("pois")
    centroids = _unit(torch.randn(m.n_categories, dim, generator=g, dtype=torch.float64))
    category = torch.randint(m.n_categories, (n_pois,), generator=g)
    latent = _unit(
        centroids[category] + 0.6 * torch.randn(n_pois, dim, generator=g, dtype=torch.float64)
    )
    location = torch.rand(n_pois, 2, generator=g, dtype=torch.float64)
    price_level = torch.randint(1, N_PRICE_LEVELS + 1, (n_pois,), generator=g)
    quality = torch.randn(n_pois, generator=g, dtype=torch.float64)
    thumbnail = torch.randn(n_pois, generator=g, dtype=torch.float64)

    g = stream("advertisers")
    n_adv = config.n_advertisers
    advertiser_poi = torch.randperm(n_pois, generator=g)[:n_adv].sort().values
    log_value_mean = config.values.mean_log + config.values.spread * torch.randn(
        n_adv, generator=g, dtype=torch.float64
    )
    value_mean = torch.exp(log_value_mean)
    count = torch.randint(m.creatives_min, m.creatives_max + 1, (n_adv,), generator=g)
    valid = torch.arange(m.creatives_max) < count.unsqueeze(1)
    style = torch.randn(n_adv, m.creatives_max, m.creative_dim, generator=g, dtype=torch.float64)
    # Appeal is a fixed linear read of the style plus an idiosyncratic part, so observed styles
    # predict it, imperfectly.
    direction = _unit(torch.randn(m.creative_dim, generator=g, dtype=torch.float64))
    idiosyncratic = torch.randn(n_adv, m.creatives_max, generator=g, dtype=torch.float64)
    appeal = (0.8 * style @ direction + 0.6 * idiosyncratic) * valid
    style = style * valid.unsqueeze(2)

    g = stream("users")
    user_category = torch.randint(m.n_categories, (m.n_users,), generator=g)
    user_latent = _unit(
        centroids[user_category]
        + 0.8 * torch.randn(m.n_users, dim, generator=g, dtype=torch.float64)
    )
    user_location = torch.rand(m.n_users, 2, generator=g, dtype=torch.float64)

    g = stream("observations")
    observed_latent = latent + obs.latent_noise * torch.randn(
        n_pois, dim, generator=g, dtype=torch.float64
    )
    observed_quality = quality + obs.quality_noise * torch.randn(
        n_pois, generator=g, dtype=torch.float64
    )
    observed_style = (
        style + obs.creative_noise * torch.randn(style.shape, generator=g, dtype=torch.float64)
    ) * valid.unsqueeze(2)

    history = _generate_histories(
        config, user_latent, user_location, latent, location, quality, stream("histories")
    )
    platform = ObservedMarket(
        config=config,
        poi_category=category,
        poi_location=location,
        poi_price_level=price_level,
        advertiser_poi=advertiser_poi,
        creative_count=count,
        user_location=user_location,
        user_history=history,
        observed_poi_latent=observed_latent,
        observed_poi_quality=observed_quality,
        observed_creative_style=observed_style,
    )
    return FeedMarket(
        config=config,
        platform=platform,
        poi_quality=quality,
        poi_latent=latent,
        poi_thumbnail_appeal=thumbnail,
        advertiser_value_mean=value_mean,
        creative_style=style,
        creative_appeal=appeal,
        user_latent=user_latent,
    )


def _generate_histories(
    config: FeedMarketConfig,
    user_latent: torch.Tensor,
    user_location: torch.Tensor,
    poi_latent: torch.Tensor,
    poi_location: torch.Tensor,
    poi_quality: torch.Tensor,
    generator: torch.Generator,
    chunk: int = 4_096,
) -> torch.Tensor:
    """Each user's past POIs, drawn without replacement with the click model's appeal
    (match, quality, distance) as logits: a Gumbel top-H, in chunks of users."""
    click = config.click_model
    scale = config.requests.neighborhood
    histories = []
    for start in range(0, user_latent.shape[0], chunk):
        users = slice(start, start + chunk)
        distance = torch.cdist(user_location[users], poi_location) / scale  # [b, P]
        logits = (
            click.match_weight * user_latent[users] @ poi_latent.T
            + click.quality_weight * poi_quality
            - click.distance_weight * distance
        )
        histories.append(noisy_top_k(logits, config.market.history_length, 1.0, generator))
    return torch.cat(histories)
