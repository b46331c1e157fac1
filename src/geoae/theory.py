"""Closed-form decoding theory of a bias-free autoencoder for centred disks.

Follows Newson, Almansa, Gousseau & Ladjal, "Processing Simple Geometric Attributes with Autoencoders",
J. Math. Imaging Vis. 62 (2020), Prop. 1 (homogeneity), Prop. 2 (decoding energy) and its Airy solution.

A decoder without biases is positively homogeneous (Prop. 1), so with a 1-D code its output for a disk of
radius r is separable, y(t, r) = h(r) f(t). Training minimises (Prop. 2)

    ∫_0^R ∫_Ω (h(r) f(t) − 1_{B_r}(t))² dt dr.

For fixed f the best code is h(r) = ⟨f, 1_{B_r}⟩ / ‖f‖², and the best f is radial and maximises

    E(f) = ∫_0^R F(r)² dr,   F(r) = ∫_0^r f(ρ) ρ dρ,   subject to ∫_0^R f(ρ)² ρ dρ = 1.

Its Euler–Lagrange equation λ f(ρ) = ∫_ρ^R F(r) dr, i.e. λ f'' + ρ f = 0 with f'(0) = 0 and f(R) = 0, is
an Airy equation, solved by

    f̂(ρ) ∝ √3·Ai(−x₁ρ/R) + Bi(−x₁ρ/R) for ρ < R, 0 beyond,      E(f̂) = λ = (R/x₁)³,

where x₁ ≈ 1.98635 is the first positive root of √3·Ai(−x) + Bi(−x) (computed by `airy_root`).

Beyond the paper: for balls in dimension k and radii drawn with density p(r) the same derivation gives
E(f) = ∫_0^R F(r)² p(r) dr with F(r) = ∫_0^r f(ρ) ρ^{k−1} dρ under ∫_0^R f² ρ^{k−1} dρ = 1 (the constant
area of the unit sphere dropped). Varying f gives λ f(ρ) = ∫_ρ^R F(r) p(r) dr, hence λ f' = −p F and
λ (f'/p)' + ρ^{k−1} f = 0; for uniform p = 1 this is λ f'' + ρ^{k−1} f = 0, f'(0) = 0, f(R) = 0:
k = 1 a cosine, k = 2 Airy, k = 3 √ρ·J_{−1/4}(ρ²/(2√λ)). At the optimum E(f) equals the eigenvalue λ.
`eigen_profile` solves the discretised eigenproblem for any k and p.

On a pixel grid with a finite training set the exact optimum is the rank-1 truncated SVD of the uncentred
data matrix (`discrete_optimum`). Pixel (i, j) of an m × m image has centre (x, y) = (j − c, i − c),
c = (m − 1)/2, and radius √(x² + y²) (`pixel_radii`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import integrate, linalg, optimize, special
from scipy.sparse.linalg import svds

Density = Callable[[np.ndarray], np.ndarray] | None


# ---------------------------------------------------------------------------------------------- validation
def _check_R(R: float) -> float:
    R = float(R)
    if not (math.isfinite(R) and R > 0):
        raise ValueError(f"R must be a finite number > 0, got {R!r}")
    return R


def _check_k(k: int, closed_form: bool = True) -> int:
    if closed_form and k not in (1, 2, 3):
        raise ValueError(f"k must be 1, 2 or 3 (closed forms: cosine, Airy, Bessel), got {k!r}")
    if not closed_form and not (isinstance(k, int | np.integer) and k >= 1):
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _radii(rho, name: str = "rho") -> np.ndarray:
    rho = np.asarray(rho, dtype=np.float64)
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return rho


def _density_values(density: Density, r: np.ndarray) -> np.ndarray:
    """p(r) on the grid r; None is the uniform density p = 1 (the paper's convention)."""
    if density is None:
        return np.ones_like(r)
    p = np.broadcast_to(np.asarray(density(r), dtype=np.float64), r.shape)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.any(p > 0):
        raise ValueError("density must return finite values >= 0, not all zero, on [0, R]")
    return p


# ------------------------------------------------------------------------------------------ closed forms
def _airy_comb(x):
    """g(x) = √3·Ai(x) + Bi(x) and g'(x): the solution of g'' = x g with g'(0) = 0."""
    ai, aip, bi, bip = special.airy(x)
    return math.sqrt(3.0) * ai + bi, math.sqrt(3.0) * aip + bip


@functools.cache
def airy_root() -> float:
    """x₁: the first positive root of √3·Ai(−x) + Bi(−x) (≈ 1.98635), by Brent's method on [0, 3]."""
    return float(optimize.brentq(lambda x: _airy_comb(-x)[0], 0.0, 3.0, xtol=1e-15, rtol=1e-15))


@functools.cache
def bessel_root() -> float:
    """j: the first positive zero of J_{−1/4} (≈ 2.0063), which fixes λ for k = 3."""
    return float(optimize.brentq(lambda z: special.jv(-0.25, z), 1.0, 3.0, xtol=1e-15, rtol=1e-15))


def f_hat(rho, R: float, *, normalise: bool = True) -> np.ndarray:
    """f̂(ρ) = c·[√3·Ai(−x₁ρ/R) + Bi(−x₁ρ/R)] for ρ < R, 0 for ρ ≥ R (the optimal decoder profile).

    normalise=True picks c so that ∫_0^R f̂(ρ)² ρ dρ = 1, using ∫ x g² dx = (x²g² − x g'² + g g')/3
    for any solution of g'' = x g:  ∫_0^R g(−x₁ρ/R)² ρ dρ = R² g'(−x₁)² / (3 x₁). normalise=False: c = 1.
    """
    R, rho = _check_R(R), _radii(rho)
    x1 = airy_root()
    g, _ = _airy_comb(-x1 * np.minimum(rho, R) / R)
    f = np.where(rho < R, g, 0.0)
    return f / _airy_norm(R) if normalise else f


def _airy_norm(R: float) -> float:
    x1 = airy_root()
    return R * abs(_airy_comb(-x1)[1]) / math.sqrt(3.0 * x1)


def F_hat(r, R: float) -> np.ndarray:
    """F̂(r) = ∫_0^r f̂(ρ) ρ dρ for the normalised f̂; constant F̂(R) for r ≥ R.

    Closed form from the Euler–Lagrange equation λ f̂' = −F̂:  F̂(r) = (R/x₁)² g'(−x₁ r/R) / c.
    """
    R, r = _check_R(R), _radii(r, "r")
    x1 = airy_root()
    _, gp = _airy_comb(-x1 * np.minimum(r, R) / R)
    return (R / x1) ** 2 * gp / _airy_norm(R)


def h_hat(r, R: float) -> np.ndarray:
    """ĥ(r) = ⟨f̂, 1_{B_r}⟩ / ‖f̂‖² = 2π F̂(r) / ‖f̂‖², the optimal code (a weighted area of the disk).

    Convention: f̂ is `f_hat` (∫ f̂² ρ dρ = 1, so the 2-D norm is ‖f̂‖² = 2π ∫ f̂² ρ dρ = 2π) and ĥ = F̂;
    ĥ(r)·f̂(|t|) is then the best separable reconstruction of 1_{B_r}. On a pixel grid, where f̂ sampled at
    the pixel centres has norm ≈ √(2π), a unit-norm profile carries the code ≈ √(2π)·ĥ(r).
    """
    norm_sq_2d = 2.0 * math.pi  # 2π ∫ f̂² ρ dρ for the normalised f̂
    return 2.0 * math.pi * F_hat(r, R) / norm_sq_2d


def closed_form_energy(R: float, *, k: int = 2) -> float:
    """λ = max E(f) for uniform radii: (2R/π)² (k = 1), (R/x₁)³ (k = 2), R⁴/(4 j²) (k = 3)."""
    R, k = _check_R(R), _check_k(k)
    return {1: (2 * R / math.pi) ** 2, 2: (R / airy_root()) ** 3, 3: R**4 / (4 * bessel_root() ** 2)}[k]


def optimal_energy(R: float) -> float:
    """λ = E(f̂) = (R/x₁)³, the largest decoding energy under ∫_0^R f² ρ dρ = 1 (Prop. 2)."""
    return closed_form_energy(R, k=2)


def _bessel_comb(z):
    """z^{1/4} J_{−1/4}(z), continued by its limit 2^{1/4}/Γ(3/4) at z = 0."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = z**0.25 * special.jv(-0.25, z)
    return np.where(z > 0, out, 2**0.25 / special.gamma(0.75))


@functools.cache
def _bessel_norm() -> float:
    """√(∫_0^1 ψ(j u²)² u² du), ψ(z) = z^{1/4} J_{−1/4}(z)."""
    val, _ = integrate.quad(
        lambda u: _bessel_comb(bessel_root() * u * u) ** 2 * u * u, 0.0, 1.0, epsabs=0, epsrel=1e-13
    )
    return math.sqrt(val)


def closed_form_profile(rho, R: float, *, k: int) -> np.ndarray:
    """Solution of λ f'' + ρ^{k−1} f = 0, f'(0) = 0, f(R) = 0, normalised ∫_0^R f² ρ^{k−1} dρ = 1, 0 beyond R.

    k = 1: cos(πρ/(2R)).  k = 2: the Airy profile `f_hat`.  k = 3: √ρ·J_{−1/4}(ρ²/(2√λ)) ∝ ψ(j ρ²/R²)
    with ψ(z) = z^{1/4} J_{−1/4}(z) (J_{+1/4} is excluded by f'(0) = 0, j = `bessel_root` by f(R) = 0).
    """
    R, k, rho = _check_R(R), _check_k(k), _radii(rho)
    u = np.minimum(rho, R) / R
    if k == 1:
        f = math.sqrt(2.0 / R) * np.cos(0.5 * math.pi * u)
    elif k == 2:
        return f_hat(rho, R)
    else:
        f = _bessel_comb(bessel_root() * u * u) / (R**1.5 * _bessel_norm())
    return np.where(rho < R, f, 0.0)


def airy_curve(R: float, n: int = 256, *, rho_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ρ, f̂(ρ)) on n evenly spaced radii in [0, rho_max] (default R), for plots."""
    rho = np.linspace(0.0, _check_R(R) if rho_max is None else float(rho_max), int(n))
    return rho, f_hat(rho, R)


# ----------------------------------------------------------------------------------- numerical checks
def decoding_energy(f, rho, R: float, *, k: int = 2, density: Density = None) -> float:
    """E(f) / ∫ f² ρ^{k−1} dρ with E(f) = ∫_0^R F(r)² p(r) dr: the energy of f scaled to unit norm.

    f is sampled at increasing radii rho with rho[0] = 0 and rho[-1] >= R (trapezoid rule, linear in
    between). Samples beyond R count in the norm but not in E, as in Prop. 2 on a domain larger than B_R.
    """
    R, k, rho = _check_R(R), _check_k(k, closed_form=False), _radii(rho)
    f = np.asarray(f, dtype=np.float64)
    if rho.ndim != 1 or f.shape != rho.shape or rho.size < 2:
        raise ValueError(f"f and rho must be 1-D of the same length >= 2, got {f.shape} and {rho.shape}")
    if rho[0] != 0 or np.any(np.diff(rho) <= 0) or rho[-1] < R:
        raise ValueError("rho must increase strictly from 0 to at least R")
    norm_sq = integrate.trapezoid(f**2 * rho ** (k - 1), rho)
    inside = rho < R
    r = np.append(rho[inside], R)
    fr = np.append(f[inside], np.interp(R, rho, f))
    F = integrate.cumulative_trapezoid(fr * r ** (k - 1), r, initial=0.0)
    return float(integrate.trapezoid(F**2 * _density_values(density, r), r) / norm_sq)


def euler_lagrange_residual(R: float, n: int = 200) -> float:
    """max_ρ |λ f̂(ρ) − ∫_ρ^R F̂(r) dr| / max |λ f̂| on n radii in [0, R], integrals by adaptive quadrature.

    ∫_ρ^R F̂(r) dr = (R − ρ) F̂(ρ) + ∫_ρ^R s (R − s) f̂(s) ds, so F̂ is not taken from its closed form.
    """
    R = _check_R(R)
    lam = optimal_energy(R)

    def rhs(p: float) -> float:
        inner, _ = integrate.quad(lambda s: s * f_hat(s, R), 0.0, p, epsabs=0, epsrel=1e-12)
        outer, _ = integrate.quad(lambda s: s * (R - s) * f_hat(s, R), p, R, epsabs=0, epsrel=1e-12)
        return (R - p) * inner + outer

    rho = np.linspace(0.0, R, int(n))
    residual = lam * f_hat(rho, R) - np.array([rhs(p) for p in rho])
    return float(np.max(np.abs(residual)) / np.max(np.abs(lam * f_hat(rho, R))))


def eigen_profile(
    R: float, *, k: int = 2, density: Density = None, n: int = 2000
) -> tuple[np.ndarray, np.ndarray, float]:
    """Discretised optimum: (ρ (n,), f (n,), λ) for any dimension k and radius density p (None: p = 1).

    E(f) = ∫∫ f(ρ) w(ρ) f(ρ') w(ρ') K(ρ, ρ') dρ dρ', w = ρ^{k−1}, K(ρ, ρ') = ∫_{max(ρ,ρ')}^R p(r) dr. On n
    midpoints (cell Δ = R/n), with g = f·√(wΔ), this is the symmetric eigenproblem √(wΔ) K √(wΔ) g = λ g;
    the diagonal of K is the cell average ∫_ρ^R p − p(ρ)Δ/6. f is positive, ∑ f² w Δ = 1, λ = E(f) in the
    convention of `optimal_energy` (p is used as given: scaling p scales λ).
    """
    R, k = _check_R(R), _check_k(k, closed_form=False)
    if int(n) < 2:
        raise ValueError(f"n must be >= 2, got {n!r}")
    n = int(n)
    dr = R / n
    rho = (np.arange(n) + 0.5) * dr
    p = _density_values(density, rho)
    tail = (np.cumsum(p[::-1])[::-1] - 0.5 * p) * dr  # ∫_{ρ_i}^R p(r) dr, midpoint rule
    idx = np.arange(n)
    K = tail[np.maximum(idx[:, None], idx[None, :])]
    K[idx, idx] -= p * dr / 6.0
    sw = np.sqrt(rho ** (k - 1) * dr)
    lam, g = linalg.eigh(sw[:, None] * K * sw[None, :], subset_by_index=[n - 1, n - 1])
    f = g[:, 0] / sw
    f = f if f.sum() > 0 else -f
    return rho, f, float(lam[0])


# ------------------------------------------------------------------------------------ pixel grid optimum
def pixel_radii(shape, *, center=None) -> np.ndarray:
    """Radius of every pixel centre of an image of shape (h, w) (or side m) about center = (i_c, j_c).

    Default center ((h − 1)/2, (w − 1)/2): pixel (i, j) has (x, y) = (j − c, i − c) and radius √(x² + y²).
    """
    h, w = (shape, shape) if np.isscalar(shape) else tuple(shape)[-2:]
    ic, jc = ((h - 1) / 2, (w - 1) / 2) if center is None else center
    return np.hypot(*np.meshgrid(np.arange(h) - ic, np.arange(w) - jc, indexing="ij"))


def f_hat_image(size: int, R: float) -> np.ndarray:
    """f̂ sampled at the pixel centres of a size × size image, shape (size, size)."""
    return f_hat(pixel_radii(size), R)


@dataclass(frozen=True, eq=False)
class DiscreteOptimum:
    """Best rank-1 (bias-free, d = 1) reconstruction X ≈ h fᵀ of a stack of images."""

    profile: np.ndarray  # (m, m) f̂: unit L2 norm, positive sum (top right-singular vector)
    coefficients: np.ndarray  # (N,) h per image, = X f̂ = σ₁ u₁
    singular_value: float  # σ₁
    mse: float  # minimal per-pixel MSE (‖X‖² − σ₁²) / (N · #pixels)

    def reconstruct(self) -> np.ndarray:
        """h_n f̂ for every image, shape (N, m, m)."""
        return self.coefficients[:, None, None] * self.profile[None]


def _as_float64(array) -> np.ndarray:
    """numpy array or torch tensor (any device, with or without grad) → float64 numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _image_stack(images) -> np.ndarray:
    X = _as_float64(images)
    if X.ndim == 4 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim != 3 or X.shape[0] < 1:
        raise ValueError(f"images must be shaped (N, 1, m, m) or (N, m, m), got {tuple(X.shape)}")
    if not np.all(np.isfinite(X)):
        raise ValueError("images must be finite")
    return X


def discrete_optimum(images) -> DiscreteOptimum:
    """Rank-1 truncated SVD of the uncentred data matrix X (N × #pixels), in float64.

    The top singular pair comes from the Gram matrix of the smaller side when it is ≤ 1024 (exact eigh),
    else from ARPACK (scipy.sparse.linalg.svds) with a fixed start vector.
    """
    X = _image_stack(images)
    N, shape = X.shape[0], X.shape[1:]
    A = X.reshape(N, -1)
    small = min(A.shape)
    if small <= 1024:
        if A.shape[0] <= A.shape[1]:
            _, u = linalg.eigh(A @ A.T, subset_by_index=[small - 1, small - 1])
            v = A.T @ u[:, 0]
        else:
            _, v = linalg.eigh(A.T @ A, subset_by_index=[small - 1, small - 1])
            v = v[:, 0]
    else:
        _, _, vt = svds(A, k=1, v0=np.ones(small), random_state=0)
        v = vt[0]
    norm_v = np.linalg.norm(v)
    if norm_v == 0:
        raise ValueError("images are all zero: the optimum is undefined")
    v = v / norm_v
    v = v if v.sum() >= 0 else -v
    h = A @ v
    sigma = float(np.linalg.norm(h))
    mse = max(float(np.sum(A * A)) - sigma**2, 0.0) / A.size
    return DiscreteOptimum(v.reshape(shape), h, sigma, mse)


def radial_profile(image, *, center=None, bin_width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal average of a 2-D image: (mean pixel radius, mean value) per ring [k·bw, (k+1)·bw)."""
    img = _as_float64(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (m, m), got shape {img.shape}")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width!r}")
    rho = pixel_radii(img.shape, center=center).ravel()
    ring = np.floor(rho / bin_width).astype(np.int64)
    count = np.bincount(ring)
    keep = count > 0
    mean_rho = np.bincount(ring, rho)[keep] / count[keep]
    return mean_rho, np.bincount(ring, img.ravel())[keep] / count[keep]


def profile_distance(image, R: float) -> float:
    """min_a ‖a·image − f̂_pix‖ / ‖f̂_pix‖ over all pixels, f̂_pix = f̂ at the pixel radii (0 beyond R).

    Invariant to the scale and sign of image (the separable output h·f fixes f only up to scale); equals
    √(1 − cos²θ) with θ the angle between image and f̂_pix. 1.0 for an all-zero image.
    """
    img = _as_float64(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (m, m), got shape {img.shape}")
    target = f_hat(pixel_radii(img.shape), R)
    img_sq = float(np.sum(img * img))
    a = float(np.sum(img * target)) / img_sq if img_sq > 0 else 0.0
    return float(np.linalg.norm(a * img - target) / np.linalg.norm(target))
