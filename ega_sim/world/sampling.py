"""Noisy top-k draws: how requests pick nearby candidates and users pick their histories."""

from __future__ import annotations

import torch


def _gumbel(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(uniform))


SHORTLIST = 4  # a noisy top-k draws among the SHORTLIST x k best scores only


def noisy_top_k(
    score: torch.Tensor, k: int, noise: float, generator: torch.Generator
) -> torch.Tensor:
    """Indices [B, k] of the k largest score + noise x Gumbel, best first.

    The Gumbel draw runs over the SHORTLIST x k highest scores of each row rather than all of
    them (the rest almost never wins, and drawing noise for thousands of POIs per request
    dominated the cost), which truncates the far tail of the sampling distribution.
    """
    width = min(score.shape[1], SHORTLIST * k)
    shortlist = torch.topk(score, width, dim=1)
    noisy = shortlist.values + noise * _gumbel(shortlist.values.shape, generator)
    return shortlist.indices.gather(1, torch.topk(noisy, k, dim=1).indices)
