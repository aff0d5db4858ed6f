"""Value and quality distributions: sampling (torch, seeded) and the densities auction theory needs.

Each distribution is a frozen dataclass of its parameters. Continuous ones also give cdf, pdf,
quantile and the virtual value phi(v) = v - (1 - F(v)) / f(v) that Myerson's auction ranks by.
A Mixture of them is how a scenario gets an irregular distribution whose ironing binds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


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
        # low + (high - low) * u, in place; U[0, 1] is u itself (u * 1 + 0 == u: no -0.0)
        if self.high - self.low != 1.0:
            unit.mul_(self.high - self.low)
        return unit.add_(self.low) if self.low != 0.0 else unit

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
        return normal.mul_(self.sigma).add_(self.mean).exp_()  # exp(mean + sigma * z), in place

    def _z(self, v: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return (np.log(np.asarray(v, float)) - self.mean) / self.sigma

    def cdf(self, v: np.ndarray) -> np.ndarray:
        from scipy import special  # lazy: short commands do not pay scipy's import

        return special.ndtr(self._z(v))

    def pdf(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, float)
        z = self._z(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            density = np.exp(-0.5 * z**2) / (v * self.sigma * math.sqrt(2 * math.pi))
        return np.where(v > 0, density, 0.0)

    def quantile(self, q: np.ndarray) -> np.ndarray:
        from scipy import special

        return np.exp(self.mean + self.sigma * special.ndtri(np.asarray(q, float)))

    def virtual_value(self, v: np.ndarray) -> np.ndarray:
        """phi(v) = v - (1 - F(v)) / f(v); the survival/density ratio is taken in log space."""
        from scipy import special

        v = np.asarray(v, float)
        z = self._z(v)
        # (1 - F) / f = v * sigma * sqrt(2 pi) * exp(z^2 / 2) * Phi(-z), with log_ndtr for the tail.
        log_ratio = (
            np.log(v * self.sigma * math.sqrt(2 * math.pi)) + 0.5 * z**2 + special.log_ndtr(-z)
        )
        return v - np.exp(log_ratio)


Component = Uniform | LogNormal


@dataclass(frozen=True)
class Mixture:
    """A finite mixture: with probability weights[i], a draw of components[i].

    F = sum_i w_i F_i and f = sum_i w_i f_i. Bimodal mixtures are irregular (phi falls where the
    density drops between the modes), which is what makes Myerson's allocator iron. Weights are
    positive and sum to 1 (checked when a scenario is loaded, config/scenario.py).
    """

    weights: tuple[float, ...]
    components: tuple[Component, ...]

    def sample(self, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """[B, N] draws: a uniform picks the component, then every component draws [B, N] and
        the picked one is kept (one batched pass, no loop over requests)."""
        pick = torch.rand(shape, generator=generator, dtype=torch.float64)  # [B, N]
        edges = pick.new_tensor(np.cumsum(self.weights)[:-1])  # [C - 1]
        index = torch.bucketize(pick, edges, right=True)  # [B, N] in 0..C-1
        draws = torch.stack([c.sample(shape, generator) for c in self.components], dim=-1)
        return draws.gather(-1, index.unsqueeze(-1)).squeeze(-1)  # [B, N]

    def cdf(self, v: np.ndarray) -> np.ndarray:
        return sum(w * c.cdf(v) for w, c in zip(self.weights, self.components, strict=True))

    def pdf(self, v: np.ndarray) -> np.ndarray:
        return sum(w * c.pdf(v) for w, c in zip(self.weights, self.components, strict=True))

    def quantile(self, q: np.ndarray) -> np.ndarray:
        """inf{v: F(v) >= q} for q in [0, 1], elementwise, by bisection on the cdf (vectorised).

        The quantile lies between the smallest and largest component quantile at q (there every
        F_i is <= q, resp. >= q), so that bracket is halved until its ends are adjacent floats.
        Raises ValueError for q outside [0, 1].
        """
        shape = np.shape(q)
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if np.any(~((q >= 0.0) & (q <= 1.0))):
            raise ValueError("Mixture.quantile: expected q in [0, 1]")
        ends = np.stack([c.quantile(q) for c in self.components])  # [C, *q.shape]
        low, high = ends.min(axis=0), ends.max(axis=0)
        active = (q > 0.0) & (q < 1.0) & (low < high)
        for _ in range(_BISECTION_LIMIT):
            if not active.any():
                break
            below, above = low[active], high[active]  # F(below) <= q <= F(above)
            middle = below + 0.5 * (above - below)
            adjacent = (middle <= below) | (middle >= above)  # no float strictly between
            reaches = self.cdf(middle) >= q[active]
            high[active] = np.where(reaches & ~adjacent, middle, above)
            low[active] = np.where(reaches | adjacent, below, middle)
            active[active] = ~adjacent
        return np.where(q <= 0.0, low, high).reshape(shape)

    def virtual_value(self, v: np.ndarray) -> np.ndarray:
        """phi(v) = v - (1 - F(v)) / f(v); -inf where f(v) = 0 (a gap between components)."""
        v = np.asarray(v, float)
        density = self.pdf(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (1.0 - self.cdf(v)) / density
        return np.where(density > 0, v - ratio, -np.inf)


# Halvings of a bracket down to adjacent floats: at most about 2,100 in float64 (exponent range
# plus mantissa); a bracket within the scenario value range takes a few hundred at worst.
_BISECTION_LIMIT = 2_200

ContinuousDistribution = Uniform | LogNormal | Mixture
Distribution = Fixed | Uniform | LogNormal | Mixture
