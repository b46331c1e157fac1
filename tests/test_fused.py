"""The fused C executor (geoae.fused) against the torch modules: losses and gradients for every model the
experiments train, every regulariser, independence of threads and kernel configuration, the C/Python
contract (ABI check, error codes), the verified kernel cache, and the trainer's executor choice."""

import contextlib
import copy
import dataclasses
import os
import stat

import pytest
import torch

from geoae import fused
from geoae import training as T
from geoae.data import DiracData, DiskData
from geoae.experiments import registry
from geoae.experiments.common import Context
from geoae.models import ModelConfig, build_model
from geoae.settings import read_settings
from geoae.spec import network_spec
from geoae.training.loop import flushed_subnormals

pytestmark = pytest.mark.skipif(not fused.available(), reason=f"no fused kernel: {fused.unavailable_reason()}")

TOL = 1e-4  # relative; measured 1e-7 to 1e-5 (float32 sums in another order)


DATA = {}  # ModelConfig -> the data config of an experiment that trains it


def experiment_models() -> list[ModelConfig]:
    """Every distinct ModelConfig that the experiments train at the quick and paper profiles (the first stage
    of each: later stages, such as D7's main runs after its λ search, use the same networks)."""
    found = {}
    for profile in ("quick", "paper"):
        for exp in registry.EXPERIMENTS:
            ctx = Context(profile=profile, seeds=(0,), out=None, runs=None)
            stages = exp.load().STAGES
            for c in (stages[0](ctx, {}) if stages else {}).values():
                c = getattr(c, "config", c)  # a run with a chosen initialisation carries its config
                found[c.model] = c.model
                DATA.setdefault(c.model, c.data)
    return list(found.values())


EXTRA = [  # beyond the experiments: every feature the kernel claims, and the authors' released architecture
    ModelConfig(arch="keras63", size=63),
    ModelConfig(size=8, upsample="nearest", output_activation="sigmoid"),
    ModelConfig(size=8, output_activation="identity", alpha=0.0, bias=False, latent_dim=2),
    ModelConfig(size=32, channels=(3, 9, 4, 2)),  # 9 > one chunk of 8 output channels
    ModelConfig(arch="paper1d", size=16, coord=True, upsample="nearest"),
]
MODELS = experiment_models() + EXTRA


def name(c: ModelConfig) -> str:
    extra = [k for k in ("coord",) if getattr(c, k)] + ([c.encoder] if c.encoder != "learned" else [])
    return "-".join([c.arch, str(c.size), f"d{c.latent_dim}", "b" if c.bias else "nb", c.upsample,
                     c.output_activation, *(f"w{max(c.channels)}" for _ in [0] if c.channels), *extra])


def perturbed(config: ModelConfig, seed: int = 0):
    """A model with non-zero biases (and perturbed weights), so that everything is exercised."""
    model = build_model(config, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def batch_of(config: ModelConfig, n: int, seed: int = 0) -> torch.Tensor:
    """n training images of the kind the model is trained on (its experiment's data; else disks in 2-D and
    Diracs in 1-D), drawn with replacement."""
    data = DATA.get(config) or (DiracData(size=config.size) if config.ndim == 1 else DiskData(n=n, size=config.size))
    images = data.make(n, seed=seed)[0] if isinstance(data, DiskData) else data.make(seed=seed)[0]
    return images[torch.randint(len(images), (n,), generator=torch.Generator().manual_seed(seed))]


@contextlib.contextmanager
def training_mode():
    """torch as the trainer runs it: one thread (the calling one), subnormal floats flushed to zero."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with flushed_subnormals():
            yield
    finally:
        torch.set_num_threads(threads)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))


def test_the_experiments_use_every_kind_of_network():
    features = set().union(*(network_spec(c).features() for c in experiment_models()))
    assert {"conv", "upconv:zeros", "coord", "frozen", "ndim:1", "ndim:2", "kernel:2"} <= features
    assert all(fused.supports(network_spec(c)) is None for c in MODELS)


@pytest.mark.parametrize("config", MODELS, ids=name)
@pytest.mark.parametrize("regulariser", ["none", "locality", "contractive"])
def test_losses_and_gradients_equal_torch(config, regulariser):
    model = perturbed(config, seed=1)
    ex = fused.FusedAutoencoder(model, threads=2)
    x = batch_of(config, 21, seed=1)  # 21: not a multiple of the lanes (8 or 16)
    weight = {"locality": 1e-2, "contractive": 0.5}.get(regulariser, 0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    # the reference in float64 (float32 sums of 10^5 terms differ by 1e-4), unless float32 and float64 torch
    # disagree themselves: pre-activations exactly 0 (one-hot inputs, no biases) fall on either side of a leaky
    # ReLU's kink by rounding, and the contractive penalty depends on those masks; float32 torch then decides
    # the kinks as the float32 kernel does
    # float32 torch in the floating-point mode of training (subnormals flushed, as the kernel does: blurred Diracs'
    # tails hold values of 1e-40, on which a bias-free network's kinks are decided)
    exact = copy.deepcopy(model).double()
    ref = T.compute_loss(exact, x.double(), regulariser, weight)
    with training_mode():
        single = T.compute_loss(model, x, regulariser, weight)
        if any(abs(getattr(single, k).item() - getattr(ref, k).item()) > TOL * abs(getattr(ref, k).item())
               for k in ("total", "mse", "penalty")):
            exact, ref = model, single
        g0 = torch.autograd.grad(ref.total, [p for p in exact.parameters() if p.requires_grad], allow_unused=True)
    out = T.compute_loss(model, x, regulariser, weight, ex)
    g1 = torch.autograd.grad(out.total, params, allow_unused=True)
    for key in ("total", "mse", "penalty"):
        assert getattr(out, key).item() == pytest.approx(getattr(ref, key).item(), rel=TOL, abs=1e-12)
    # per tensor, relative to its own largest entry, except for tensors whose gradient is 10^-6 of the largest
    # one (float32 cannot resolve them better than that fraction of the step's gradient scale)
    scale = max(float(a.abs().max()) for a in g0 if a is not None)
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert float((a - b).abs().max()) <= TOL * float(a.abs().max()) + 1e-6 * scale


STEPPED = MODELS  # every network, coordinate channels included


@pytest.mark.parametrize("config", STEPPED, ids=name)
@pytest.mark.parametrize("regulariser", ["none", "l2_all", "l2_encoder", "contractive", "locality"])
def test_one_call_step_equals_loss_then_backward_bit_for_bit(config, regulariser):
    # the training loop's one-call step (batch gathered by index in the kernel, forward and backward block by
    # block, gradients written to .grad) computes exactly what the autograd path computes, which
    # test_losses_and_gradients_equal_torch compares with float64 torch
    weight = {"none": 0.0, "contractive": 0.5, "locality": 1e-2}.get(regulariser, 1e-2)
    images = batch_of(config, 40, seed=2)
    index = torch.randint(len(images), (21,), generator=torch.Generator().manual_seed(3))
    a, b = perturbed(config, seed=2), perturbed(config, seed=2)
    ref = T.compute_loss(a, images[index], regulariser, weight, fused.FusedAutoencoder(a, threads=2))
    ref.total.backward()
    ex = fused.FusedAutoencoder(b, threads=2)
    assert ex.one_call() is None
    for _ in range(2):  # the second step reuses the buffers and the .grad views of the first
        out = T.fused_step(b, images, index, regulariser, weight, ex)
    for key in ("total", "mse", "penalty", "z"):
        assert torch.equal(getattr(out, key), getattr(ref, key).detach()), key
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None)
        assert p.grad is None or torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("threads", [1, 2])
def test_locality_step_on_integer_images_reads_the_sets_distances_bit_for_bit(threads):
    from geoae.training.objectives import exact_distances

    # binary images: the training loop hands fused_step the set's exact distances (a selection per step, no
    # product over the pixels); the codes come from geoae_ae_encode, then the step runs with their gradient
    config = ModelConfig(size=16)
    gen = torch.Generator().manual_seed(4)
    images = (torch.rand(50, 1, 16, 16, generator=gen) > 0.6).float()
    index = torch.randint(len(images), (37,), generator=gen)
    dist = exact_distances(images)
    assert dist is not None
    a, b = perturbed(config, seed=4), perturbed(config, seed=4)
    ref = T.compute_loss(a, images[index], "locality", 1e-2)  # the torch path
    ref.total.backward()
    out = T.fused_step(b, images, index, "locality", 1e-2, fused.FusedAutoencoder(b, threads=threads), dist)
    assert out.total.item() == pytest.approx(ref.total.item(), rel=TOL)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert float((p.grad - q.grad).abs().max()) <= TOL * float(p.grad.abs().max()) + 1e-7
    # bit for bit what the batch's own Gram matrix gives, on any thread count
    again = perturbed(config, seed=4)
    same = T.fused_step(again, images, index, "locality", 1e-2, fused.FusedAutoencoder(again, threads=3 - threads))
    for key in ("total", "mse", "penalty", "z"):
        assert torch.equal(getattr(out, key), getattr(same, key)), key
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(again.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("integer_batch", [True, False])
def test_locality_step_with_the_sets_integer_rows_equals_testing_each_batch(integer_batch):
    from geoae.training.objectives import _integer_rows, integer_rows

    # a set mixing binary images, images in k/255 and one negative image: the per-image flags, selected, answer
    # what testing the batch answers, and the step gives the same numbers bit for bit either way
    config = ModelConfig(size=16)
    gen = torch.Generator().manual_seed(5)
    binary = (torch.rand(30, 1, 16, 16, generator=gen) > 0.5).float()
    levels = torch.floor(255 * torch.rand(20, 1, 16, 16, generator=gen)) / 255
    images = torch.cat([binary, levels, -binary[:1]])
    flags = integer_rows(images)
    assert flags.tolist() == [True] * 30 + [False] * 21
    index = (torch.randint(30, (12,), generator=gen) if integer_batch
             else torch.randint(len(images), (12,), generator=gen))
    assert bool(flags[index].all()) == _integer_rows(images[index].flatten(1), 2.0**24) == integer_batch
    a, b = perturbed(config, seed=5), perturbed(config, seed=5)
    tested = T.fused_step(a, images, index, "locality", 1e-2, fused.FusedAutoencoder(a, threads=1))
    told = T.fused_step(b, images, index, "locality", 1e-2, fused.FusedAutoencoder(b, threads=1), None, flags)
    for key in ("total", "mse", "penalty", "z"):
        assert torch.equal(getattr(tested, key), getattr(told, key)), key
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_one_call_step_follows_parameters_whose_storage_moved():
    # step keeps its pointers to the parameters while their storage stays put; a parameter given new storage
    # (param.data = ..., as some user code does) must be followed, not read where it was
    model, ref = build_model(ModelConfig(size=16), seed=0), build_model(ModelConfig(size=16), seed=0)
    ex = fused.FusedAutoencoder(model, threads=1)
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ex.step(x)
    with torch.no_grad():
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            p.data = p.data * 0.5 + 0.01
            q.mul_(0.5).add_(0.01)
    out = ex.step(x)
    z, mse, _ = fused.FusedAutoencoder(ref, threads=1).loss(x)
    mse.backward()
    assert torch.equal(out.mse, mse.detach()) and torch.equal(out.z, z.detach())
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(model.parameters(), ref.parameters(), strict=True))


def test_one_call_step_refuses_bad_batches():
    model = build_model(ModelConfig(size=16), seed=0)
    ex = fused.FusedAutoencoder(model, threads=1)
    images = torch.rand(10, 1, 16, 16)
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 10\), got \[0, 10\]"):
        ex.step(images, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 10\), got \[-1, 3\]"):
        ex.step(images, torch.tensor([3, -1]), code_loss=lambda z: z.square().sum())  # the codes' call refuses it
    with pytest.raises(TypeError, match="index must be a 1-D int64 tensor"):
        ex.step(images, torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"images of shape \(B, 1, 16, 16\)"):
        ex.step(torch.rand(10, 1, 8, 8))
    with pytest.raises(ValueError, match="a code_loss or a contractive_weight, not both"):
        ex.step(images, contractive_weight=0.1, code_loss=lambda z: z.sum())


@pytest.mark.parametrize("config", [c for c in MODELS if c.encoder == "learned"][:4], ids=name)
def test_code_and_contractive_gradient_alone_equal_torch(config):
    # dL/dz from outside (as locality adds) and the penalty's own gradient, small next to the MSE's
    model = perturbed(config, seed=2)
    x = batch_of(config, 19, seed=2)
    enc = model.encoder_weights()
    z0 = model.encode(x)
    g0 = torch.autograd.grad(z0.square().sum() + T.contractive_penalty(model, x), enc)
    z1, _, pen = fused.FusedAutoencoder(model).loss(x, contractive=True)
    assert rel(z0, z1) < TOL
    for a, b in zip(g0, torch.autograd.grad(z1.square().sum() + pen, enc), strict=True):
        assert rel(a, b) < TOL


def test_frozen_encoder_gets_no_gradient_and_is_not_optimised():
    config = ModelConfig(arch="paper1d", size=32, encoder="position", latent_dim=2)
    res = T.train(T.TrainConfig(model=config, data=DiracData(size=32), iterations=5,
                                batch_size=8))
    assert res.metrics["backend"] == "fused"
    fresh = build_model(config)
    for a, b in zip(fresh.encoder_weights(), res.model.encoder_weights(), strict=True):
        assert torch.equal(a, b) and not b.requires_grad


def test_results_do_not_depend_on_the_number_of_threads():
    config = MODELS[0]
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


def test_trained_weights_do_not_depend_on_kernel_threads():
    a, b = T.train(SMALL, threads=1), T.train(SMALL, threads=3)
    assert a.metrics["kernel_threads"] == 1 and b.metrics["kernel_threads"] == 3
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_every_kernel_configuration_gives_identical_results(monkeypatch):
    # lanes 8 and 16 (a CPU without the preferred width builds and runs the other) and both blockings: the
    # choice made by the autotuning never changes a number, losses included
    runs = {}
    for lanes, wg in fused.CANDIDATES:
        monkeypatch.setenv("GEOAE_KERNEL", f"lanes={lanes},wg={wg}")
        res = T.train(dataclasses.replace(SMALL, regulariser="contractive", reg_weight=0.1), threads=2)
        assert (res.metrics["executor"]["lanes"], res.metrics["executor"]["wg_accumulators"]) == (lanes, wg)
        runs[(lanes, wg)] = res
    first = next(iter(runs.values()))
    for res in runs.values():
        assert res.history == first.history
        assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                     res.model.state_dict().values(), strict=True))


def test_training_on_both_executors_gives_the_same_losses(monkeypatch):
    fast = T.train(SMALL)
    monkeypatch.setenv("GEOAE_BACKEND", "torch")
    slow = T.train(SMALL)
    assert fast.metrics["backend"] == "fused" and slow.metrics["backend"] == "torch"
    for a, b in zip(fast.history, slow.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=TOL)


def test_unsupported_features_fall_back_to_torch_or_refuse(monkeypatch, capsys):
    spec = network_spec(ModelConfig(size=16))
    odd = dataclasses.replace(spec, layers=(dataclasses.replace(spec.layers[0], activation="tanh"), *spec.layers[1:]))
    assert "act:tanh" in fused.supports(odd)
    monkeypatch.setattr(fused, "supports", lambda s: "features act:tanh (test)")
    res = T.train(dataclasses.replace(SMALL, iterations=2))
    assert res.metrics["backend"] == "torch" and "act:tanh" in res.metrics["torch_backend_reason"]
    assert "training on the torch path" in capsys.readouterr().err  # announced, not only recorded
    monkeypatch.setenv("GEOAE_BACKEND", "fused")
    with pytest.raises(ValueError, match="GEOAE_BACKEND=fused cannot train this run"):
        T.train(SMALL)


def test_without_a_compiler_training_uses_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fused.build, "_compiler", lambda: None)
    assert not fused.available() and "no C compiler" in fused.unavailable_reason()
    res = T.train(dataclasses.replace(SMALL, iterations=2))
    assert res.metrics["backend"] == "torch" and "no C compiler" in res.metrics["torch_backend_reason"]


def test_bad_settings_are_refused_before_training(monkeypatch):
    for var, value in (("GEOAE_BACKEND", "gpu"), ("GEOAE_THREADS", "two"), ("GEOAE_THREADS", "0"),
                       ("GEOAE_KERNEL", "lanes=12,wg=8"), ("GEOAE_MARCH", "native; rm")):
        monkeypatch.setenv(var, value)
        with pytest.raises(ValueError, match=var):
            T.train(SMALL)
        monkeypatch.delenv(var)
    with pytest.raises(ValueError, match="threads must be an integer"):
        T.train(SMALL, threads=0)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        fused.FusedAutoencoder(build_model(ModelConfig(size=8)), threads=0)


# ----------------------------------------------------------------------- the library and its cache


@pytest.fixture(scope="module")
def generic_build(tmp_path_factory):
    """One portable build (no -march: what an unknown CPU or another architecture gets), made once."""
    cache = tmp_path_factory.mktemp("cache")
    flags = fused.flags_for(16, 8, "")
    return flags, fused.build._build(flags, cache)


def copy_of(build, tmp_path):
    """The built library, its checksum and its mark of having been tried, copied into a cache of this test's
    own."""
    flags, path = build
    for f in (path, path.with_suffix(".sha256"), path.with_suffix(".tried")):
        (tmp_path / f.name).write_bytes(f.read_bytes())
        os.chmod(tmp_path / f.name, 0o755 if f == path else 0o644)
    return flags, tmp_path / path.name


def test_generic_build_loads(generic_build):
    lib = fused.build._open(generic_build[1])
    assert lib.geoae_lanes() == 16 and lib.geoae_wg_accumulators() == 8 and lib.geoae_chunk() == 8


def test_kernel_is_built_once_into_the_cache_and_verified(tmp_path, generic_build):
    flags, path = copy_of(generic_build, tmp_path)
    assert fused.build._verified(path)
    stamp = path.stat().st_mtime_ns
    assert fused.build._build(flags, tmp_path) == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    path.write_bytes(path.read_bytes()[:1000])  # truncated (would kill the process if loaded: SIGBUS)
    assert not fused.build._verified(path)
    assert fused.build._build(flags, tmp_path) == path and fused.build._verified(path)  # rebuilt
    fused.build._open(path)


def test_a_library_writable_by_others_is_not_trusted(tmp_path, generic_build):
    flags, path = copy_of(generic_build, tmp_path)
    os.chmod(path, path.stat().st_mode | stat.S_IWOTH)
    assert not fused.build._verified(path)
    os.chmod(tmp_path, 0o777)
    with pytest.raises(OSError, match="writable by other users"):
        fused.build._build(flags, tmp_path)


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(fused.build, "_compiler", lambda: ["/bin/false"])
    with pytest.raises(OSError, match="failed"):
        fused.build._build(fused.flags_for(8, 16, ""), tmp_path)
    assert not list(tmp_path.glob("*.so*"))


def test_the_abi_check_refuses_a_mismatched_library(tmp_path):
    # refused when tried in the child process, before it is cached (and by _open, had it been cached)
    with pytest.raises(OSError, match="ABI 99"):
        fused.build._open(fused.build._build((*fused.flags_for(8, 8, ""), "-O0", "-DGEOAE_ABI_VERSION=99"), tmp_path))
    assert not list(tmp_path.glob("*.so"))


def test_the_kernel_refuses_bad_layers_with_an_error_code():
    model = build_model(ModelConfig(size=16))
    ex = fused.FusedAutoencoder(model)
    ex.encoder.layers[1].kh = 40  # beyond the taps limit
    with pytest.raises(fused.KernelError, match="error 2"):
        ex.loss(batch_of(ModelConfig(size=16), 4))
    ex.encoder.layers[1].kh = 3
    ex.encoder.layers[2].cin = 5  # does not fit the previous layer
    with pytest.raises(fused.KernelError, match="error 3"):
        ex.loss(batch_of(ModelConfig(size=16), 4))


def test_cc_with_flags_is_honoured(monkeypatch):
    monkeypatch.setenv("CC", "cc -O1")
    assert fused.build._compiler()[1:] == ["-O1"]


def test_tuning_reports_its_measurements(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOAE_CACHE", str(tmp_path))
    monkeypatch.setattr(fused.build, "CANDIDATES", ((8, 8), (8, 16)))
    k = fused.build._make_kernel(read_settings())
    assert k.choice == "measured" and set(k.timings) == {"lanes=8,wg=8", "lanes=8,wg=16"}
    again = fused.build._make_kernel(read_settings())
    assert again.choice == "cached measurement" and (again.lanes, again.wg) == (k.lanes, k.wg)


def test_subnormals_are_flushed_and_the_callers_mode_restored():
    # the kernels read subnormal floats as 0 (a collapsing network's subnormals cost ~100x on x86), and leave
    # the calling thread's floating-point mode as they found it
    from geoae.training.loop import _flushing

    config = ModelConfig(size=16, bias=False)
    ex = fused.FusedAutoencoder(perturbed(config), threads=1)
    zeros = torch.zeros(3, 1, 16, 16)
    tiny = torch.full_like(zeros, 1e-39)
    assert tiny.min().item() > 0  # a subnormal float32, not 0
    before = _flushing()
    z0, mse0, _ = ex.loss(zeros)
    z1, mse1, _ = ex.loss(tiny)
    assert _flushing() == before
    assert torch.equal(z0, z1) and mse0.item() == mse1.item()
    with flushed_subnormals():
        assert _flushing()
    assert _flushing() == before
