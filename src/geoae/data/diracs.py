"""Diracs (position): one-hot (or blurred) signals and images, the sampling schemes of the training positions
(all, random, hole, stride, quadrant), ``make_diracs``. See the package docstring."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ..checks import MAX_VALUES
from ..checks import check_choice as _check_choice
from ..checks import check_int as _check_int
from ..checks import check_volume as _check_volume
from .common import MAX_SIZE, Seed
from .common import generator as _generator

SCHEMES = ("all", "random", "hole", "stride", "quadrant")


def _default_hole(size: int) -> tuple[int, int]:
    """The middle quarter of [0, size) (at least one position)."""
    width = max(1, size // 4)
    lo = (size - width) // 2
    return lo, lo + width


def _check_dirac_args(size, ndim, scheme, fraction, hole, stride, quadrant):
    """Validate the Dirac scheme parameters; return (size, ndim, hole) with the default hole resolved."""
    size = _check_int("size", size, 2, MAX_SIZE)
    ndim = _check_int("ndim", ndim, 1, 2)
    _check_choice("scheme", scheme, SCHEMES)
    if not (isinstance(fraction, numbers.Real) and not isinstance(fraction, bool) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    _check_int("stride", stride, 1, size)
    _check_int("quadrant", quadrant, 0, 3)
    if scheme == "quadrant" and ndim != 2:
        raise ValueError("quadrant is only defined for ndim=2 (got ndim=1); use scheme='hole' in 1-D")
    if hole is None:
        return size, ndim, _default_hole(size)
    ints = (
        isinstance(hole, Sequence)
        and len(hole) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in hole)
    )
    if not (ints and 0 <= hole[0] < hole[1] <= size):
        raise ValueError(
            f"hole must be a pair of ints (lo, hi) with 0 <= lo < hi <= size = {size}, got {hole!r}"
        )
    if (hole[0], hole[1]) == (0, size):
        raise ValueError(f"hole={tuple(hole)!r} removes every position of [0, {size})")
    return size, ndim, (int(hole[0]), int(hole[1]))


# ----------------------------------------------------------------------------------------------- Diracs


def _scheme_positions(size, ndim, scheme, fraction, hole, stride, quadrant, gen) -> torch.Tensor:
    """Positions kept by ``scheme`` (arguments already validated): (P,) or (P, 2) int64."""
    if ndim == 1:
        pos = torch.arange(size)
        coords = pos[:, None]
    else:
        ii, jj = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        pos = torch.stack([ii.ravel(), jj.ravel()], dim=1)
        coords = pos
    if scheme == "all":
        keep = torch.ones(len(pos), dtype=torch.bool)
    elif scheme == "random":
        count = max(1, round(fraction * len(pos)))
        keep = torch.zeros(len(pos), dtype=torch.bool)
        keep[torch.randperm(len(pos), generator=gen)[:count]] = True
    elif scheme == "hole":
        lo, hi = hole
        keep = ~((coords >= lo) & (coords < hi)).all(dim=1)
    elif scheme == "stride":
        keep = (coords % stride == 0).all(dim=1)
    else:  # quadrant: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
        bottom, right = coords[:, 0] >= size // 2, coords[:, 1] >= size // 2
        keep = ~((bottom == bool(quadrant // 2)) & (right == bool(quadrant % 2)))
    return pos[keep]


def dirac_positions(
    *,
    size: int = 64,
    ndim: int = 1,
    scheme: str = "all",
    fraction: float = 0.5,
    hole: tuple[int, int] | None = None,
    stride: int = 2,
    quadrant: int = 3,
    seed: Seed = 0,
) -> torch.Tensor:
    """The training positions of a sampling scheme: (P,) int64 (1-D) or (P, 2) int64 (row, col) (2-D).

    - ``all``: every position; ``random``: a seeded subset of max(1, round(fraction * total));
    - ``hole``: positions in [lo, hi) removed (default: the middle quarter); in 2-D a square hole
      (row and col both in [lo, hi));
    - ``stride``: every ``stride``-th position (in 2-D along both axes), starting at 0;
    - ``quadrant`` (2-D only): one quadrant held out (0 top-left, 1 top-right, 2 bottom-left,
      3 bottom-right; bottom means row >= m // 2), as in the CoordConv paper's split.
    Positions are listed in increasing (row-major) order.
    """
    size, ndim, hole = _check_dirac_args(size, ndim, scheme, fraction, hole, stride, quadrant)
    return _scheme_positions(size, ndim, scheme, fraction, hole, stride, quadrant, _generator(seed))


def all_dirac_positions(size: int = 64, ndim: int = 1) -> torch.Tensor:
    """Every position, the Dirac test set: (n,) or (m*m, 2) int64."""
    return dirac_positions(size=size, ndim=ndim, scheme="all")


def render_diracs(positions, *, size: int = 64, ndim: int = 1, blur: float = 0.0) -> torch.Tensor:
    """One-hot signals: positions (P,) -> (P, 1, n), or (P, 2) (row, col) -> (P, 1, m, m); float32.

    ``blur`` = σ > 0 gives Gaussian-blurred Diracs instead, exp(−|t − p|² / 2σ²) at every sample t (peak 1 at
    p, separable in 2-D; not renormalised at the borders); σ = 0 is the one-hot signal.
    """
    size = _check_int("size", size, 2, MAX_SIZE)
    ndim = _check_int("ndim", ndim, 1, 2)
    blur = _check_blur(blur)
    try:
        pos = torch.as_tensor(positions)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"positions must be integers (P,) or (P, 2), got {type(positions).__name__} ({err})") from None
    if pos.dim() != ndim or (ndim == 2 and pos.shape[1] != 2):
        raise ValueError(
            f"positions must have shape {'(P,)' if ndim == 1 else '(P, 2)'} for ndim={ndim}, "
            f"got {tuple(pos.shape)}"
        )
    if pos.dtype.is_floating_point or pos.dtype == torch.bool or pos.dtype.is_complex:
        raise ValueError(f"positions must be integers, got dtype {pos.dtype}")
    _check_volume("positions", f"<{len(pos)} positions>", len(pos), size**ndim)
    if pos.numel() and (pos.min() < 0 or pos.max() >= size):
        raise ValueError(
            f"positions must lie in [0, size) = [0, {size}), got min {int(pos.min())}, max {int(pos.max())}"
        )
    pos = pos.long()
    if blur > 0:
        t = torch.arange(size, dtype=torch.float64)
        axes = [torch.exp(-(t[None] - c[:, None].double()) ** 2 / (2 * blur * blur))
                for c in (pos[:, None] if ndim == 1 else pos).T]
        out = axes[0] if ndim == 1 else axes[0][:, :, None] * axes[1][:, None, :]
        return out.float().reshape(len(pos), 1, *(size,) * ndim)
    idx = pos if ndim == 1 else pos[:, 0] * size + pos[:, 1]
    out = torch.zeros(len(pos), size**ndim, dtype=torch.float32)
    out[torch.arange(len(pos)), idx] = 1.0
    return out.reshape(len(pos), 1, *(size,) * ndim)


def _check_blur(blur) -> float:
    if isinstance(blur, bool) or not isinstance(blur, numbers.Real) or not (math.isfinite(blur) and blur >= 0):
        raise ValueError(f"blur must be a finite number >= 0 (the Gaussian σ in samples; 0: one-hot), got {blur!r}")
    return float(blur)


def make_diracs(
    n: int | None = None,
    *,
    size: int = 64,
    ndim: int = 1,
    scheme: str = "all",
    fraction: float = 0.5,
    hole: tuple[int, int] | None = None,
    stride: int = 2,
    quadrant: int = 3,
    seed: Seed = 0,
    blur: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dirac signals and their positions: ((N, 1, n) or (N, 1, m, m) float32, (N,) or (N, 2) int64).

    n=None: each of the scheme's P positions once (N = P); n=int: n positions drawn with replacement
    from them. One generator drives both the scheme's subset and the draw, so the positions are
    those of ``dirac_positions(..., seed=seed)``. ``blur``: see ``render_diracs``.
    """
    _check_blur(blur)
    if n is not None:
        n = _check_int("n", n, 1, MAX_VALUES)
    size, ndim, hole = _check_dirac_args(size, ndim, scheme, fraction, hole, stride, quadrant)
    if n is not None:
        _check_volume("n", n, n, size**ndim)
    gen = _generator(seed)
    pos = _scheme_positions(size, ndim, scheme, fraction, hole, stride, quadrant, gen)
    if n is None:
        _check_volume("size", size, len(pos), size**ndim)  # each position once
    else:
        pos = pos[torch.randint(len(pos), (n,), generator=gen)]
    return render_diracs(pos, size=size, ndim=ndim, blur=blur), pos
