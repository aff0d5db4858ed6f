"""The values per click a scenario may draw: what the simulator's float types carry.

Values are drawn in float64, but their narrowest path is float32: the environments'
observations, the generative allocator's bids, the payment network's inputs. They are also
multiplied by click rates and summed over requests. So a value distribution is refused when its
scenario is loaded unless its draws stay within [VALUE_MIN, VALUE_MAX]:

- VALUE_MAX = float32's largest number / 2**32: a sum of 2**32 values (requests x slots) is
  still finite in float32; beyond it, money figures overflow to infinity (null in reports);
- VALUE_MIN = float32's smallest normal number x 2**32: a value times a click rate as small as
  2**-32 is still a number in float32; a distribution whose draws all lie below it would be
  observed as 0.

A uniform on [low, high] (low >= 0; a draw of 0 is a value of 0) needs high in that range. A
lognormal value exp(N(mean, sd^2)) is checked at mean +- TAIL_Z sd: a draw beyond has
probability about 1e-15, and the headroom of 2**32 (a factor e^22) covers it.
"""

from __future__ import annotations

import math

import numpy as np

HEADROOM = 2.0**32
VALUE_MAX = float(np.finfo(np.float32).max) / HEADROOM  # about 7.9e28
VALUE_MIN = float(np.finfo(np.float32).tiny) * HEADROOM  # about 5.05e-29
LOG_VALUE_MAX = math.log(VALUE_MAX)  # about 66.5
LOG_VALUE_MIN = math.log(VALUE_MIN)  # about -65.2
TAIL_Z = 8.0
WHY = (
    "values per click, times click rates and summed over requests, stay finite and nonzero "
    "in float32"
)
RANGE = f"[{VALUE_MIN:.3g}, {VALUE_MAX:.3g}]"


def log_values_fit(mean: float, sd: float) -> bool:
    """Whether exp(N(mean, sd^2)) stays within [VALUE_MIN, VALUE_MAX] at +- TAIL_Z sd."""
    return mean - TAIL_Z * sd >= LOG_VALUE_MIN and mean + TAIL_Z * sd <= LOG_VALUE_MAX


def log_values_text(mean: float, sd: float) -> str:
    """Why a lognormal's draws do not fit, for an error message's 'expected' part."""
    low, high = mean - TAIL_Z * sd, mean + TAIL_Z * sd
    return (
        f"draws in {RANGE}, so that {WHY}; log value {mean:.4g} +- {TAIL_Z:g} x {sd:.4g} "
        f"spans [{low:.4g}, {high:.4g}], beyond [{LOG_VALUE_MIN:.4g}, {LOG_VALUE_MAX:.4g}]"
    )
