"""Centred disks (size): renderings (binary, area, gaussian; squares, ellipses and 1-D intervals beyond the
paper), radius sampling with excluded intervals and densities, ``make_disks``. See the package docstring."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from scipy import special

from ..checks import MAX_VALUES, finite_real
from ..checks import check_choice as _check_choice
from ..checks import check_int as _check_int
from ..checks import check_volume as _check_volume
from .common import MAX_SIZE, Interval, Seed
from .common import generator as _generator

RENDERINGS = ("binary", "area", "gaussian")
DENSITIES = ("uniform", "area", "small")  # radius densities on [r_min, r_max] (beyond the paper: ``radius_density``)
SHAPES = ("disk", "square", "ellipse")  # centred shapes of "radius" r (beyond the paper: ``render_disks``)
ELLIPSE_ASPECT = 0.5  # an ellipse of radius r has semi-axes r (along x, columns) and ELLIPSE_ASPECT·r (along y)
_CHUNK = 512  # disks rendered at once (bounds float64 scratch memory)
_GAUSS_BAND = 8.0  # in units of sigma: beyond it the gaussian rendering is exactly 0 or 1


# ------------------------------------------------------------------------------------------------ checks


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


# ------------------------------------------------------------------------------------------------ disks


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
