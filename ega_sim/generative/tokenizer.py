"""RQ-VAE tokenizer: item embeddings -> semantic IDs (C levels of W codes), EGA-V2 section 3.1.

An MLP encoder maps an embedding to a latent z; a residual quantizer picks, level by level, the
nearest code to what is left of z (z - the codes chosen so far); an MLP decoder reconstructs
the embedding from the sum of the chosen codes. Trained with reconstruction + codebook +
commitment losses (straight-through gradients). Codebooks start from k-means++-style samples of
the residuals, and a code that no item used in an epoch is re-seeded from a random residual of
its level ("dead codes"). Items that share all C codes are told apart by one extra
disambiguation code: their rank among the items sharing the tuple.

POIs and creatives get separate tokenizers (separate codebooks), as in the paper; the paper's
C = 3, W = 1024 is configurable, and small markets use smaller W.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ega_sim.progress import Progress, Stage


@dataclass(frozen=True)
class RQVAEConfig:
    input_dim: int
    latent_dim: int = 16
    hidden: int = 64
    levels: int = 3  # C
    codebook_size: int = 32  # W
    commitment: float = 0.25
    steps: int = 1_500  # optimizer steps, whatever the number of items
    batch_size: int = 128
    learning_rate: float = 2e-3

    def __post_init__(self) -> None:
        for key in (
            "input_dim",
            "latent_dim",
            "hidden",
            "levels",
            "codebook_size",
            "steps",
            "batch_size",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RQVAEConfig.{key}: expected an integer >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualQuantizer(nn.Module):
    """C codebooks of W codes; quantizes residuals level by level."""

    def __init__(self, levels: int, codebook_size: int, dim: int):
        super().__init__()
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, dim) * 0.1)  # [C, W, d]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """z [n, d] -> (quantized [n, d], codes [n, C], codebook+commitment terms, residuals)."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, residuals = [], []
        codebook_loss = z.new_zeros(())
        commitment_loss = z.new_zeros(())
        for codebook in self.codebooks:  # C levels, each batched over items
            residuals.append(residual.detach())
            code = torch.cdist(residual, codebook).argmin(dim=1)  # [n]
            chosen = codebook[code]  # [n, d]
            codebook_loss = codebook_loss + (chosen - residual.detach()).pow(2).sum(1).mean()
            commitment_loss = commitment_loss + (residual - chosen.detach()).pow(2).sum(1).mean()
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(code)
        straight_through = z + (quantized - z).detach()
        return (
            straight_through,
            torch.stack(codes, dim=1),
            codebook_loss,
            commitment_loss,
            residuals,
        )


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, config: RQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = _mlp([config.input_dim, config.hidden, config.latent_dim])
        self.quantizer = ResidualQuantizer(config.levels, config.codebook_size, config.latent_dim)
        self.decoder = _mlp([config.latent_dim, config.hidden, config.input_dim])

    def forward(self, x: torch.Tensor):
        z = self.encoder(x)
        quantized, codes, codebook_loss, commitment_loss, residuals = self.quantizer(z)
        return self.decoder(quantized), codes, codebook_loss, commitment_loss, residuals

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes [n, C] of embeddings x [n, input_dim]."""
        return self.quantizer(self.encoder(x))[1]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]


def _seed_codebooks(model: RQVAE, x: torch.Tensor, generator: torch.Generator) -> None:
    """k-means++-style start: each level's codes are residuals of distinct random items."""
    with torch.no_grad():
        residual = model.encoder(x)
        for codebook in model.quantizer.codebooks:
            picks = torch.randint(x.shape[0], (codebook.shape[0],), generator=generator)
            codebook.copy_(residual[picks])
            residual = residual - codebook[torch.cdist(residual, codebook).argmin(1)]


def train_rqvae(
    embeddings: torch.Tensor,
    config: RQVAEConfig,
    *,
    seed: int = 0,
    progress: Progress = False,
    desc: str = "RQ-VAE",
) -> tuple[RQVAE, dict]:
    """Fit an RQ-VAE to embeddings [n, input_dim] (standardized inside); returns the model
    (eval mode, with the standardization as buffers) and a report."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x = embeddings.float()
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
    x = (x - mean) / scale
    model = RQVAE(config)
    model.register_buffer("input_mean", mean)
    model.register_buffer("input_scale", scale)
    _seed_codebooks(model, x, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    n = x.shape[0]
    batches_per_pass = max(1, -(-n // config.batch_size))
    reseeded = 0
    used = torch.zeros(config.levels, config.codebook_size, dtype=torch.bool)
    order = torch.randperm(n, generator=generator)
    bar = Stage(desc, config.steps, progress=progress)
    for step in range(config.steps):
        position = step % batches_per_pass
        if position == 0 and step > 0:  # a pass over the items is done: revive dead codes
            reseeded += _reseed_dead_codes(model, x, used, generator)
            used.zero_()
            order = torch.randperm(n, generator=generator)
        batch = x[order[position * config.batch_size : (position + 1) * config.batch_size]]
        recon, codes, codebook_loss, commitment_loss, _ = model(batch)
        loss = (
            (recon - batch).pow(2).sum(1).mean()
            + codebook_loss
            + config.commitment * commitment_loss
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        used[torch.arange(config.levels).unsqueeze(0), codes] = True
        bar.update(loss=loss.detach())
    bar.close()
    model.eval()
    report = {
        **tokenizer_report(model, embeddings),
        "dead_codes_reseeded": reseeded,
        "seconds": time.perf_counter() - started,
    }
    return model, report


def _reseed_dead_codes(
    model: RQVAE, x: torch.Tensor, used: torch.Tensor, generator: torch.Generator
) -> int:
    """Move every code no item chose this epoch onto a random residual of its level."""
    dead = ~used
    if not bool(dead.any()):
        return 0
    with torch.no_grad():
        _, _, _, _, residuals = model(x)
        for level, codebook in enumerate(model.quantizer.codebooks):
            slots = torch.nonzero(dead[level]).squeeze(1)
            if len(slots):
                picks = torch.randint(x.shape[0], (len(slots),), generator=generator)
                codebook[slots] = residuals[level][picks]
    return int(dead.sum())


def _standardize(model: RQVAE, embeddings: torch.Tensor) -> torch.Tensor:
    return (embeddings.float() - model.input_mean) / model.input_scale


@torch.no_grad()
def tokenizer_report(model: RQVAE, embeddings: torch.Tensor) -> dict:
    """Codebook usage per level, relative reconstruction error and the collision rate."""
    x = _standardize(model, embeddings)
    codes = model.encode(x)
    recon = model.reconstruct(x)
    usage = [
        float(torch.unique(codes[:, level]).numel()) / model.config.codebook_size
        for level in range(model.config.levels)
    ]
    distinct = torch.unique(codes, dim=0).shape[0]
    return {
        "items": int(x.shape[0]),
        "codebook_usage": usage,
        "relative_reconstruction_error": float((recon - x).pow(2).sum() / x.pow(2).sum()),
        "distinct_code_tuples": int(distinct),
        "collision_rate": 1.0 - distinct / x.shape[0],
    }


def semantic_ids(model: RQVAE, embeddings: torch.Tensor) -> torch.Tensor:
    """Semantic IDs [n, C + 1]: the C codes, then the item's rank among the items that share
    them (0 for most items), so every item has its own ID."""
    codes = model.encode(_standardize(model, embeddings))  # [n, C]
    _, group = torch.unique(codes, dim=0, return_inverse=True)  # [n] tuple id
    order = torch.argsort(group, stable=True)
    sorted_group = group[order]
    start_of_group = torch.ones_like(sorted_group, dtype=torch.bool)
    start_of_group[1:] = sorted_group[1:] != sorted_group[:-1]
    index = torch.arange(len(order))
    group_start = torch.cummax(torch.where(start_of_group, index, 0), dim=0).values
    rank = torch.empty_like(group)
    rank[order] = index - group_start
    return torch.cat([codes, rank.unsqueeze(1)], dim=1)


def poi_embeddings(observed) -> torch.Tensor:
    """What the POI tokenizer reads of each POI [P, F]: observed latent, observed quality, price
    level, location and category (one-hot): platform-side features only."""
    categories = int(observed.poi_category.max()) + 1
    return torch.cat(
        [
            observed.observed_poi_latent,
            observed.observed_poi_quality.unsqueeze(1),
            observed.poi_price_level.unsqueeze(1).to(observed.observed_poi_latent.dtype),
            observed.poi_location,
            nn.functional.one_hot(observed.poi_category, categories).to(
                observed.observed_poi_latent.dtype
            ),
        ],
        dim=1,
    )


def creative_embeddings(observed) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed styles of every existing creative [n, Dc], and which (advertiser, creative) each
    row is [n, 2]."""
    where = torch.nonzero(observed.creative_valid)  # [n, 2]
    return observed.observed_creative_style[where[:, 0], where[:, 1]], where
