"""Tests for geoae.theory: closed forms against root finding, quadrature, eigen-solvers and the SVD of
rendered disks, each at an explicit tolerance."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from geoae import theory as T

M, R_IMG = 64, 32.0


def render_area_disks(radii, m=M, s=8):
    """Centred disks, each pixel the fraction of its s × s sub-pixel centres inside the disk, (N, m, m).

    Self-contained (does not use geoae.data); coverage error ≲ 1/s per boundary pixel.
    """
    c = (m - 1) / 2
    offsets = (np.arange(s) + 0.5) / s - 0.5
    coords = (np.arange(m)[:, None] + offsets[None, :]).ravel() - c
    sub = np.hypot(coords[None, :], coords[:, None]).reshape(m, s, m, s).transpose(0, 2, 1, 3)
    sub = sub.reshape(m, m, s * s)
    return np.stack([(sub <= r).mean(-1) for r in radii])


@pytest.fixture(scope="module")
def disks():
    """500 area-rendered 64 × 64 disks with radii evenly spaced over (0, 32) (midpoints of U(0, 32))."""
    radii = R_IMG * (np.arange(500) + 0.5) / 500
    return render_area_disks(radii), radii


# ------------------------------------------------------------------------------------------ closed forms
def test_airy_root_is_first_root():
    x1 = T.airy_root()
    assert round(x1, 5) == 1.98635
    ai, _, bi, _ = special.airy(-x1)
    assert abs(math.sqrt(3) * ai + bi) < 1e-13
    grid = np.linspace(0, x1 - 1e-6, 1000)  # no earlier root
    ai, _, bi, _ = special.airy(-grid)
    assert np.all(math.sqrt(3) * ai + bi > 0)
    # the k-dimensional Bessel form with order −1/(k+1) gives, for k = 2, j_{−1/3} = (2/3) x₁^{3/2}
    assert special.jv(-1 / 3, 2 / 3 * x1**1.5) == pytest.approx(0, abs=1e-13)


def test_f_hat_raw_value_at_zero():
    # √3·Ai(0) + Bi(0) = 2·3^{−1/6} / Γ(2/3)
    assert T.f_hat(0.0, 5.0, normalise=False) == pytest.approx(2 * 3 ** (-1 / 6) / special.gamma(2 / 3))


@pytest.mark.parametrize("R", [1.0, 7.5, 32.0, 100.0])
def test_f_hat_shape(R):
    rho = np.linspace(0, R, 2001)
    f = T.f_hat(rho, R)
    assert np.all(f[:-1] > 0) and f[-1] == 0
    assert np.all(np.diff(f) < 0)
    assert np.all(T.f_hat(np.array([R, 1.01 * R, 3 * R]), R) == 0)
    d = 1e-4 * R
    assert abs(T.f_hat(d, R) - T.f_hat(0.0, R)) / d < 1e-3 * T.f_hat(0.0, R) / R  # f̂'(0) ≈ 0
    norm, _ = integrate.quad(lambda p: T.f_hat(p, R) ** 2 * p, 0, R, epsrel=1e-12)
    assert norm == pytest.approx(1, rel=1e-10)


@pytest.mark.parametrize("R", [1.0, 32.0, 100.0])
def test_euler_lagrange(R):
    assert T.euler_lagrange_residual(R) < 1e-6
    # and the ODE λ f'' + ρ f = 0 by central differences (truncation error O(h²))
    lam, h = T.optimal_energy(R), R / 2000
    rho = np.linspace(h, R - h, 500)
    f2 = (T.f_hat(rho + h, R) - 2 * T.f_hat(rho, R) + T.f_hat(rho - h, R)) / h**2
    assert np.max(np.abs(lam * f2 + rho * T.f_hat(rho, R))) < 1e-5 * np.max(rho * T.f_hat(rho, R))


@pytest.mark.parametrize("R", [3.0, 32.0])
def test_F_hat_and_h_hat(R):
    r = np.linspace(0, 1.5 * R, 31)
    quad = [integrate.quad(lambda p: T.f_hat(p, R) * p, 0, min(x, R), epsrel=1e-12)[0] for x in r]
    np.testing.assert_allclose(T.F_hat(r, R), quad, rtol=1e-9, atol=1e-14)
    h = T.h_hat(r, R)
    assert h[0] == 0 and np.all(np.diff(h[r <= R]) > 0) and np.all(h[r >= R] == pytest.approx(h[-1]))
    # ĥ(r) = ⟨f̂, 1_{B_r}⟩ / ‖f̂‖² with 2-D integrals over the plane
    inner = 2 * np.pi * np.array(quad)
    norm_sq = 2 * np.pi * integrate.quad(lambda p: T.f_hat(p, R) ** 2 * p, 0, R, epsrel=1e-12)[0]
    np.testing.assert_allclose(h, inner / norm_sq, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("R", [1.0, 32.0])
def test_optimal_energy_is_the_energy_of_f_hat_and_the_maximum(R):
    rho = np.linspace(0, R, 20001)
    lam = T.optimal_energy(R)
    assert lam == pytest.approx((R / T.airy_root()) ** 3)
    assert T.decoding_energy(T.f_hat(rho, R), rho, R) == pytest.approx(lam, rel=1e-4)
    assert T.decoding_energy(np.ones_like(rho), rho, R) == pytest.approx(R**3 / 10, rel=1e-6)
    others = {
        "constant": np.ones_like(rho),
        "linear": 1 - rho / R,
        "cosine": np.cos(np.pi * rho / (2 * R)),
        "gaussian": np.exp(-((rho / (0.5 * R)) ** 2)),
    }
    rng = np.random.default_rng(0)
    for i in range(5):  # perturbations of f̂ by 10 % of its peak
        bump = np.sin((i + 1) * np.pi * rho / R) * rng.choice([-1, 1])
        others[f"perturbed{i}"] = T.f_hat(rho, R) + 0.1 * T.f_hat(0.0, R) * bump
    for name, f in others.items():
        assert T.decoding_energy(f, rho, R) < lam * (1 - 1e-5), name


# ----------------------------------------------------------------------------------- eigen-solver
@pytest.mark.parametrize("R", [1.0, 32.0])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_eigen_profile_matches_closed_form(k, R):
    rho, f, lam = T.eigen_profile(R, k=k, n=800)
    closed = T.closed_form_profile(rho, R, k=k)
    assert np.max(np.abs(f - closed)) < 1e-3 * np.max(closed)  # max abs error relative to max f
    assert lam == pytest.approx(T.closed_form_energy(R, k=k), rel=1e-3)
    norm, _ = integrate.quad(lambda p: T.closed_form_profile(p, R, k=k) ** 2 * p ** (k - 1), 0, R, limit=200)
    assert norm == pytest.approx(1, rel=1e-9)


def test_closed_form_k2_is_f_hat_and_k1_is_cosine():
    rho = np.linspace(0, 10, 101)
    np.testing.assert_array_equal(T.closed_form_profile(rho, 10, k=2), T.f_hat(rho, 10))
    np.testing.assert_allclose(T.closed_form_profile(rho, 10, k=1), np.sqrt(0.2) * np.cos(np.pi * rho / 20), atol=1e-15)
    assert T.closed_form_energy(10, k=1) == pytest.approx((20 / np.pi) ** 2)


def _with_ends(rho, f, R):
    """Extend a midpoint-sampled profile to [0, R] (f'(0) = 0, f(R) = 0) for decoding_energy."""
    return np.concatenate([[0.0], rho, [R]]), np.concatenate([[f[0]], f, [0.0]])


@pytest.mark.parametrize("density", [lambda r: np.exp(-r / 8), lambda r: r / 32, lambda r: 1 + (r > 20)])
def test_eigen_profile_nonuniform_density(density):
    R = 32.0
    rho, f, lam = T.eigen_profile(R, density=density, n=800)
    airy = T.f_hat(rho, R)
    assert np.linalg.norm(f - airy) / np.linalg.norm(airy) > 0.02  # the density changes the profile
    assert np.all(f > 0) and np.all(np.diff(f) < 0)
    assert np.sum(f**2 * rho * (R / 800)) == pytest.approx(1, rel=1e-12)
    assert T.decoding_energy(*_with_ends(rho, f, R)[::-1], R, density=density) == pytest.approx(lam, rel=1e-3)
    # scaling the density scales λ and leaves f unchanged
    _, f2, lam2 = T.eigen_profile(R, density=lambda r: 3 * density(r), n=800)
    assert lam2 == pytest.approx(3 * lam, rel=1e-10)
    np.testing.assert_allclose(f2, f, atol=1e-10 * f.max())


def test_eigen_profile_uniform_density_explicit():
    _, f, lam = T.eigen_profile(5.0, density=lambda r: 1.0, n=300)
    _, f0, lam0 = T.eigen_profile(5.0, n=300)
    np.testing.assert_allclose(f, f0)
    assert lam == pytest.approx(lam0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: T.f_hat(1.0, 0),
        lambda: T.f_hat(1.0, -2),
        lambda: T.f_hat(1.0, float("inf")),
        lambda: T.f_hat(1.0, float("nan")),
        lambda: T.f_hat(-1.0, 3),
        lambda: T.closed_form_profile(1.0, 3, k=4),
        lambda: T.closed_form_energy(3, k=0),
        lambda: T.eigen_profile(3, k=0),
        lambda: T.eigen_profile(3, density=lambda r: -np.ones_like(r)),
        lambda: T.decoding_energy(np.ones(5), np.linspace(1, 3, 5), 3),
        lambda: T.discrete_optimum(np.zeros((4, 8, 8))),
        lambda: T.discrete_optimum(np.ones((4, 2, 8, 8))),
        lambda: T.radial_profile(np.ones((2, 8, 8))),
    ],
)
def test_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()


def test_error_names_the_parameter():
    with pytest.raises(ValueError, match="k must be 1, 2 or 3"):
        T.closed_form_profile(1.0, 3, k=4)
    with pytest.raises(ValueError, match="R must be"):
        T.optimal_energy(0)


# ------------------------------------------------------------------------------------ pixel grid
def test_pixel_radii_and_radial_profile():
    r = T.pixel_radii(4)
    assert r[0, 0] == pytest.approx(math.hypot(1.5, 1.5)) and r[1, 2] == pytest.approx(math.hypot(0.5, 0.5))
    rho, values = T.radial_profile(T.pixel_radii(M))
    np.testing.assert_allclose(rho, values)
    _, ones = T.radial_profile(np.ones((M, M)), bin_width=2.5)
    np.testing.assert_allclose(ones, 1)
    rho, values = T.radial_profile(T.f_hat_image(M, R_IMG), bin_width=0.5)
    np.testing.assert_allclose(values[rho < 30], T.f_hat(rho[rho < 30], R_IMG), atol=2e-4 * values.max())


def test_profile_distance():
    img = T.f_hat_image(M, R_IMG)
    assert T.profile_distance(img, R_IMG) < 1e-12
    assert T.profile_distance(-3 * img, R_IMG) < 1e-12
    assert T.profile_distance(np.zeros((M, M)), R_IMG) == 1.0
    assert T.profile_distance(np.ones((M, M)), R_IMG) > 0.3
    assert T.profile_distance(torch.tensor(img, requires_grad=True), R_IMG) < 1e-12


def test_svd_profile_of_disks_is_airy(disks):
    images, _ = disks
    opt = T.discrete_optimum(images)
    distance = T.profile_distance(opt.profile, R_IMG)
    assert distance < 0.01  # measured 0.0015 (SPEC: under 1 %, brief: under 2 %)
    assert np.linalg.norm(opt.profile) == pytest.approx(1) and opt.profile.sum() > 0
    rho, values = T.radial_profile(opt.profile)
    airy = T.f_hat(rho, R_IMG)
    a = values @ airy / (values @ values)
    assert np.linalg.norm(a * values - airy) / np.linalg.norm(airy) < 0.01


def test_discrete_optimum_is_the_best_rank_one_fit(disks):
    images, _ = disks
    opt = T.discrete_optimum(images)
    X = images.reshape(len(images), -1)
    assert opt.mse == pytest.approx(np.mean((images - opt.reconstruct()) ** 2), rel=1e-9)

    def rank_one_mse(direction):
        v = direction.ravel() / np.linalg.norm(direction)  # best coefficients X v: error ‖X‖² − ‖X v‖²
        return (np.sum(X**2) - np.sum((X @ v) ** 2)) / X.size

    rng = np.random.default_rng(1)
    candidates = [images.mean(0), T.f_hat_image(M, R_IMG), T.f_hat_image(M, 28.0), images[-1]]
    candidates += [np.abs(rng.normal(size=(M, M))) for _ in range(5)]
    candidates += [opt.profile + 0.01 * rng.normal(size=(M, M)) for _ in range(5)]
    for c in candidates:
        assert opt.mse < rank_one_mse(c)
    assert rank_one_mse(opt.profile) == pytest.approx(opt.mse, rel=1e-9)


def test_discrete_coefficients_follow_h_hat(disks):
    images, radii = disks
    opt = T.discrete_optimum(images)
    # h increases with the radius (strictly once the disk covers a sub-pixel sample, r > 0.1)
    assert np.all(np.diff(opt.coefficients) >= 0) and np.all(np.diff(opt.coefficients[radii > 0.1]) > 0)
    h = T.h_hat(radii, R_IMG)
    assert np.corrcoef(h, opt.coefficients)[0, 1] > 0.99
    # unit-norm pixel profile ⇒ coefficient ≈ ĥ(r) · ‖f̂ at the pixels‖ (≈ √(2π) ĥ(r))
    scale = np.linalg.norm(T.f_hat_image(M, R_IMG))
    assert scale == pytest.approx(math.sqrt(2 * math.pi), rel=1e-2)
    np.testing.assert_allclose(opt.coefficients[50:], scale * h[50:], rtol=1e-2)


def test_discrete_optimum_inputs():
    images = render_area_disks(np.linspace(2, 15, 40), m=32, s=4)
    a = T.discrete_optimum(images)
    b = T.discrete_optimum(torch.from_numpy(images).float().unsqueeze(1))
    np.testing.assert_allclose(a.profile, b.profile, atol=1e-6)
    assert a.reconstruct().shape == (40, 32, 32) and a.coefficients.shape == (40,)
    assert a.singular_value == pytest.approx(np.linalg.norm(images.reshape(40, -1), 2), rel=1e-12)
    tall = T.discrete_optimum(np.concatenate([images] * 30))  # N > #pixels: the other Gram matrix
    np.testing.assert_allclose(tall.profile, a.profile, atol=1e-10)
    assert tall.mse == pytest.approx(a.mse, rel=1e-8)


def test_airy_curve():
    rho, f = T.airy_curve(10.0, n=11, rho_max=20.0)
    assert rho[-1] == 20 and np.all(f[rho >= 10] == 0) and f[0] == T.f_hat(0.0, 10.0)


def test_discrete_optimum_large_matrices_use_arpack():
    rng = np.random.default_rng(2)
    images = rng.random((1100, 34, 34))  # min(N, #pixels) > 1024: the svds branch
    opt = T.discrete_optimum(images)
    X = images.reshape(1100, -1)
    assert opt.singular_value == pytest.approx(math.sqrt(np.linalg.eigvalsh(X.T @ X)[-1]), rel=1e-10)
    assert opt.mse == pytest.approx(np.mean((images - opt.reconstruct()) ** 2), rel=1e-8)


def test_svd_profile_of_random_area_disks_is_airy():
    """The issue's check with geoae's own generator: 64 × 64 ``area`` disks, r ~ U(0, 32), seeded.

    The finite sample's radius histogram is not exactly uniform, so the distance shrinks with N
    (measured: 2.4 % at N = 1000, 1.3 % at N = 5000, 0.7 % at N = 10000).
    """
    from geoae.data import make_disks

    images, _ = make_disks(5000, size=64, rendering="area", seed=0)
    assert T.profile_distance(T.discrete_optimum(images).profile, 32.0) < 0.02
