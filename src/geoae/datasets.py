"""geoae's disks and Diracs in the interfaces other tools expect: PyTorch datasets and ground-truth factors.

- ``DiskDataset`` / ``DiracDataset``: map-style ``torch.utils.data.Dataset`` s made once from a data config
  (``data.DiskData`` / ``data.DiracData``, seeded): item i is ``(x, y)`` with x the image (1, m, m) or
  signal (1, n) float32 and y its ground truth (the radius, () float32; the position, () or (2,) int64).
- ``DiskFactors`` / ``DiracFactors``: the two-step generative model "factors → observation" of the
  disentanglement libraries (disentanglement_lib's ``GroundTruthData``; disent's factor names and sizes), so
  their metrics (β-VAE, FactorVAE, MIG, DCI, ...) run on geoae data, and with ``representation_function``
  on geoae models. Conventions:

  - factors are integer arrays (num, num_factors), factor i taking the values 0 … factors_num_values[i] − 1;
  - observations are numpy float32 arrays (num, *observation_shape), channels last: (num, m, m, 1) for
    images, (num, n, 1) for 1-D signals;
  - ``random_state`` is a ``numpy.random.RandomState`` (observations are deterministic here: the
    renderings have no noise, so only ``sample_factors`` draws from it).

Disk factor ``radius``: the radius range [r_min, r_max] of the config (r_max = m/2 by default) cut into
``num_values`` equal bins (``RADIUS_VALUES`` = 32 by default); value k is rendered at the bin centre
r_k = r_min + (k + ½)·(r_max − r_min)/num_values, and ``radii_to_factors`` maps a radius back to its bin.
Factors are drawn uniformly over the bins whose centre the config allows (a bin centre inside one of its
``exclude`` intervals is never drawn, but can still be rendered).

Dirac factors: ``position`` (1-D, n values) or ``row`` and ``column`` (2-D, m values each), drawn
uniformly over the positions of the config's sampling scheme (``scheme_seed`` fixes the subset of the
``random`` scheme).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import DiracData, DiskData, Seed, dirac_positions, render_diracs, render_disks

__all__ = [
    "RADIUS_VALUES",
    "DiskDataset",
    "DiracDataset",
    "DiskFactors",
    "DiracFactors",
    "representation_function",
]

RADIUS_VALUES = 32  # default number of values of the disk radius factor


# ------------------------------------------------------------------------------------- torch datasets


class _ConfigDataset(Dataset):
    """Images and ground truth of a data config, made once: item i = (x_i, y_i)."""

    CONFIG: type = object

    def __init__(self, config, n: int | None = None, *, seed: Seed):
        if not isinstance(config, self.CONFIG):
            raise ValueError(f"{type(self).__name__} needs a {self.CONFIG.__name__}, got {type(config).__name__}")
        self.config = config
        self.images, self.targets = config.make(n, seed=seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.targets[i]


class DiskDataset(_ConfigDataset):
    """Disks of ``DiskData`` (n images, default ``config.n``): item = (image (1, m, m), radius () float32).

    A ``fresh`` config gives a fixed set all the same (a Dataset has a length); draw a new one per epoch
    with another ``seed``.
    """

    CONFIG = DiskData


class DiracDataset(_ConfigDataset):
    """Diracs of ``DiracData``: item = (signal (1, n) or image (1, m, m), position () or (2,) int64)."""

    CONFIG = DiracData


# ------------------------------------------------------------------------------------- factor adapters


def _check_random_state(random_state) -> np.random.RandomState:
    if not isinstance(random_state, np.random.RandomState):
        raise ValueError(f"random_state must be a numpy.random.RandomState, got {type(random_state).__name__}")
    return random_state


class _Factors:
    """The shared part of the ground-truth interface; subclasses define the factors and the rendering."""

    factor_names: tuple[str, ...]
    factors_num_values: list[int]
    observation_shape: list[int]

    @property
    def num_factors(self) -> int:
        return len(self.factors_num_values)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """disent's name for ``factors_num_values``."""
        return tuple(self.factors_num_values)

    def _allowed(self) -> np.ndarray:
        """The factor rows (P, num_factors) that ``sample_factors`` draws from."""
        raise NotImplementedError

    def _render(self, factors: np.ndarray) -> torch.Tensor:
        """Observations (num, 1, *spatial) of valid factors (num, num_factors)."""
        raise NotImplementedError

    def sample_factors(self, num: int, random_state) -> np.ndarray:
        """num factor rows (num, num_factors) int64, uniform over the allowed ones."""
        if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 0:
            raise ValueError(f"num must be an integer >= 0, got {num!r}")
        allowed = self._allowed()
        return allowed[_check_random_state(random_state).randint(len(allowed), size=int(num))]

    def check_factors(self, factors) -> np.ndarray:
        """``factors`` as an int64 array (num, num_factors) with every value in range, else a ValueError."""
        f = np.asarray(factors)
        if f.ndim != 2 or f.shape[1] != self.num_factors:
            raise ValueError(f"factors must have shape (num, {self.num_factors}), got {f.shape}")
        if f.size and not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"factors must be integers, got dtype {f.dtype}")
        f = f.astype(np.int64)
        for i, (name, size) in enumerate(zip(self.factor_names, self.factors_num_values, strict=True)):
            if f.size and (f[:, i].min() < 0 or f[:, i].max() >= size):
                raise ValueError(f"factor {name!r} must lie in [0, {size}), got {f[:, i].min()}..{f[:, i].max()}")
        return f

    def sample_observations_from_factors(self, factors, random_state) -> np.ndarray:
        """Observations (num, *observation_shape) float32 of the factors (num, num_factors)."""
        _check_random_state(random_state)
        x = self._render(self.check_factors(factors))  # (num, 1, *spatial)
        return x.movedim(1, -1).numpy()

    def sample(self, num: int, random_state) -> tuple[np.ndarray, np.ndarray]:
        """(factors (num, num_factors), observations (num, *observation_shape))."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num: int, random_state) -> np.ndarray:
        return self.sample(num, random_state)[1]


class DiskFactors(_Factors):
    """One factor, ``radius``, with ``num_values`` values (bins of [r_min, r_max]; module docstring)."""

    def __init__(self, config: DiskData, num_values: int = RADIUS_VALUES):
        if not isinstance(config, DiskData):
            raise ValueError(f"DiskFactors needs a DiskData, got {type(config).__name__}")
        if not config.paper_disks:
            raise ValueError("DiskFactors covers uniform 2-D disks (density='uniform', shape='disk', ndim=2), got "
                             f"density={config.density!r}, shape={config.shape!r}, ndim={config.ndim}")
        if isinstance(num_values, bool) or not isinstance(num_values, int) or num_values < 2:
            raise ValueError(f"num_values must be an integer >= 2, got {num_values!r}")
        self.config = config
        self.r_min = config.r_min
        self.r_max = config.size / 2 if config.r_max is None else config.r_max
        self.factor_names = ("radius",)
        self.factors_num_values = [num_values]
        self.observation_shape = [config.size, config.size, 1]

    @property
    def bin_width(self) -> float:
        return (self.r_max - self.r_min) / self.factors_num_values[0]

    def factors_to_radii(self, factors) -> np.ndarray:
        """The radius each factor row stands for, its bin centre: (num,) float64."""
        return self.r_min + (self.check_factors(factors)[:, 0] + 0.5) * self.bin_width

    def radii_to_factors(self, radii) -> np.ndarray:
        """The bin of each radius in [r_min, r_max]: (num, 1) int64 (r_max falls in the last bin)."""
        r = np.asarray(radii, dtype=np.float64).reshape(-1)
        if r.size and not (np.all(np.isfinite(r)) and r.min() >= self.r_min and r.max() <= self.r_max):
            raise ValueError(f"radii must lie in [r_min, r_max] = [{self.r_min:g}, {self.r_max:g}]")
        k = np.floor((r - self.r_min) / self.bin_width).astype(np.int64)
        return np.minimum(k, self.factors_num_values[0] - 1)[:, None]

    def _allowed(self) -> np.ndarray:
        k = np.arange(self.factors_num_values[0])
        centres = self.r_min + (k + 0.5) * self.bin_width
        keep = np.ones(len(k), dtype=bool)
        for lo, hi in self.config.exclude:
            keep &= ~((centres > lo) & (centres < hi))
        if not keep.any():
            raise ValueError(f"every one of the {len(k)} radius bins is excluded by {self.config.exclude}")
        return k[keep][:, None]

    def _render(self, factors: np.ndarray) -> torch.Tensor:
        c = self.config
        return render_disks(self.factors_to_radii(factors), size=c.size, rendering=c.rendering, sigma=c.sigma)


class DiracFactors(_Factors):
    """Factors ``position`` (1-D) or ``row``, ``column`` (2-D) of one unit Dirac (module docstring)."""

    def __init__(self, config: DiracData, scheme_seed: int = 0):
        if not isinstance(config, DiracData):
            raise ValueError(f"DiracFactors needs a DiracData, got {type(config).__name__}")
        self.config = config
        self.scheme_seed = scheme_seed
        self.factor_names = ("position",) if config.ndim == 1 else ("row", "column")
        self.factors_num_values = [config.size] * config.ndim
        self.observation_shape = [config.size] * config.ndim + [1]

    def _allowed(self) -> np.ndarray:
        c = self.config
        pos = dirac_positions(size=c.size, ndim=c.ndim, scheme=c.scheme, fraction=c.fraction, hole=c.hole,
                              stride=c.stride, quadrant=c.quadrant, seed=self.scheme_seed)
        return pos.reshape(len(pos), -1).numpy()

    def _render(self, factors: np.ndarray) -> torch.Tensor:
        pos = torch.from_numpy(factors[:, 0] if self.config.ndim == 1 else factors)
        return render_diracs(pos, size=self.config.size, ndim=self.config.ndim)


# ------------------------------------------------------------------------------------- models


def representation_function(model, *, batch_size: int = 256):
    """A geoae encoder as the disentanglement libraries call it: observations (num, *spatial, 1) numpy →
    codes (num, d) float32 numpy (``model.encode`` in batches, without gradients)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")

    @torch.no_grad()
    def represent(observations) -> np.ndarray:
        x = torch.as_tensor(np.asarray(observations, dtype=np.float32)).movedim(-1, 1)  # (num, 1, *spatial)
        model.eval()
        return torch.cat([model.encode(chunk) for chunk in x.split(batch_size)]).numpy()

    return represent
