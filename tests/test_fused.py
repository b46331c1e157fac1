"""The fused C kernels (geoae.fused) against the torch modules: values, gradients, every regulariser,
thread-count independence, the trainer's backend choice and its fallbacks."""

import dataclasses

import pytest
import torch

from geoae import fused
from geoae import train as T
from geoae.data import DiskData
from geoae.models import ModelConfig, build_model

pytestmark = pytest.mark.skipif(not fused.available(), reason=f"no fused kernel: {fused.unavailable_reason()}")

CONFIGS = [
    ModelConfig(size=16),
    ModelConfig(size=16, bias=False, latent_dim=2),
    ModelConfig(size=8, upsample="nearest", output_activation="sigmoid"),
    ModelConfig(size=8, output_activation="identity", alpha=0.0),
    ModelConfig(size=32, channels=(3, 9, 4, 2)),  # 9 > one chunk of 8 output channels
    ModelConfig(arch="paper1d", size=32, latent_dim=3),
]
TOL = 1e-4  # relative; measured 1e-6 to 1e-5 (float32 sums in another order)


def perturbed(config: ModelConfig, seed: int = 0):
    """A model with non-zero biases, so that they are exercised."""
    model = build_model(config, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def batch_of(config: ModelConfig, n: int, seed: int = 0) -> torch.Tensor:
    shape = (n, 1, config.size) if config.ndim == 1 else (n, 1, config.size, config.size)
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.arch}-{c.size}-{c.latent_dim}-{c.output_activation}")
@pytest.mark.parametrize("batch", [3, 21])  # fewer images than lanes; a batch that is not a multiple of them
def test_encode_decode_values_and_gradients_equal_torch(config, batch):
    model = perturbed(config)
    engine = fused.FusedAutoencoder(model, threads=2)
    x = batch_of(config, batch)
    params = list(model.parameters())

    def loss(z, x_hat):  # uses both stages' outputs, so that dL/dz flows into the encoder from two sides
        return (x_hat - x).square().mean() + 0.3 * z.square().mean()

    z0 = model.encode(x)
    x0 = model.decode(z0)
    g0 = torch.autograd.grad(loss(z0, x0), params)
    z1 = engine.encode(x)
    x1 = engine.decode(z1)
    g1 = torch.autograd.grad(loss(z1, x1), params)
    assert z1.shape == z0.shape and x1.shape == x0.shape
    assert rel(z0, z1) < TOL and rel(x0, x1) < TOL
    for a, b in zip(g0, g1, strict=True):
        assert rel(a, b) < TOL


@pytest.mark.parametrize("config", CONFIGS[:2] + CONFIGS[-1:], ids=lambda c: f"{c.arch}-{c.latent_dim}")
@pytest.mark.parametrize("regulariser", T.REGULARISERS)
def test_fused_loss_equals_compute_loss_for_every_regulariser(config, regulariser):
    model = perturbed(config, seed=1)
    engine = fused.FusedAutoencoder(model, threads=2)
    x = batch_of(config, 19, seed=1)
    weight = {"locality": 1e-2}.get(regulariser, 0.5)
    params = list(model.parameters())
    ref = T.compute_loss(model, x, regulariser, weight)
    g0 = torch.autograd.grad(ref.total, params, allow_unused=True)
    out = T.compute_loss(model, x, regulariser, weight, engine)
    g1 = torch.autograd.grad(out.total, params)
    for name in ("total", "mse", "penalty"):
        assert getattr(out, name).item() == pytest.approx(getattr(ref, name).item(), rel=TOL, abs=1e-12)
    for a, b in zip(g0, g1, strict=True):
        if a is None:  # the contractive penalty does not depend on the decoder when it is alone
            continue
        assert rel(a, b) < TOL


def test_contractive_penalty_gradient_alone_equals_double_backward():
    # the penalty's gradient is small next to the MSE's: compare it on its own
    for config in CONFIGS[:2] + CONFIGS[-1:]:
        model = perturbed(config, seed=2)
        x = batch_of(config, 21, seed=2)
        enc = model.encoder_weights()
        g0 = torch.autograd.grad(T.contractive_penalty(model, x), enc)
        _, _, pen = fused.FusedAutoencoder(model).loss(x, contractive=True)
        assert pen.item() == pytest.approx(T.contractive_penalty(model, x).item(), rel=TOL)
        for a, b in zip(g0, torch.autograd.grad(pen, enc), strict=True):
            assert rel(a, b) < TOL


def test_results_do_not_depend_on_the_number_of_threads():
    config = CONFIGS[0]
    x = batch_of(config, 45)
    outs = []
    for threads in (1, 2, 3):
        model = perturbed(config)
        z, mse, pen = fused.FusedAutoencoder(model, threads=threads).loss(x, contractive=True)
        (mse + z.square().mean() + pen).backward()
        outs.append([z, mse, pen] + [p.grad for p in model.parameters()])
    for other in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], other, strict=True))


SMALL = T.TrainConfig(model=ModelConfig(size=16), data=DiskData(n=64, size=16), iterations=20, batch_size=16,
                      log_every=1, checkpoint_every=10)


def test_training_on_both_backends_gives_the_same_losses(monkeypatch):
    fast = T.train(SMALL)
    monkeypatch.setenv("GEOAE_BACKEND", "torch")
    slow = T.train(SMALL)
    assert fast.metrics["backend"] == "fused" and slow.metrics["backend"] == "torch"
    for a, b in zip(fast.history, slow.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=TOL)


def test_trained_weights_do_not_depend_on_kernel_threads():
    a, b = T.train(SMALL, threads=1), T.train(SMALL, threads=3)
    assert a.metrics["kernel_threads"] == 1 and b.metrics["kernel_threads"] == 3
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("config", [ModelConfig(arch="keras63", size=63), ModelConfig(size=16, coord=True),
                                    ModelConfig(size=16, encoder="position", latent_dim=3)])
def test_unsupported_models_fall_back_to_torch_or_refuse(config, monkeypatch):
    model = build_model(config)
    reason = fused.supports(model)
    assert reason
    with pytest.raises(ValueError, match="not supported"):
        fused.FusedAutoencoder(model)
    if config.arch == "keras63":
        return
    run = dataclasses.replace(SMALL, model=config, iterations=2)
    res = T.train(run)
    assert res.metrics["backend"] == "torch" and res.metrics["torch_backend_reason"] == reason
    monkeypatch.setenv("GEOAE_BACKEND", "fused")
    with pytest.raises(ValueError, match="GEOAE_BACKEND=fused cannot train this run"):
        T.train(run)


def test_bad_settings_are_refused_before_training(monkeypatch):
    monkeypatch.setenv("GEOAE_BACKEND", "gpu")
    with pytest.raises(ValueError, match="GEOAE_BACKEND must be one of"):
        T.train(SMALL)
    monkeypatch.setenv("GEOAE_BACKEND", "auto")
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        T.train(SMALL, threads=0)
    monkeypatch.setenv("GEOAE_THREADS", "two")
    with pytest.raises(ValueError, match="GEOAE_THREADS must be an integer >= 1"):
        T.train(SMALL)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        fused.FusedAutoencoder(build_model(ModelConfig(size=8)), threads=0)


def test_without_a_compiler_training_uses_torch(monkeypatch):
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_error", "no C compiler found (test)")
    assert not fused.available() and "no C compiler" in fused.unavailable_reason()
    res = T.train(dataclasses.replace(SMALL, iterations=2))
    assert res.metrics["backend"] == "torch" and "no C compiler" in res.metrics["torch_backend_reason"]


def test_kernel_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOAE_CACHE", str(tmp_path))
    flags = fused.CFLAGS
    path = fused._build(flags)
    assert path.parent == tmp_path and path.exists()
    stamp = path.stat().st_mtime_ns
    assert fused._build(flags) == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    monkeypatch.setattr(fused, "_compiler", lambda: "/bin/false")
    monkeypatch.setenv("GEOAE_CACHE", str(tmp_path / "other"))
    with pytest.raises(OSError, match="failed"):
        fused._build(flags)
    assert not any((tmp_path / "other").glob("*.so"))  # a failed build leaves nothing behind
