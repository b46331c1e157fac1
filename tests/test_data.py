"""geoae.data: renderings against their definitions, samplers against their laws, Dirac schemes, errors."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import geoae.data as data


def _centres(size):
    """Pixel-centre coordinates (x, y), each (m, m), float64: x = j - c, y = i - c."""
    t = np.arange(size) - (size - 1) / 2
    y, x = np.meshgrid(t, t, indexing="ij")
    return x, y


# --------------------------------------------------------------------------- renderings


@pytest.mark.parametrize("r", [2.0, 5.5, 10.0, 17.3, 25.0, 31.0, 32.0])
def test_area_rendering_sums_to_disk_area(r):
    img = data.render_disks([r], size=64, rendering="area")
    # Exact geometry: far tighter than the 0.5 % the spec asks for.
    assert img.double().sum().item() == pytest.approx(math.pi * r * r, rel=1e-5)


@pytest.mark.parametrize("size", [16, 17])
def test_area_rendering_matches_chord_quadrature(size):
    """Per pixel, against the integral over its x-range of the covered length of its y-range (midpoints)."""
    radii = [0.4, 2.7, 5.0, size / 2]
    img = data.render_disks(radii, size=size, rendering="area")[:, 0].double().numpy()
    k = 4096  # x samples per pixel column
    x = (np.arange(size * k) + 0.5) / k - size / 2  # (m k,)
    lo = np.arange(size) - size / 2  # lower pixel edges in y
    for r, got in zip(radii, img, strict=True):
        h = np.sqrt(np.clip(r * r - x * x, 0.0, None))
        chord = np.clip(np.minimum(h, lo[:, None] + 1) - np.maximum(-h, lo[:, None]), 0.0, None)  # (m, m k)
        ref = chord.reshape(size, size, k).mean(axis=2)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [16, 17])
@pytest.mark.parametrize("r", [0.0, 3.0, 5.0, 6.2, 8.5])
def test_binary_rendering_is_the_indicator_of_pixel_centres(size, r):
    x, y = _centres(size)
    expected = (x**2 + y**2 <= r**2).astype(np.float32)  # r = 5 on 17 x 17 hits centres (3, 4) exactly
    np.testing.assert_array_equal(
        data.render_disks([r], size=size, rendering="binary")[0, 0].numpy(), expected
    )


@pytest.mark.parametrize(("size", "sigma"), [(16, 0.5), (15, 0.5), (16, 1.0)])
def test_gaussian_rendering_matches_monte_carlo(size, sigma):
    """Reference, the authors' recipe: mean over Gaussian offsets q of 1{|t + q| <= r}, t a pixel centre."""
    radii = np.array([0.6, 3.3, 6.0, size / 2])
    n = 40_000  # MC std <= 0.5 / sqrt(n) = 0.0025, so 0.02 is > 8 std
    q = sigma * np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    x, y = _centres(size)
    d2 = (x.ravel()[:, None] + q[None, :, 0]) ** 2 + (y.ravel()[:, None] + q[None, :, 1]) ** 2  # (m^2, n)
    ref = np.stack([(d2 <= r * r).mean(axis=1) for r in radii]).reshape(-1, size, size)
    got = data.render_disks(radii, size=size, rendering="gaussian", sigma=sigma)[:, 0].numpy()
    assert np.abs(got - ref).max() < 0.02


@pytest.mark.parametrize("rendering", data.RENDERINGS)
@pytest.mark.parametrize("size", [2, 9, 32])
def test_rendering_shape_range_symmetry_monotonicity(rendering, size):
    radii = torch.linspace(0, size / 2 + 3, 23)  # beyond m/2 too: render draws any radius
    img = data.render_disks(radii, size=size, rendering=rendering)
    assert img.shape == (23, 1, size, size) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1
    torch.testing.assert_close(img, img.transpose(2, 3))
    torch.testing.assert_close(img, img.flip(2))
    torch.testing.assert_close(img, img.flip(3))
    assert (img[1:] >= img[:-1]).all()  # a larger disk covers every pixel at least as much


def test_render_accepts_empty_batch_and_numpy():
    assert data.render_disks([], size=8).shape == (0, 1, 8, 8)
    torch.testing.assert_close(data.render_disks(np.array([3.0]), size=8), data.render_disks([3.0], size=8))


# --------------------------------------------------------------------------- radius sampling


def _union_cdf(pieces):
    """CDF of the uniform law on a union of disjoint intervals."""
    lo = np.array([p[0] for p in pieces])
    hi = np.array([p[1] for p in pieces])
    total = (hi - lo).sum()
    return lambda r: np.clip(np.asarray(r)[..., None], lo, hi).__sub__(lo).sum(-1) / total


@pytest.mark.parametrize(
    ("kwargs", "pieces"),
    [
        ({}, [(0, 32)]),
        ({"exclude": ((11, 18),)}, [(0, 11), (18, 32)]),  # the paper's hole
        ({"r_min": 2, "r_max": 24, "exclude": ((-5, 4), (10, 12), (11, 13), (20, 40))}, [(4, 10), (13, 20)]),
        ({"size": 63, "exclude": [[1, 2], [30, 31]]}, [(0, 1), (2, 30), (31, 31.5)]),
    ],
)
def test_sample_radii_is_uniform_on_the_allowed_union(kwargs, pieces):
    r = data.sample_radii(100_000, seed=0, **kwargs)
    assert r.shape == (100_000,) and r.dtype == torch.float32
    r = r.double().numpy()
    inside = np.zeros_like(r, dtype=bool)
    for lo, hi in pieces:
        inside |= (r >= lo) & (r <= hi)
    assert inside.all()
    assert stats.kstest(r, _union_cdf(pieces)).pvalue > 1e-3


def test_sample_radii_never_in_a_hole_at_float32_edges():
    hole = (11.1, 18.3)  # ends not representable in float32
    r = data.sample_radii(200_000, exclude=(hole,), seed=1).double()
    assert not ((r > hole[0]) & (r < hole[1])).any()


def test_seeds_reproduce_and_differ():
    a, ra = data.make_disks(20, size=16, exclude=((3, 5),), seed=7)
    b, rb = data.make_disks(20, size=16, exclude=((3, 5),), seed=torch.Generator().manual_seed(7))
    c, rc = data.make_disks(20, size=16, exclude=((3, 5),), seed=8)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ra, rb, rtol=0, atol=0)
    assert not torch.equal(ra, rc)
    torch.testing.assert_close(a, data.render_disks(ra, size=16))  # images drawn from the returned radii


def test_a_generator_seed_advances():
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(data.sample_radii(5, seed=g), data.sample_radii(5, seed=g))


def test_test_radii_evenly_spaced():
    r = data.test_radii(5, size=64, r_min=2)
    torch.testing.assert_close(r, torch.tensor([2.0, 9.5, 17.0, 24.5, 32.0]))
    assert data.test_radii(300, size=63)[-1] == 31.5


def test_make_disks_ten_thousand_runs():
    x, r = data.make_disks(10_000, size=64, seed=0)  # vectorised: about 1.5 s on 2 CPU cores
    assert x.shape == (10_000, 1, 64, 64) and r.shape == (10_000,)


# --------------------------------------------------------------------------- Diracs


def _hole_16(p):
    return (p >= 6) & (p < 10)  # the default hole of size 16: the middle quarter


@pytest.mark.parametrize(
    ("ndim", "kwargs", "count", "held_out"),
    [
        (1, {"scheme": "all"}, 16, None),
        (2, {"scheme": "all"}, 256, None),
        (1, {"scheme": "stride", "stride": 3}, 6, lambda p: p % 3 != 0),
        (2, {"scheme": "stride", "stride": 4}, 16, lambda p: (p % 4 != 0).any(-1)),
        (1, {"scheme": "hole"}, 12, _hole_16),
        (2, {"scheme": "hole"}, 240, lambda p: _hole_16(p).all(-1)),
        (1, {"scheme": "hole", "hole": (0, 5)}, 11, lambda p: p < 5),
        (2, {"scheme": "quadrant", "quadrant": 0}, 192, lambda p: (p[:, 0] < 8) & (p[:, 1] < 8)),
        (2, {"scheme": "quadrant", "quadrant": 1}, 192, lambda p: (p[:, 0] < 8) & (p[:, 1] >= 8)),
        (2, {"scheme": "quadrant", "quadrant": 2}, 192, lambda p: (p[:, 0] >= 8) & (p[:, 1] < 8)),
        (2, {"scheme": "quadrant"}, 192, lambda p: (p[:, 0] >= 8) & (p[:, 1] >= 8)),
        (1, {"scheme": "random", "fraction": 0.3}, 5, None),
        (2, {"scheme": "random", "fraction": 0.1}, 26, None),
        (1, {"scheme": "random", "fraction": 0.001}, 1, None),
    ],
)
def test_dirac_schemes(ndim, kwargs, count, held_out):
    pos = data.dirac_positions(size=16, ndim=ndim, **kwargs)
    everything = data.all_dirac_positions(16, ndim)
    assert pos.dtype == torch.int64 and pos.shape == ((count,) if ndim == 1 else (count, 2))
    assert len(torch.unique(pos, dim=0)) == count
    if held_out is not None:  # exactly the positions not held out are kept
        assert torch.equal(pos, everything[~held_out(everything)])


def test_random_scheme_is_seeded():
    kw = {"size": 32, "scheme": "random", "fraction": 0.25}
    assert torch.equal(data.dirac_positions(seed=3, **kw), data.dirac_positions(seed=3, **kw))
    assert not torch.equal(data.dirac_positions(seed=3, **kw), data.dirac_positions(seed=4, **kw))


@pytest.mark.parametrize("ndim", [1, 2])
def test_render_diracs_one_hot(ndim):
    pos = data.all_dirac_positions(8, ndim)
    sig = data.render_diracs(pos, size=8, ndim=ndim)
    assert sig.shape == (8**ndim, 1, *(8,) * ndim) and sig.dtype == torch.float32
    torch.testing.assert_close(sig.reshape(len(pos), -1), torch.eye(8**ndim))  # a single 1, at row-major p


@pytest.mark.parametrize("ndim", [1, 2])
def test_make_diracs_with_and_without_replacement(ndim):
    kw = {"size": 8, "ndim": ndim, "scheme": "random", "fraction": 0.5, "seed": 5}
    train = data.dirac_positions(**kw)
    sig, pos = data.make_diracs(**kw)
    assert torch.equal(pos, train) and sig.shape == (len(train), 1, *(8,) * ndim)
    sig, pos = data.make_diracs(100, **kw)
    assert len(pos) == 100 and sig.shape[0] == 100
    assert set(map(tuple, pos.reshape(100, -1).tolist())) <= set(
        map(tuple, train.reshape(len(train), -1).tolist())
    )
    torch.testing.assert_close(sig, data.render_diracs(pos, size=8, ndim=ndim))


# --------------------------------------------------------------------------- configs


def test_disk_data_config():
    cfg = data.DiskData(n=12, size=16, exclude=[[3, 5]])
    assert cfg.exclude == ((3.0, 5.0),) and hash(cfg)
    again = data.DiskData(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert again == cfg
    x, r = cfg.make(None, seed=0)
    assert x.shape == (12, 1, 16, 16) and x.dtype == torch.float32
    x, r = cfg.make(4, seed=0)
    assert x.shape == (4, 1, 16, 16)


def test_dirac_data_config():
    cfg = data.DiracData(size=8, ndim=2, scheme="hole", hole=[2, 4])
    assert cfg.hole == (2, 4) and hash(cfg)
    assert data.DiracData(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg
    sig, pos = cfg.make(seed=0)
    assert sig.shape == (60, 1, 8, 8) and pos.shape == (60, 2)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: data.render_disks([1.0], rendering="foo"), r"rendering='foo' is not one of 'binary'"),
        (lambda: data.render_disks([-1.0]), r"radius must be finite and >= 0, got -1.0"),
        (lambda: data.render_disks([float("nan")]), r"radius must be finite"),
        (lambda: data.render_disks([[1.0]]), r"radii must be a 1-D"),
        (lambda: data.render_disks([1.0], size=1), r"size must be an integer in \[2, 4096\], got 1"),
        (lambda: data.render_disks([1.0], size=8.0), r"size must be an integer"),
        (lambda: data.render_disks([1.0], rendering="gaussian", sigma=0), r"sigma must be a finite number in \(0, "),
        (lambda: data.sample_radii(5, r_max=40, seed=0), r"r_max=40 must be <= size/2 = 32"),
        (lambda: data.sample_radii(5, r_min=10, r_max=5, seed=0), r"r_min=10 must be < r_max=5"),
        (lambda: data.sample_radii(5, r_min=-1, seed=0), r"r_min must be finite and >= 0"),
        (lambda: data.sample_radii(-1, seed=0), r"n must be an integer in \[0, 1073741824\]"),
        (lambda: data.sample_radii(5, seed=1.5), r"seed must be an integer in \[0, 2\*\*63 - 1\] or a torch.Generator"),
        (
            lambda: data.sample_radii(5, exclude=((40, 50),), seed=0),
            r"exclude interval \(40, 50\) lies outside \[r_min, r_max\] = \[0, 32\]",
        ),
        (
            lambda: data.make_disks(5, exclude=((-1, 20), (15, 33)), seed=0),
            r"exclude intervals cover the whole range \[0, 32\]: nothing left to sample",
        ),
        (
            lambda: data.make_disks(5, exclude=(11, 18), seed=0),
            r"exclude must be a sequence of \(lo, hi\) pairs",
        ),
        (lambda: data.make_disks(5, exclude=((18, 11),), seed=0), r"exclude interval .* lo < hi"),
        (lambda: data.make_disks(5, rendering="nope", seed=0), r"rendering='nope'"),
        (lambda: data.test_radii(0), r"n must be an integer in \[1, "),
        (lambda: data.test_radii(5, size=16, r_max=9), r"r_max=9 must be <= size/2 = 8"),
        (lambda: data.dirac_positions(scheme="x"), r"scheme='x' is not one of 'all', 'random'"),
        (lambda: data.dirac_positions(scheme="quadrant"), r"quadrant is only defined for ndim=2"),
        (lambda: data.dirac_positions(ndim=3), r"ndim must be an integer in \[1, 2\], got 3"),
        (lambda: data.dirac_positions(scheme="random", fraction=0), r"fraction must be in \(0, 1\], got 0"),
        (lambda: data.dirac_positions(fraction=1.5), r"fraction must be in \(0, 1\]"),
        (lambda: data.dirac_positions(size=8, stride=9), r"stride must be an integer in \[1, 8\], got 9"),
        (lambda: data.dirac_positions(ndim=2, quadrant=4), r"quadrant must be an integer in \[0, 3\]"),
        (lambda: data.dirac_positions(size=8, hole=(5, 3)), r"hole must be a pair of ints \(lo, hi\)"),
        (lambda: data.dirac_positions(size=8, hole=(2, 9)), r"hole must be .* <= size = 8"),
        (lambda: data.dirac_positions(size=8, hole=(0, 8)), r"hole=\(0, 8\) removes every position"),
        (lambda: data.make_diracs(0), r"n must be an integer in \[1, 1073741824\], got 0"),
        (lambda: data.render_diracs([0.5], size=8), r"positions must be integers"),
        (lambda: data.render_diracs([8], size=8), r"positions must lie in \[0, size\) = \[0, 8\)"),
        (lambda: data.render_diracs([1, 2], size=8, ndim=2), r"positions must have shape \(P, 2\)"),
        (lambda: data.DiskData(n=0), r"n must be an integer in \[1, "),
        (lambda: data.DiskData(n=5, r_max=33), r"r_max=33 must be <= size/2 = 32"),
        (lambda: data.DiskData(n=5, fresh="yes"), r"fresh must be True or False"),
        (lambda: data.DiracData(scheme="quadrant"), r"quadrant is only defined for ndim=2"),
    ],
)
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
