"""Data with ground truth: centred disks (size) and Diracs (position).

The two data sets of Newson, Almansa, Gousseau & Ladjal, *Processing Simple Geometric Attributes with
Autoencoders* (JMIV 2020): images of one centred disk of radius r (the paper's size experiments, whose
indicator is 1_{B_r}) and one-hot signals / images (its position experiments). See SPEC section 1.

Notation: image side m; pixel (i, j) has centre (x, y) = (j - c, i - c) with c = (m - 1)/2, so pixel
(i, j) covers the unit square [x - 1/2, x + 1/2] x [y - 1/2, y + 1/2] and a centred disk is symmetric.
Images are float32 tensors (B, 1, m, m) in [0, 1]; 1-D signals are (B, 1, n).

Disk renderings (all deterministic):
- ``binary``: 1 where the pixel centre satisfies x^2 + y^2 <= r^2.
- ``area``: the exact area of (pixel square) ∩ B_r, from the closed-form antiderivative of
  sqrt(r^2 - u^2), evaluated in float64 (error ~1e-12 per pixel, below float32 rounding).
- ``gaussian``: (1_{B_r} * G_sigma) at the pixel centre, i.e. P(|t + sigma N| <= r) for N ~ N(0, I_2):
  the authors' released data (800 Monte Carlo offsets, sigma = 0.5) in expectation. It is the CDF of a
  non-central chi-square with 2 degrees of freedom (scipy.special.chndtr, error ~1e-14); pixels with
  |rho - r| >= 8 sigma are set to exactly 0 or 1 (error <= exp(-32) ~ 1e-14).

Beyond the paper (Newson et al. treat centred disks with uniform radii in 2-D only), three options of the
disk generators, all exact and deterministic given the radii:
- ``density``: the radii's density on [r_min, r_max] (minus ``exclude``): ``uniform`` (the paper's),
  ``area`` p(r) ∝ r (the disks' areas πr² are then uniform), ``small`` p(r) ∝ r_max − r (small radii
  frequent); drawn by inverting the CDF, no rejection;
- ``shape``: ``disk``; ``square`` of half-side r (side 2r, the set ‖t‖_∞ ≤ r: every rendering is the
  product of two 1-D coverages); ``ellipse`` with semi-axes r along x and ``ELLIPSE_ASPECT``·r along y
  (``area``: the disk formula on pixels stretched by 1/aspect along y; ``binary``; no ``gaussian``);
- ``ndim=1``: centred intervals [−r, r] in signals (B, 1, n), sample x = i − (n − 1)/2 (the 1-D ball:
  ``area`` = exact coverage of [x − ½, x + ½], ``binary``, ``gaussian`` = P(|x + σN| ≤ r)).

Generators follow scikit-learn's habit: they return the data *and* the ground truth, and take an
explicit ``seed`` (an int in [0, 2^63 - 1] or a torch.Generator), never global random state.

Bounds: an image side is at most ``MAX_SIZE``; one call generates at most ``MAX_VALUES`` values (4 GiB of
float32: generate more in parts). Any argument outside what is documented raises ``ValueError`` naming it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch
from scipy import special

RENDERINGS = ("binary", "area", "gaussian")
DENSITIES = ("uniform", "area", "small")  # radius densities on [r_min, r_max] (beyond the paper: ``radius_density``)
SHAPES = ("disk", "square", "ellipse")  # centred shapes of "radius" r (beyond the paper: ``render_disks``)
ELLIPSE_ASPECT = 0.5  # an ellipse of radius r has semi-axes r (along x, columns) and ELLIPSE_ASPECT·r (along y)
SCHEMES = ("all", "random", "hole", "stride", "quadrant")
Seed = int | torch.Generator
Interval = tuple[float, float]

MAX_SIZE = 4096  # image side m / signal length n
MAX_VALUES = 2**30  # values one call may generate (4 GiB of float32)
MAX_SEED = 2**63 - 1
_CHUNK = 512  # disks rendered at once (bounds float64 scratch memory)
_GAUSS_BAND = 8.0  # in units of sigma: beyond it the gaussian rendering is exactly 0 or 1


# --------------------------------------------------------------------------- validation helpers


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum], else a ValueError naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and value >= minimum and (maximum is None or value <= maximum):
        return int(value)
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def finite_real(value) -> bool:
    """A real number (not a bool) that is finite as a float (an int beyond float's range is not)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of " + ", ".join(repr(c) for c in choices))
    return value


def _check_volume(name: str, value, count: int, per_item: int) -> None:
    """Refuse a request for more than ``MAX_VALUES`` values (``count`` items of ``per_item`` values)."""
    if count * per_item > MAX_VALUES:
        raise ValueError(f"{name}={value} asks for {count:,} × {per_item:,} = {count * per_item:,} values, more than "
                         f"the {MAX_VALUES:,} (4 GiB of float32) one call may generate; generate in parts")


def _check_sigma(sigma) -> float:
    if not (finite_real(sigma) and 0 < sigma <= MAX_SIZE):
        raise ValueError(f"sigma must be a finite number in (0, {MAX_SIZE}], got {sigma!r}")
    return float(sigma)


def _check_radii(radii) -> np.ndarray:
    """Radii (B,) as float64 numpy, each finite and >= 0."""
    try:
        r = torch.as_tensor(radii).detach().cpu().double().numpy()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"radii must be a 1-D sequence of numbers (B,), got {type(radii).__name__} ({err})") from None
    if r.ndim != 1:
        raise ValueError(f"radii must be a 1-D sequence (B,), got shape {tuple(r.shape)}")
    bad = ~np.isfinite(r) | (r < 0)
    if bad.any():
        raise ValueError(f"radius must be finite and >= 0, got {float(r[bad][0])!r}")
    return r


def _radius_range(size: int, r_min, r_max) -> tuple[float, float]:
    """Resolve r_max=None to m/2 and check 0 <= r_min < r_max <= m/2."""
    half = size / 2
    r_max = half if r_max is None else r_max
    for name, v in (("r_min", r_min), ("r_max", r_max)):
        if not (finite_real(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    if r_max > half:
        raise ValueError(f"r_max={r_max:g} must be <= size/2 = {half:g}")
    if r_min >= r_max:
        raise ValueError(f"r_min={r_min:g} must be < r_max={r_max:g}")
    return float(r_min), float(r_max)


def _normalise_exclude(exclude) -> tuple[Interval, ...]:
    """``exclude`` as a tuple of (lo, hi) float pairs with lo < hi (hashable, JSON friendly)."""
    hint = "exclude must be a sequence of (lo, hi) pairs, e.g. ((11, 18),)"
    if not isinstance(exclude, Sequence) or isinstance(exclude, str):
        raise ValueError(f"{hint}, got {exclude!r}")
    out = []
    for item in exclude:
        if not (isinstance(item, Sequence) and len(item) == 2):
            raise ValueError(f"{hint}, got {exclude!r}")
        lo, hi = item
        if not all(finite_real(v) for v in (lo, hi)) or lo >= hi:
            raise ValueError(f"exclude interval {tuple(item)!r} must be finite numbers with lo < hi")
        out.append((float(lo), float(hi)))
    return tuple(out)


def _allowed_intervals(size: int, r_min, r_max, exclude) -> list[Interval]:
    """[r_min, r_max] minus the open intervals of ``exclude``, as sorted disjoint (lo, hi) pieces."""
    r_min, r_max = _radius_range(size, r_min, r_max)
    exclude = _normalise_exclude(exclude)
    for lo, hi in exclude:
        if hi <= r_min or lo >= r_max:
            raise ValueError(
                f"exclude interval ({lo:g}, {hi:g}) lies outside [r_min, r_max] = [{r_min:g}, {r_max:g}]"
            )
    pieces, start = [], r_min
    for lo, hi in sorted(exclude):
        if lo > start:
            pieces.append((start, min(lo, r_max)))
        start = max(start, hi)
    if start < r_max:
        pieces.append((start, r_max))
    if not pieces:
        raise ValueError(
            f"exclude intervals cover the whole range [{r_min:g}, {r_max:g}]: nothing left to sample"
        )
    return pieces


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
        return torch.Generator().manual_seed(int(seed))
    raise ValueError(f"seed must be an integer in [0, 2**63 - 1] or a torch.Generator, got {seed!r}")


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


# --------------------------------------------------------------------------- disks


def _quadrant_area(X: np.ndarray, Y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Area of B_r ∩ [0, X] x [0, Y] for X, Y, r >= 0 (broadcast).

    = Y * b + G(a) - G(b) with a = min(X, r), b = min(a, sqrt(r^2 - Y^2)_+) and
    G(u) = int_0^u sqrt(r^2 - t^2) dt = (u sqrt(r^2 - u^2) + r^2 asin(u / r)) / 2.
    """

    def G(u):
        return 0.5 * (
            u * np.sqrt(np.maximum(r * r - u * u, 0.0))
            + r * r * np.arcsin(np.clip(u / np.maximum(r, 1e-300), -1.0, 1.0))
        )

    a = np.minimum(X, r)
    b = np.minimum(a, np.sqrt(np.maximum(r * r - Y * Y, 0.0)))
    return Y * b + G(a) - G(b)


def _render_area(r: np.ndarray, size: int, aspect: float = 1.0) -> np.ndarray:
    """Exact pixel coverage (B, m, m) float64 by inclusion-exclusion of signed quadrant areas, of disks of radius r
    or (``aspect`` < 1) of ellipses x² + (y/aspect)² <= r²: stretching y by 1/aspect maps the ellipse onto B_r and
    pixel rows onto rows of height 1/aspect, so the coverage is aspect × (B_r ∩ stretched pixel)."""
    ex = np.arange(size + 1) - size / 2  # pixel edges, symmetric about 0 (columns: x)
    ey = ex / aspect  # rows: y, stretched
    mx, ix = np.unique(np.abs(ex), return_inverse=True)
    my, iy = np.unique(np.abs(ey), return_inverse=True)
    qa = _quadrant_area(my[None, :, None], mx[None, None, :], r[:, None, None])  # (B, Ky, Kx)
    q = qa[:, iy][:, :, ix] * (np.sign(ey)[:, None] * np.sign(ex)[None, :])  # (B, m+1, m+1)
    area = aspect * (q[:, 1:, 1:] - q[:, :-1, 1:] - q[:, 1:, :-1] + q[:, :-1, :-1])

    # Pixels wholly outside / inside the shape are exactly 0 / 1 (no round-off residue).
    def near_far(e):  # per pixel: the distance from 0 of its nearest and farthest edge along one axis
        lo, hi = e[:-1], e[1:]
        near = np.where((lo < 0) & (hi > 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
        return near, np.maximum(np.abs(lo), np.abs(hi))

    (near_x, far_x), (near_y, far_y) = near_far(ex), near_far(ey)
    r2 = (r * r)[:, None, None]
    area = np.where(near_y[:, None] ** 2 + near_x[None, :] ** 2 >= r2, 0.0, area)
    return np.where(far_y[:, None] ** 2 + far_x[None, :] ** 2 <= r2, 1.0, area)


@lru_cache(maxsize=8)
def _pixel_rho(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pixel-centre distances rho (K,) and, per pixel (m*m,), the index into them."""
    x = np.arange(size) - (size - 1) / 2
    rho2 = (x[:, None] ** 2 + x[None, :] ** 2).ravel()  # exact: multiples of 1/4
    uniq, inv = np.unique(rho2, return_inverse=True)
    rho = np.sqrt(uniq)
    rho.flags.writeable = False
    inv.flags.writeable = False
    return rho, inv


def _render_gaussian(r: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """P(|t + sigma N| <= r) at every pixel centre t: (B, m, m) float64."""
    rho, inv = _pixel_rho(size)
    diff = rho[None, :] - r[:, None]  # (B, K)
    v = (diff < 0).astype(np.float64)
    band = np.abs(diff) < _GAUSS_BAND * sigma
    rb = np.broadcast_to(r[:, None], diff.shape)[band] / sigma
    pb = np.broadcast_to(rho[None, :], diff.shape)[band] / sigma
    v[band] = special.chndtr(rb * rb, 2, pb * pb)
    return v[:, inv].reshape(-1, size, size)


def _render_binary(r: np.ndarray, size: int) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    rho2 = x[:, None] ** 2 + x[None, :] ** 2
    return (rho2[None] <= (r * r)[:, None, None]).astype(np.float64)


def render_disks(radii, *, size: int = 64, rendering: str = "area", sigma: float = 0.5, shape: str = "disk",
                 ndim: int = 2, quantise: int = 0) -> torch.Tensor:
    """Images of centred disks: radii (B,) -> (B, 1, m, m) float32 in [0, 1] ((B, 1, n) for ``ndim=1``).

    Any finite radius >= 0 is drawn (disks larger than the image are clipped), so that extrapolation
    tests can render radii beyond the training range. ``sigma`` (px) is used by ``gaussian`` only.
    ``shape`` (``disk``, ``square``, ``ellipse``) and ``ndim`` (2, or 1: centred intervals, shape ``disk``
    only) are beyond the paper (module docstring). ``quantise`` = L > 0 stores each value as floor(L·x)/L
    (L = 255: the released code's 8-bit PNG files, written as ``uint8(255·x)``, which truncates); 0 keeps
    float32.
    """
    size = _check_int("size", size, 2, MAX_SIZE)
    _check_choice("rendering", rendering, RENDERINGS)
    quantise = _check_int("quantise", quantise, 0, 65535)
    sigma = _check_sigma(sigma)
    _check_shape(shape, ndim, rendering)
    r = _check_radii(radii)
    _check_volume("radii", f"<{len(r)} radii>", len(r), size**ndim)
    out = np.empty((len(r), *(size,) * ndim), dtype=np.float32)
    for start in range(0, len(r), _CHUNK):
        rc = r[start : start + _CHUNK]
        if ndim == 1:
            img = _render_1d(rc, size, rendering, sigma)
        elif shape == "square":
            c = _render_1d(rc, size, rendering, sigma)  # the square's indicator is the product of two intervals'
            img = c[:, :, None] * c[:, None, :]
        elif shape == "ellipse":
            img = _render_ellipse(rc, size, rendering, ELLIPSE_ASPECT)
        elif rendering == "binary":
            img = _render_binary(rc, size)
        elif rendering == "area":
            img = _render_area(rc, size)
        else:
            img = _render_gaussian(rc, size, sigma)
        img = np.clip(img, 0.0, 1.0)
        if quantise:
            img = np.floor(img * quantise) / quantise
        out[start : start + _CHUNK] = img
    return torch.from_numpy(out).unsqueeze(1)


def _check_shape(shape, ndim, rendering: str) -> int:
    """Validate ``shape`` and ``ndim`` (and that ``rendering`` exists for them); returns ndim."""
    _check_choice("shape", shape, SHAPES)
    ndim = _check_int("ndim", ndim, 1, 2)
    if ndim == 1 and shape != "disk":
        raise ValueError(f"shape={shape!r} needs ndim=2; in 1-D the only shape is 'disk' (a centred interval)")
    if shape == "ellipse" and rendering == "gaussian":
        raise ValueError("rendering='gaussian' is not available for shape='ellipse' (no exact form); use 'area' or "
                         "'binary'")
    return ndim


def _render_1d(r: np.ndarray, size: int, rendering: str, sigma: float) -> np.ndarray:
    """Centred intervals [−r, r] sampled at x = i − (n − 1)/2: (B, n) float64 (module docstring)."""
    x = (np.arange(size) - (size - 1) / 2)[None, :]
    rr = r[:, None]
    if rendering == "binary":
        return (np.abs(x) <= rr).astype(np.float64)
    if rendering == "area":
        return np.clip(np.minimum(x + 0.5, rr) - np.maximum(x - 0.5, -rr), 0.0, 1.0)
    return special.ndtr((rr - x) / sigma) - special.ndtr((-rr - x) / sigma)  # P(|x + σN| <= r)


def _render_ellipse(r: np.ndarray, size: int, rendering: str, aspect: float) -> np.ndarray:
    """Ellipses x² + (y/aspect)² <= r²: (B, m, m) float64 (``area``: ``_render_area`` with the aspect)."""
    if rendering == "area":
        return _render_area(r, size, aspect)
    x = np.arange(size) - (size - 1) / 2
    g2 = x[None, :] ** 2 + (x[:, None] / aspect) ** 2
    return (g2[None] <= (r * r)[:, None, None]).astype(np.float64)


def sample_radii(
    n: int,
    *,
    size: int = 64,
    r_min: float = 0.0,
    r_max: float | None = None,
    exclude: Sequence[Interval] = (),
    density: str = "uniform",
    seed: Seed,
) -> torch.Tensor:
    """n radii (n,) float32 on [r_min, r_max] minus the open intervals of ``exclude``, with density ``density``
    (``uniform``; ``area``: p ∝ r; ``small``: p ∝ r_max − r; restricted to the allowed pieces).

    A uniform draw of t(r) on the total allowed length of t is mapped onto the allowed pieces (no rejection
    loop), t the density's CDF up to an affine map: r (uniform), r² (area), −(r_max − r)² (small).
    r_max defaults to m/2.
    """
    n = _check_int("n", n, 0, MAX_VALUES)
    size = _check_int("size", size, 2, MAX_SIZE)
    _check_choice("density", density, DENSITIES)
    pieces = _allowed_intervals(size, r_min, r_max, exclude)
    gen = _generator(seed)
    lo = torch.tensor([p[0] for p in pieces], dtype=torch.float64)
    hi = torch.tensor([p[1] for p in pieces], dtype=torch.float64)
    top = pieces[-1][1]  # r_max
    to_t, from_t = _DENSITY_MAPS[density]
    tlo, thi = to_t(lo, top), to_t(hi, top)
    cum = torch.cumsum(thi - tlo, 0)
    u = torch.rand(n, generator=gen, dtype=torch.float64) * cum[-1]
    k = torch.searchsorted(cum, u, right=True).clamp(max=len(pieces) - 1)
    r = from_t(tlo[k] + u - (cum[k] - (thi - tlo)[k]), top)
    # Round to float32 inside the piece: its ends rounded inwards, so no radius falls in a hole.
    lo32, hi32 = lo.float(), hi.float()
    lo32 = torch.where(lo32.double() < lo, torch.nextafter(lo32, hi32), lo32)
    hi32 = torch.where(hi32.double() > hi, torch.nextafter(hi32, lo32), hi32)
    return torch.minimum(torch.maximum(r.float(), lo32[k]), hi32[k])


# t(r, r_max) increasing with dt/dr ∝ p(r), and its inverse (uniform: the identity, so the paper's draws are unchanged)
_DENSITY_MAPS = {
    "uniform": (lambda r, top: r, lambda t, top: t),
    "area": (lambda r, top: r * r, lambda t, top: torch.sqrt(t.clamp_min(0))),
    "small": (lambda r, top: -((top - r) ** 2), lambda t, top: top - torch.sqrt((-t).clamp_min(0))),
}


def radius_density(density: str, r_max: float):
    """p(r) of a ``density`` name on [0, r_max], unnormalised, as a function of a numpy array (for
    ``theory.eigen_profile``); r_min = 0 and no excluded intervals assumed."""
    _check_choice("density", density, DENSITIES)
    if not (finite_real(r_max) and r_max > 0):
        raise ValueError(f"r_max must be a finite number > 0, got {r_max!r}")
    return {"uniform": lambda r: np.ones_like(r), "area": lambda r: np.asarray(r, dtype=np.float64),
            "small": lambda r: np.clip(r_max - np.asarray(r, dtype=np.float64), 0.0, None)}[density]


def test_radii(n: int, *, size: int = 64, r_min: float = 0.0, r_max: float | None = None) -> torch.Tensor:
    """n evenly spaced radii (n,) float32 over [r_min, r_max] (r_max defaults to m/2): a test set."""
    n = _check_int("n", n, 1, MAX_VALUES)
    size = _check_int("size", size, 2, MAX_SIZE)
    r_min, r_max = _radius_range(size, r_min, r_max)
    return torch.linspace(r_min, r_max, n, dtype=torch.float64).float()


test_radii.__test__ = False  # not a pytest test, despite its name


def make_disks(
    n: int,
    *,
    size: int = 64,
    rendering: str = "area",
    sigma: float = 0.5,
    r_min: float = 0.0,
    r_max: float | None = None,
    exclude: Sequence[Interval] = (),
    density: str = "uniform",
    shape: str = "disk",
    ndim: int = 2,
    quantise: int = 0,
    seed: Seed,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n random disk images and their radii: ((n, 1, m, m) float32 ((n, 1, n) for ``ndim=1``), (n,) float32).

    Radii as in :func:`sample_radii`; the images are rendered from the returned float32 radii.
    ``density``, ``shape``, ``ndim``: beyond the paper (module docstring); ``quantise``: as in
    :func:`render_disks` (the released code's 8-bit files).
    """
    size = _check_int("size", size, 2, MAX_SIZE)
    n = _check_int("n", n, 0, MAX_VALUES)
    _check_choice("rendering", rendering, RENDERINGS)
    ndim = _check_shape(shape, ndim, rendering)
    _check_volume("n", n, n, size**ndim)
    sigma = _check_sigma(sigma)
    radii = sample_radii(n, size=size, r_min=r_min, r_max=r_max, exclude=exclude, density=density, seed=seed)
    return render_disks(radii, size=size, rendering=rendering, sigma=sigma, shape=shape, ndim=ndim,
                        quantise=quantise), radii


# --------------------------------------------------------------------------- Diracs


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


# --------------------------------------------------------------------------- configs


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
