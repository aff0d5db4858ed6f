"""Value and quality distributions: sampling (torch, seeded) and the densities auction theory needs.

Each distribution is a frozen dataclass of its parameters. Continuous ones also give cdf, pdf,
quantile and the virtual value phi(v) = v - (1 - F(v)) / f(v) that Myerson's auction ranks by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special


@dataclass(frozen=True)
class Fixed:
    """A constant: one number for every bidder, or one number per bidder (`values`)."""

    values: tuple[float, ...]

    def sample(self, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        batch, n = shape
        if len(self.values) == 1:
            return torch.full((batch, n), self.values[0], dtype=torch.float64)
        if len(self.values) != n:
            raise ValueError(f"Fixed has {len(self.values)} values for {n} bidders")
        return torch.tensor(self.values, dtype=torch.float64).expand(batch, n).clone()


@dataclass(frozen=True)
class Uniform:
    """Uniform on [low, high]."""

    low: float
    high: float

    def sample(self, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        unit = torch.rand(shape, generator=generator, dtype=torch.float64)
        return self.low + (self.high - self.low) * unit

    def cdf(self, v: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(v, float) - self.low) / (self.high - self.low), 0.0, 1.0)

    def pdf(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, float)
        inside = (v >= self.low) & (v <= self.high)
        return np.where(inside, 1.0 / (self.high - self.low), 0.0)

    def quantile(self, q: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * np.asarray(q, float)

    def virtual_value(self, v: np.ndarray) -> np.ndarray:
        """phi(v) = 2v - high on the support: increasing, so the uniform is regular."""
        return 2.0 * np.asarray(v, float) - self.high


@dataclass(frozen=True)
class LogNormal:
    """exp(N(mean, sigma^2)): `mean` and `sigma` are those of the underlying normal."""

    mean: float
    sigma: float

    def sample(self, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        normal = torch.randn(shape, generator=generator, dtype=torch.float64)
        return torch.exp(self.mean + self.sigma * normal)

    def _z(self, v: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return (np.log(np.asarray(v, float)) - self.mean) / self.sigma

    def cdf(self, v: np.ndarray) -> np.ndarray:
        return special.ndtr(self._z(v))

    def pdf(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, float)
        z = self._z(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            density = np.exp(-0.5 * z**2) / (v * self.sigma * math.sqrt(2 * math.pi))
        return np.where(v > 0, density, 0.0)

    def quantile(self, q: np.ndarray) -> np.ndarray:
        return np.exp(self.mean + self.sigma * special.ndtri(np.asarray(q, float)))

    def virtual_value(self, v: np.ndarray) -> np.ndarray:
        """phi(v) = v - (1 - F(v)) / f(v); the survival/density ratio is taken in log space."""
        v = np.asarray(v, float)
        z = self._z(v)
        # (1 - F) / f = v * sigma * sqrt(2 pi) * exp(z^2 / 2) * Phi(-z), with log_ndtr for the tail.
        log_ratio = (
            np.log(v * self.sigma * math.sqrt(2 * math.pi)) + 0.5 * z**2 + special.log_ndtr(-z)
        )
        return v - np.exp(log_ratio)


ContinuousDistribution = Uniform | LogNormal
Distribution = Fixed | Uniform | LogNormal
