"""The data configs: ``DiskData`` and ``DiracData``, validated frozen dataclasses whose ``make(n, seed=s)``
generates a data set and its ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..checks import MAX_VALUES
from ..checks import check_choice as _check_choice
from ..checks import check_int as _check_int
from ..checks import check_volume as _check_volume
from .common import MAX_SIZE, Interval, Seed
from .diracs import _check_blur, _check_dirac_args, _scheme_positions, make_diracs
from .disks import DENSITIES, RENDERINGS, _allowed_intervals, _check_shape, _check_sigma, _normalise_exclude, make_disks


@dataclass(frozen=True)
class DiskData:
    """A disk data set: n images (or fresh ones every batch when ``fresh``), radii as in make_disks.

    ``density``, ``shape`` and ``ndim`` (beyond the paper; module docstring) are written by ``to_dict`` only
    when not their defaults (``OMIT_WHEN_DEFAULT``), so the dicts and run digests of the paper's configs are
    those of earlier versions. ``fresh`` batches are drawn by the training loop as uniform 2-D disks, so it
    needs the defaults.
    """

    OMIT_WHEN_DEFAULT: ClassVar[tuple[str, ...]] = ("density", "shape", "ndim", "quantise")

    n: int
    size: int = 64
    rendering: str = "area"
    sigma: float = 0.5
    r_min: float = 0.0
    r_max: float | None = None
    exclude: tuple[Interval, ...] = ()
    fresh: bool = False
    density: str = "uniform"
    shape: str = "disk"
    ndim: int = 2
    quantise: int = 0  # L > 0: values stored as floor(L·x)/L (255: the released code's 8-bit PNG files)

    def __post_init__(self):
        object.__setattr__(self, "exclude", _normalise_exclude(self.exclude))
        self.validate()

    def validate(self) -> DiskData:
        size = _check_int("size", self.size, 2, MAX_SIZE)
        _check_int("n", self.n, 1, MAX_VALUES)
        _check_choice("rendering", self.rendering, RENDERINGS)
        _check_choice("density", self.density, DENSITIES)
        ndim = _check_shape(self.shape, self.ndim, self.rendering)
        _check_volume("n", self.n, self.n, size**ndim)
        _check_int("quantise", self.quantise, 0, 65535)
        _check_sigma(self.sigma)
        _allowed_intervals(size, self.r_min, self.r_max, self.exclude)
        if not isinstance(self.fresh, bool):
            raise ValueError(f"fresh must be True or False, got {self.fresh!r}")
        if self.fresh and not self.paper_disks:
            raise ValueError(f"fresh=True draws uniform 2-D disks every batch: it needs density='uniform', "
                             f"shape='disk', ndim=2, got density={self.density!r}, shape={self.shape!r}, ndim={ndim}")
        return self

    @property
    def paper_disks(self) -> bool:
        """Uniform radii, centred 2-D disks: the paper's data (what ``fresh`` batches and ``DiskFactors`` draw)."""
        return (self.density, self.shape, self.ndim) == ("uniform", "disk", 2)

    def make(self, n: int | None = None, seed: Seed | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (N, 1, m, m) or signals (N, 1, n), radii (N,)) with N = n, or self.n when n is None; ``seed``
        is required.

        The signature is that of :meth:`DiracData.make`: ``config.make(n, seed=s)`` for either kind.
        """
        return make_disks(
            self.n if n is None else n,
            size=self.size,
            rendering=self.rendering,
            sigma=self.sigma,
            r_min=self.r_min,
            r_max=self.r_max,
            exclude=self.exclude,
            density=self.density,
            shape=self.shape,
            ndim=self.ndim,
            quantise=self.quantise,
            seed=seed,
        )


@dataclass(frozen=True)
class DiracData:
    """A Dirac data set: the positions of ``scheme`` once each (n=None) or n draws from them."""

    n: int | None = None
    size: int = 64
    ndim: int = 1
    scheme: str = "all"
    fraction: float = 0.5
    hole: tuple[int, int] | None = None
    stride: int = 2
    quadrant: int = 3
    blur: float = 0.0  # σ of Gaussian-blurred Diracs (render_diracs); 0: one-hot

    def __post_init__(self):
        if isinstance(self.hole, list):
            object.__setattr__(self, "hole", tuple(self.hole))
        self.validate()

    def validate(self) -> DiracData:
        if self.n is not None:
            _check_int("n", self.n, 1, MAX_VALUES)
        size, ndim, hole = _check_dirac_args(
            self.size, self.ndim, self.scheme, self.fraction, self.hole, self.stride, self.quadrant
        )
        _check_blur(self.blur)
        if self.n is not None:
            _check_volume("n", self.n, self.n, size**ndim)
        else:  # each position of the scheme once
            count = len(_scheme_positions(size, ndim, self.scheme, self.fraction, hole, self.stride, self.quadrant,
                                          torch.Generator().manual_seed(0)))
            _check_volume("size", size, count, size**ndim)
        return self

    def make(self, n: int | None = None, seed: Seed | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(signals, positions) as in :func:`make_diracs`, with n draws (n=None: ``self.n``; both None: each
        position of the scheme once); ``seed`` is required. The signature is that of :meth:`DiskData.make`.
        """
        return make_diracs(
            self.n if n is None else n,
            size=self.size,
            ndim=self.ndim,
            scheme=self.scheme,
            fraction=self.fraction,
            hole=self.hole,
            stride=self.stride,
            quadrant=self.quadrant,
            seed=seed,
            blur=self.blur,
        )
