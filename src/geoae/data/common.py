"""What the disk and Dirac generators share: sizes, seeds, and the random generator of a seed."""

from __future__ import annotations

import numbers

import torch

__all__ = ["MAX_SIZE", "MAX_SEED", "Seed", "Interval", "generator"]

Seed = int | torch.Generator
Interval = tuple[float, float]

MAX_SIZE = 4096  # image side m / signal length n
MAX_SEED = 2**63 - 1


def generator(seed: Seed) -> torch.Generator:
    """The random generator of ``seed``: a torch.Generator itself, or a fresh one seeded with the integer."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
        return torch.Generator().manual_seed(int(seed))
    raise ValueError(f"seed must be an integer in [0, 2**63 - 1] or a torch.Generator, got {seed!r}")
