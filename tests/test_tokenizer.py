"""The RQ-VAE tokenizer: it learns (beats a random residual codebook), uses its codes, gives
every item its own semantic ID, and is reproducible."""

from __future__ import annotations

import pytest
import torch

from ega_sim.config import load_scenario
from ega_sim.generative.tokenizer import (
    RQVAEConfig,
    creative_embeddings,
    poi_embeddings,
    semantic_ids,
    train_rqvae,
)
from ega_sim.world.feed_market import generate_market


def _clusters(n=1024, clusters=32, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(clusters, dim, generator=generator)
    return centers[torch.randint(clusters, (n,), generator=generator)] + 0.3 * torch.randn(
        n, dim, generator=generator
    )


def _random_codebook_error(x: torch.Tensor, levels: int, size: int, seed: int = 1) -> float:
    """Residual quantization of the standardized data with codes drawn at random from the data
    (no learning): the baseline a trained tokenizer must beat."""
    generator = torch.Generator().manual_seed(seed)
    x = (x - x.mean(0)) / x.std(0)
    residual = x.clone()
    for _ in range(levels):
        codebook = residual[torch.randint(len(x), (size,), generator=generator)]
        residual = residual - codebook[torch.cdist(residual, codebook).argmin(1)]
    return float(residual.pow(2).sum() / x.pow(2).sum())


def test_rqvae_beats_a_random_codebook_and_uses_its_codes():
    x = _clusters()
    config = RQVAEConfig(input_dim=8, levels=3, codebook_size=32, steps=600)
    _model, report = train_rqvae(x, config, seed=0)
    baseline = _random_codebook_error(x, levels=3, size=32)
    assert report["relative_reconstruction_error"] < 0.5 * baseline
    assert min(report["codebook_usage"]) >= 0.8


def test_semantic_ids_are_unique_and_reproducible():
    x = _clusters(n=512)
    config = RQVAEConfig(input_dim=8, levels=2, codebook_size=8, steps=300)  # many collisions
    first, report = train_rqvae(x, config, seed=3)
    assert report["collision_rate"] > 0
    ids = semantic_ids(first, x)
    assert ids.shape == (512, 3)
    assert torch.unique(ids, dim=0).shape[0] == 512
    # The disambiguation code counts 0, 1, 2, ... within each shared tuple.
    _, _group, counts = torch.unique(ids[:, :2], dim=0, return_inverse=True, return_counts=True)
    assert int(ids[:, 2].max()) == int(counts.max()) - 1
    second, _ = train_rqvae(x, config, seed=3)
    assert torch.equal(semantic_ids(second, x), ids)


def test_market_items_tokenize_from_platform_features():
    observed = generate_market(load_scenario("feed_small")).observed()
    pois = poi_embeddings(observed)
    assert pois.shape[0] == 400 and torch.isfinite(pois).all()
    styles, where = creative_embeddings(observed)
    assert styles.shape[0] == int(observed.creative_count.sum()) == where.shape[0]
    model, report = train_rqvae(pois, RQVAEConfig(input_dim=pois.shape[1], steps=1500), seed=0)
    baseline = _random_codebook_error(pois.float(), levels=3, size=32)
    assert report["relative_reconstruction_error"] < 0.5 * baseline
    assert torch.unique(semantic_ids(model, pois), dim=0).shape[0] == 400


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="codebook_size"):
        RQVAEConfig(input_dim=4, codebook_size=0)
