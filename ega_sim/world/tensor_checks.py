"""Checks of the money and probability tensors that enter a mechanism from the Python API.

A scenario file's values are checked when it is loaded (config/); these are the same rules for
tensors built by hand: real floating-point numbers (a bool or integer tensor is refused, not
read as 0/1), finite, and in range. Each check costs one pass and one device sync at most; the
specific error is only worked out once something is wrong.
"""

from __future__ import annotations

import torch


def check_floating(tensor: object, name: str) -> None:
    """A torch.Tensor of real floating-point numbers (TypeError naming `name` otherwise)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor (float32 or float64), got {tensor.dtype}"
        )


def in_range_flag(
    tensor: torch.Tensor, low: float, high: float, *, low_open: bool = False
) -> torch.Tensor:
    """A 0-d bool tensor: every element is finite and lies in [low, high] ((low, high] with
    `low_open`); NaN fails. No sync: callers combine flags and read them once."""
    if tensor.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=tensor.device)
    lowest, highest = torch.aminmax(tensor)  # one pass; NaN propagates and fails both
    above = lowest > low if low_open else lowest >= low
    return above & (highest <= high) & (highest < torch.inf)


def range_error(
    tensor: torch.Tensor, name: str, expected: str, low: float, *, low_open: bool = False
) -> ValueError:
    """The one-line error of a tensor that failed `in_range_flag`."""
    if not bool(torch.isfinite(tensor).all()):
        return ValueError(f"{name}: expected finite numbers, got NaN or infinity")
    lowest, highest = torch.aminmax(tensor)
    bad = float(lowest) if (lowest <= low if low_open else lowest < low) else float(highest)
    return ValueError(f"{name}: expected {expected}, got {bad}")


def check_nonnegative(tensor: torch.Tensor, name: str, what: str = "numbers >= 0") -> None:
    """Finite numbers >= 0, of any shape (ValueError naming `name` otherwise)."""
    check_floating(tensor, name)
    if not bool(in_range_flag(tensor, 0.0, torch.inf)):
        raise range_error(tensor, name, what, 0.0)
