"""geoae.datasets: torch datasets through a DataLoader; the ground-truth-factor adapters' shapes, conventions
and round trip factor → image → ground truth."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from geoae.data import DiracData, DiskData
from geoae.datasets import (
    RADIUS_VALUES,
    DiracDataset,
    DiracFactors,
    DiskDataset,
    DiskFactors,
    representation_function,
)
from geoae.models import IntegratingEncoder

DATASETS = [
    (DiskDataset, DiskData(n=10, size=16), (1, 16, 16), ()),
    (DiracDataset, DiracData(size=16, ndim=1), (1, 16), ()),
    (DiracDataset, DiracData(n=10, size=8, ndim=2, scheme="quadrant"), (1, 8, 8), (2,)),
]


@pytest.mark.parametrize(("cls", "config", "x_shape", "y_shape"), DATASETS)
def test_a_dataloader_iterates_the_dataset(cls, config, x_shape, y_shape):
    ds = cls(config, seed=3)
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = 0
    for x, y in loader:
        assert x.shape[1:] == x_shape and x.dtype == torch.float32
        assert y.shape[1:] == y_shape and len(y) == len(x)
        seen += len(x)
    assert seen == len(ds) == (config.n or config.size)
    images, targets = config.make(seed=3)  # the dataset holds exactly the config's data
    x0, y0 = ds[0]
    assert torch.equal(x0, images[0]) and torch.equal(y0, targets[0])


def test_dataset_refuses_the_other_config_and_needs_a_seed():
    with pytest.raises(ValueError, match="DiskDataset needs a DiskData"):
        DiskDataset(DiracData(size=8), seed=0)
    with pytest.raises(ValueError, match="seed"):
        DiracData(size=8).make(4)
    with pytest.raises(ValueError, match="seed"):
        DiskData(n=4, size=8).make()


def test_both_configs_take_make_n_seed():
    for config in (DiskData(n=5, size=8), DiracData(n=5, size=8)):
        x, y = config.make(3, seed=1)
        assert len(x) == len(y) == 3
        x, y = config.make(seed=1)
        assert len(x) == 5
        assert torch.equal(config.make(None, 1)[0], x)  # n and seed positional, as the old call sites did


# ------------------------------------------------------------------------------------- factor adapters

ADAPTERS = [
    (DiskFactors(DiskData(n=1, size=32)), ("radius",), [RADIUS_VALUES], [32, 32, 1]),
    (DiskFactors(DiskData(n=1, size=16, r_max=6.0), num_values=12), ("radius",), [12], [16, 16, 1]),
    (DiracFactors(DiracData(size=16, ndim=1)), ("position",), [16], [16, 1]),
    (DiracFactors(DiracData(size=8, ndim=2)), ("row", "column"), [8, 8], [8, 8, 1]),
]


@pytest.mark.parametrize(("gt", "names", "values", "shape"), ADAPTERS)
def test_adapter_shapes_and_conventions(gt, names, values, shape):
    assert gt.factor_names == names and gt.factors_num_values == values and gt.num_factors == len(names)
    assert list(gt.observation_shape) == shape and gt.factor_sizes == tuple(values)
    factors, obs = gt.sample(50, np.random.RandomState(0))
    assert factors.shape == (50, len(names)) and factors.dtype == np.int64
    assert np.all((factors >= 0) & (factors < np.array(values)))
    assert obs.shape == (50, *shape) and obs.dtype == np.float32
    assert 0.0 <= obs.min() and obs.max() <= 1.0
    again = gt.sample_factors(50, np.random.RandomState(0))
    assert np.array_equal(again, factors)  # the random state alone decides the draw
    assert len(np.unique(factors, axis=0)) > 1
    assert gt.sample_observations(3, np.random.RandomState(1)).shape == (3, *shape)


@pytest.mark.parametrize(("rendering", "tol"), [("area", 1e-6), ("gaussian", 5e-3)])
def test_disk_round_trip_factor_image_radius(rendering, tol):
    """Every bin, rendered, gives back its radius and its bin from the image alone: r = sqrt(Σx / π) for the
    renderings that preserve the disk's area (exactly for ``area``; ``gaussian`` samples the blurred disk at
    pixel centres, which loses up to ~4e-3 px of radius, most where the largest disk meets the border)."""
    gt = DiskFactors(DiskData(n=1, size=32, rendering=rendering), num_values=16)
    factors = np.arange(16)[:, None]
    obs = gt.sample_observations_from_factors(factors, np.random.RandomState(0))
    radii = gt.factors_to_radii(factors)
    assert np.allclose(np.diff(radii), gt.bin_width) and radii[0] == pytest.approx(gt.bin_width / 2)
    estimated = np.sqrt(obs.astype(np.float64).sum(axis=(1, 2, 3)) / math.pi)
    assert np.allclose(estimated, radii, rtol=0, atol=tol)
    assert np.array_equal(gt.radii_to_factors(estimated), factors)
    assert np.array_equal(gt.radii_to_factors([gt.r_min, gt.r_max]), [[0], [15]])


@pytest.mark.parametrize("ndim", [1, 2])
def test_dirac_round_trip_factor_image_position(ndim):
    gt = DiracFactors(DiracData(size=8, ndim=ndim))
    factors = gt.sample_factors(40, np.random.RandomState(2))
    obs = gt.sample_observations_from_factors(factors, np.random.RandomState(0))
    flat = obs.reshape(len(obs), -1)
    assert np.all(flat.sum(axis=1) == 1.0)
    found = np.stack(np.unravel_index(flat.argmax(axis=1), obs.shape[1:-1]), axis=1)
    assert np.array_equal(found, factors)


def test_factors_follow_the_scheme_and_the_excluded_radii():
    dirac = DiracFactors(DiracData(size=8, ndim=2, scheme="quadrant", quadrant=3))
    f = dirac.sample_factors(500, np.random.RandomState(0))
    assert not np.any((f[:, 0] >= 4) & (f[:, 1] >= 4))
    disk = DiskFactors(DiskData(n=1, size=32, exclude=((5.0, 9.0),)), num_values=16)  # bins of width 1
    r = disk.factors_to_radii(disk.sample_factors(500, np.random.RandomState(0)))
    assert not np.any((r > 5) & (r < 9)) and np.any(r < 5) and np.any(r > 9)
    obs = disk.sample_observations_from_factors([[6]], np.random.RandomState(0))  # rendered all the same
    assert obs.shape == (1, 32, 32, 1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda gt: gt.sample_factors(3, np.random.default_rng(0)), "RandomState"),
        (lambda gt: gt.sample_factors(-1, np.random.RandomState(0)), "num"),
        (lambda gt: gt.sample_observations_from_factors([[32]], np.random.RandomState(0)), "radius"),
        (lambda gt: gt.sample_observations_from_factors([[1, 2]], np.random.RandomState(0)), "shape"),
        (lambda gt: gt.sample_observations_from_factors([[1.5]], np.random.RandomState(0)), "integers"),
        (lambda gt: gt.radii_to_factors([40.0]), "radii"),
    ],
)
def test_adapter_errors_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call(DiskFactors(DiskData(n=1, size=32)))
    with pytest.raises(ValueError, match="num_values"):
        DiskFactors(DiskData(n=1, size=32), num_values=1)


def test_representation_function_encodes_observations():
    """The integrating encoder's code is the area Σx: the representation function must give it back from
    channels-last observations."""
    gt = DiskFactors(DiskData(n=1, size=16))
    factors, obs = gt.sample(20, np.random.RandomState(0))
    codes = representation_function(IntegratingEncoder(16), batch_size=7)(obs)
    assert codes.shape == (20, 1) and codes.dtype == np.float32
    assert np.allclose(codes[:, 0], obs.sum(axis=(1, 2, 3)), rtol=1e-5)
