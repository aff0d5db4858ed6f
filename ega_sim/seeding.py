"""Run seed -> named streams -> torch generators.

Every random draw takes a generator made here from the run's seed and the name of what it is
for, so adding a new stream never shifts the numbers of an existing one. Generators live on the
CPU; tensors are moved to the device afterwards, so a seed gives the same numbers everywhere.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, *stream: str | int) -> int:
    """A 63-bit seed for the named stream of a run, independent of every other stream."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    key = "/".join(str(part) for part in stream).encode()
    stream_words = np.frombuffer(hashlib.sha256(key).digest()[:16], dtype=np.uint32).tolist()
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=tuple(stream_words))
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def make_generator(seed: int, *stream: str | int) -> torch.Generator:
    """A CPU torch generator for the named stream of a run."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(seed, *stream))
    return generator
