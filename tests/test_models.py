"""Tests for geoae.models: shapes, validation, pinned parameter counts, Prop. 1 homogeneity, the folded
upsampling, deterministic initialisation, the hand-crafted networks and the authors' released model."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from geoae.models import (
    Autoencoder,
    IntegratingEncoder,
    ModelConfig,
    PositionEncoder,
    UpsampleConv,
    build_model,
    count_parameters,
    default_channels,
    load_official_model,
    official_model_path,
    upsample_zeros,
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def disk_image(r: float, size: int, centre: float, sigma: float = 0.0, supersample: int = 9) -> np.ndarray:
    """Disk indicator of radius r, area-averaged over each pixel (supersampled), optionally blurred by a
    Gaussian of ``sigma`` pixels (applied on the fine grid)."""
    t = (np.arange(size * supersample) + 0.5) / supersample - 0.5  # fine-grid coordinates in pixel units
    yy, xx = np.meshgrid(t, t, indexing="ij")
    fine = ((yy - centre) ** 2 + (xx - centre) ** 2 <= r * r).astype(np.float64)
    if sigma > 0:
        fine = ndimage.gaussian_filter(fine, sigma * supersample, mode="constant")
    return fine.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


# --- configuration and shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(),
        ModelConfig(size=32, latent_dim=3, bias=False),
        ModelConfig(size=128, latent_dim=2, upsample="nearest", output_activation="sigmoid"),
        ModelConfig(arch="paper1d", size=64),
        ModelConfig(arch="paper1d", size=8, latent_dim=2, upsample="nearest", output_activation="identity"),
        ModelConfig(arch="keras63", size=63),
        ModelConfig(arch="keras63", size=63, latent_dim=2, bias=False),
    ],
    ids=lambda c: f"{c.arch}-m{c.size}-d{c.latent_dim}-{c.upsample}",
)
def test_shapes(config):
    model = build_model(config)
    x = torch.rand(5, 1, *(config.size,) * config.ndim)
    z, x_hat = model(x)
    assert z.shape == (5, config.latent_dim)
    assert x_hat.shape == x.shape
    assert len(model.encoder_weights()) == len(model.decoder_weights()) == config.n_layers


def test_default_channels_and_alpha():
    assert ModelConfig().layer_channels == (1, 8, 4, 4, 3, 2, 1)  # the paper's 1→8→4→4→3→2→d
    assert [default_channels(L) for L in (1, 2, 5, 7)] == [(), (8,), (8, 4, 3, 2), (8, 8, 4, 4, 3, 2)]
    assert ModelConfig(arch="keras63", size=63).layer_channels == (1, 8, 4, 3, 2, 1)
    assert ModelConfig().negative_slope == 0.2
    assert ModelConfig(arch="keras63", size=63).negative_slope == 0.05


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"size": 48}, "size"),
        ({"size": 1}, "size"),
        ({"arch": "resnet"}, "arch"),
        ({"upsample": "bilinear"}, "upsample"),
        ({"output_activation": "tanh"}, "output_activation"),
        ({"channels": (8, 4)}, "channels"),
        ({"channels": (8, 4, 0, 3, 2)}, "channels"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"alpha": -0.1}, "alpha"),
        ({"arch": "keras63", "size": 64}, "size"),
        ({"arch": "keras63", "size": 63, "upsample": "nearest"}, "upsample"),
    ],
)
def test_invalid_config_names_parameter(kwargs, param):
    with pytest.raises(ValueError, match=param):
        build_model(ModelConfig(**kwargs))


def test_wrong_input_shape_is_an_error():
    model = build_model(ModelConfig(size=32))
    with pytest.raises(ValueError, match="shape"):
        model.encode(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match="shape"):
        model.decode(torch.rand(2, 3))


def test_config_json_round_trip():
    config = ModelConfig(size=32, latent_dim=2, alpha=0.1, channels=(6, 5, 4, 3), upsample="nearest")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="depth: unknown ModelConfig key"):
        ModelConfig.from_dict({**config.to_dict(), "depth": 3})


# --- parameters and initialisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # paper64, m=64, d=1. Encoder 1→8→4→4→3→2→1, 3×3 kernels: weights 9·(8 + 32 + 16 + 12 + 6 + 2) = 684,
        # biases 8+4+4+3+2+1 = 22. Decoder 1→2→3→4→4→8→1: weights 9·(2 + 6 + 12 + 16 + 32 + 8) = 684,
        # biases 2+3+4+4+8+1 = 22. Total 2·(684 + 22) = 1412; bias-free 2·684 = 1368.
        (ModelConfig(), 1412),
        (ModelConfig(bias=False), 1368),
        # keras63: 1→8→4→3→2→1: weights 9·(8 + 32 + 12 + 6 + 2) = 540, biases 18, both halves: 1116.
        (ModelConfig(arch="keras63", size=63), 1116),
    ],
)
def test_pinned_parameter_count(config, expected):
    assert count_parameters(build_model(config)) == expected


def test_init_is_glorot_and_deterministic():
    config = ModelConfig()
    a, b, c = build_model(config, seed=0), build_model(config, seed=0), build_model(config, seed=1)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.encoder_weights()[0], c.encoder_weights()[0])
    gen_model = build_model(config, seed=torch.Generator().manual_seed(0))
    assert torch.equal(gen_model.decoder_weights()[-1], a.decoder_weights()[-1])
    for layer in a.conv_layers():
        w = layer.weight
        fans = (w.shape[0] + w.shape[1]) * w[0, 0].numel()
        assert w.abs().max() <= math.sqrt(6 / fans)
        assert torch.count_nonzero(layer.bias) == 0
    assert all(w.dim() == 4 for w in a.encoder_weights() + a.decoder_weights())


# --- the folded upsampling and Prop. 1 -------------------------------------------------------------------


def test_upsample_zeros_places_samples_at_even_indices():
    x = torch.tensor([[[3.0, 5.0]]])
    assert upsample_zeros(x).tolist() == [[[3.0, 0.0, 5.0, 0.0]]]
    assert upsample_zeros(torch.ones(1, 1, 2, 2))[0, 0].tolist() == [[1, 0, 1, 0], [0, 0, 0, 0]] * 2


@pytest.mark.parametrize("mode", ["zeros", "nearest"])
@pytest.mark.parametrize("ndim", [1, 2])
def test_folded_upsample_conv_equals_explicit(mode, ndim):
    g = torch.Generator().manual_seed(0)
    layer = UpsampleConv(ndim, 3, 2, mode).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
        layer.bias.copy_(torch.randn(2, generator=g))
    x = torch.randn(4, 3, *(5,) * ndim, generator=g, dtype=torch.float64)
    assert rel_err(layer(x), layer.forward_explicit(x)) < 1e-12


HOMOGENEITY_CONFIGS = [
    ModelConfig(),
    ModelConfig(upsample="nearest"),
    ModelConfig(output_activation="identity"),
    ModelConfig(arch="paper1d", latent_dim=2),
    ModelConfig(arch="keras63", size=63),
]


@pytest.mark.parametrize(
    "config", HOMOGENEITY_CONFIGS, ids=lambda c: f"{c.arch}-{c.upsample}-{c.output_activation[:4]}"
)
def test_prop1_bias_free_decoder_is_homogeneous_biased_is_not(config):
    z = torch.rand(8, config.latent_dim, generator=torch.Generator().manual_seed(0)) + 0.1
    free = build_model(ModelConfig(**{**config.to_dict(), "bias": False}), seed=3)
    biased = build_model(config, seed=3)
    with torch.no_grad():
        for layer in biased.conv_layers():
            layer.bias.fill_(0.1)
        for lam in (0.5, 2.0, 10.0):
            assert rel_err(free.decode(lam * z), lam * free.decode(z)) < 1e-5
            assert rel_err(biased.decode(lam * z), lam * biased.decode(z)) > 1e-2


@pytest.mark.parametrize("arch", ["paper64", "paper1d", "keras63"])
def test_prop1_bias_free_encoder_is_positively_homogeneous(arch):
    config = ModelConfig(arch=arch, size=63 if arch == "keras63" else 64, latent_dim=3, bias=False)
    model = build_model(config)
    x = torch.randn(6, 1, *(config.size,) * config.ndim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for lam in (0.5, 2.0, 10.0):
            assert rel_err(model.encode(lam * x), lam * model.encode(x)) < 1e-5


# --- hand-crafted networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2])
def test_integrating_encoder_outputs_the_sum(ndim):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, *(64,) * ndim, generator=g)
    if ndim == 2:
        disks = [disk_image(r, 64, 31.5, supersample=3) for r in (0.7, 3.0, 10.5, 20.0, 31.9)]
        x = torch.cat([x, torch.tensor(np.stack(disks), dtype=torch.float32)[:, None]])
    z = IntegratingEncoder(64, ndim=ndim)(x)
    assert z.shape == (len(x), 1)
    assert rel_err(z[:, 0], x.flatten(1).sum(1)) < 1e-4


@pytest.mark.parametrize("ndim", [1, 2])
def test_position_encoder_is_exact_for_every_position(ndim):
    n = 64
    enc = PositionEncoder(n, ndim=ndim)
    diracs = torch.eye(n**ndim).view(-1, 1, *(n,) * ndim)  # image k has its unit mass at flat index k
    z = enc(diracs)
    positions = torch.stack(torch.meshgrid(*[torch.arange(n)] * ndim, indexing="ij"), -1).view(-1, ndim)
    assert torch.equal(z[:, 0], torch.ones(n**ndim))  # mass s = 1
    assert torch.equal(z[:, 1:], positions / n)  # q = p / n exactly: affine (here linear) in p
    assert torch.equal(enc.position_from_code(z), positions.float())
    assert torch.equal(enc.effective_filter().view(-1, 1 + ndim), z)  # the ramp, from the gradient


def test_position_encoder_is_linear_on_nonnegative_inputs():
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    i, j = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    z = PositionEncoder(32, ndim=2)(x)
    img = x[:, 0]
    moments = torch.stack([img.sum((1, 2)), (img * i).sum((1, 2)) / 32, (img * j).sum((1, 2)) / 32], dim=1)
    assert rel_err(z, moments) < 1e-5


# --- the authors' released model -------------------------------------------------------------------------


def _official_path():
    pytest.importorskip("h5py", reason="h5py absent (pip install geoae[keras])")
    path = official_model_path()
    if path is None:
        pytest.skip("official weights shared/reference/official_disk_model/*.h5 not found")
    return path


def test_official_model_reconstructs_disks():
    model = load_official_model(_official_path())
    assert isinstance(model, Autoencoder) and model.config.arch == "keras63"
    radii = [0, 1, 2, 3, 5, 8, 12, 16, 20, 25, 28, 30]
    x = torch.tensor(np.stack([disk_image(r, 63, 31.0, sigma=0.5) for r in radii]), dtype=torch.float32)
    with torch.no_grad():
        z, x_hat = model(x[:, None])
    mse = ((x_hat[:, 0] - x) ** 2).mean(dim=(1, 2))
    assert mse.max() <= 4e-3, mse
    assert torch.all(z[1:, 0] > z[:-1, 0])  # z increases with the radius
    # README reference: z ≈ 0.049 (r=0), 0.066 (r=12), 0.139 (r=30)
    assert z[[0, 6, 11], 0].tolist() == pytest.approx([0.049, 0.066, 0.139], abs=2e-3)


def test_official_loader_errors(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py absent (pip install geoae[keras])")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_official_model(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        for i in range(1, 6):
            f[f"conv2d_{i}/conv2d_{i}/kernel:0"] = np.zeros((3, 3, 1, 1), np.float32)
            f[f"conv2d_{i}/conv2d_{i}/bias:0"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="shape"):
        load_official_model(bad)
