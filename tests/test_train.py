"""The trainer: smoke run, determinism, resume equivalence, divergence, checkpoints, the regularisers,
and (slow) the paper's central claim: a bias-free network trained on disks reaches the theory's optimum."""

import dataclasses
import json
import platform

import numpy as np
import pytest
import torch

import geoae
from geoae import fused
from geoae import training as T
from geoae.data import DiracData, DiskData, make_disks
from geoae.models import ModelConfig, build_model

SMALL = T.TrainConfig(
    model=ModelConfig(size=16), data=DiskData(n=64, size=16), iterations=12, batch_size=8,
    log_every=2, checkpoint_every=5,
)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_step_smoke(tmp_path):
    cfg = dataclasses.replace(SMALL, iterations=1)
    res = T.train(cfg, tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "history.jsonl", "metrics.json", "model.safetensors"} <= files
    assert "checkpoint.safetensors" not in files  # removed once the run is finished
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    assert T.TrainConfig.from_dict(rec["config"]) == cfg
    assert rec["geoae_version"] == geoae.__version__ and rec["torch"] == torch.__version__
    assert rec["git_commit"] is None or len(rec["git_commit"]) >= 40  # geoae's own checkout, or null
    assert rec["host"] == platform.node()  # which node of a cluster trained it
    assert rec["executor"]["name"] in ("fused", "torch") and "settings" in rec["executor"]
    assert len(res.history) == 1 and np.isfinite(res.metrics["train_mse"])


def test_training_reduces_the_loss():
    res = T.train(dataclasses.replace(SMALL, iterations=150, log_every=10))
    first, last = res.history[0]["mse"], res.history[-1]["mse"]
    assert last < 0.7 * first


def test_same_seed_same_weights_other_seed_other_weights():
    a, b = T.train(SMALL).model, T.train(SMALL).model
    c = T.train(dataclasses.replace(SMALL, seed=1)).model
    assert same_weights(weights(a), weights(b))
    assert not same_weights(weights(a), weights(c))


@pytest.mark.parametrize("fresh", [False, True])
def test_killed_run_resumes_to_identical_weights(tmp_path, monkeypatch, fresh):
    cfg = dataclasses.replace(SMALL, data=dataclasses.replace(SMALL.data, fresh=fresh))
    reference = weights(T.train(cfg).model)
    original, calls = T.BatchSource.draw, {"n": 0}

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == 8:  # killed after the checkpoint of iteration 5, before the one of 10
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(T.BatchSource, "draw", dying_next)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(T.BatchSource, "draw", original)
    resumed = T.train(cfg, tmp_path / "run")
    assert same_weights(reference, weights(resumed.model))
    assert [h["iteration"] for h in resumed.history] == list(range(2, 13, 2))


def test_finished_run_is_loaded_not_retrained(tmp_path, monkeypatch):
    first = T.train(SMALL, tmp_path / "run")
    monkeypatch.setattr(T.BatchSource, "draw", lambda self: pytest.fail("retrained a finished run"))
    again = T.train(SMALL, tmp_path / "run")
    assert same_weights(weights(first.model), weights(again.model))
    assert again.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    original, calls = T.BatchSource.draw, {"n": 0}

    def poisoned(self):
        calls["n"] += 1
        images, index = original(self)
        return (images * float("nan"), index) if calls["n"] == 7 else (images, index)

    monkeypatch.setattr(T.BatchSource, "draw", poisoned)
    with pytest.raises(T.TrainingDiverged, match=r"iteration 7 .*lower learning rate.*checkpoint"):
        T.train(SMALL, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()  # the good one, iteration 5, kept
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(T.BatchSource, "draw", original)
    assert same_weights(weights(T.train(SMALL, tmp_path / "run").model), weights(T.train(SMALL).model))


def _interrupted_run(tmp_path, monkeypatch, cfg=SMALL):
    original, calls = T.BatchSource.draw, {"n": 0}

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(T.BatchSource, "draw", dying)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, tmp_path / "run")
    monkeypatch.setattr(T.BatchSource, "draw", original)
    return tmp_path / "run" / "checkpoint.safetensors"


def test_corrupted_checkpoint_is_refused(tmp_path, monkeypatch):
    ckpt = _interrupted_run(tmp_path, monkeypatch)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(T.CheckpointError, match="corrupted"):
        T.train(SMALL, tmp_path / "run")


def test_checkpoint_of_another_config_is_refused(tmp_path, monkeypatch):
    _interrupted_run(tmp_path, monkeypatch)
    other = dataclasses.replace(SMALL, lr=2e-3)
    with pytest.raises(T.CheckpointError, match="another configuration"):
        T.train(other, tmp_path / "run")


def test_resume_leaves_no_temporary_files_and_records_where_it_resumed(tmp_path, monkeypatch):
    ckpt = _interrupted_run(tmp_path, monkeypatch)
    stale = ckpt.parent / f".{ckpt.name}.k1ll3d.tmp"  # what a process killed mid-write leaves
    stale.write_bytes(b"half a checkpoint")
    resumed = T.train(SMALL, tmp_path / "run")
    assert not stale.exists() and not list(ckpt.parent.glob("*.tmp"))
    assert resumed.metrics["resumed_from"] == 5 and T.train(SMALL).metrics["resumed_from"] == 0


@pytest.mark.skipif(not fused.available(), reason="the fused kernel is unavailable here (no C compiler)")
@pytest.mark.parametrize("recorded, refused", [("fused-0000000000000000.so", True), (None, False)])
def test_resuming_on_another_kernel_build_is_refused(tmp_path, monkeypatch, recorded, refused):
    # the library name hashes source, flags, compiler and CPU: a checkpoint of another build (e.g. another
    # CPU kind with -march=native) is refused; one of a geoae that did not record the library is compared
    # on what it recorded
    from geoae.training.rundir import load_tensors, save_tensors

    ckpt = _interrupted_run(tmp_path, monkeypatch)
    tensors, metadata = load_tensors(ckpt)
    executor = json.loads(metadata["executor"])
    assert executor["name"] == "fused" and executor["library"].startswith("fused-")
    if recorded is None:
        del executor["library"]
    else:
        executor["library"] = recorded
    save_tensors(ckpt, tensors, {k: v for k, v in metadata.items() if k != "sha256"} | {
        "executor": json.dumps(executor)})
    if refused:
        with pytest.raises(T.CheckpointError, match="same kind of machine"):
            T.train(SMALL, tmp_path / "run")
    else:
        assert same_weights(weights(T.train(SMALL, tmp_path / "run").model), weights(T.train(SMALL).model))


def test_checkpoints_hold_no_pickle(tmp_path, monkeypatch):
    ckpt = _interrupted_run(tmp_path, monkeypatch)
    header_len = int.from_bytes(ckpt.read_bytes()[:8], "little")
    header = json.loads(ckpt.read_bytes()[8:8 + header_len])  # a safetensors file: JSON header + raw data
    assert header["__metadata__"]["format"] == T.CHECKPOINT_FORMAT
    assert any(k.startswith("adam.") for k in header) and "rng.batches" in header


# ------------------------------------------------------------------------------------- regularisers


@pytest.fixture(scope="module")
def batch():
    x, _ = make_disks(8, size=16, seed=3)
    return x


def test_weight_penalties_are_sums_of_squared_kernels(batch):
    model = build_model(ModelConfig(size=16), seed=0).requires_grad_(False)
    enc = sum(float(m.weight.square().sum()) for m in model.conv_layers()[: len(model.encoder_weights())])
    l2_enc = T.compute_loss(model, batch, "l2_encoder", 1.0).penalty
    l2_all = T.compute_loss(model, batch, "l2_all", 1.0).penalty
    total = sum(float(w.square().sum()) for w in model.encoder_weights() + model.decoder_weights())
    assert float(l2_enc) == pytest.approx(enc, rel=1e-5)
    assert float(l2_all) == pytest.approx(total, rel=1e-5) and float(l2_all) > float(l2_enc)


def test_contractive_penalty_matches_finite_differences(batch):
    model = build_model(ModelConfig(size=16), seed=0).double()
    # generic inputs: on the disks' zero background every pre-activation sits exactly at the leaky ReLU's kink
    x = batch[:2].double() + 0.1 * torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    pen = T.contractive_penalty(model, x).item()
    eps, grads = 1e-6, torch.zeros_like(x)
    flat = x.flatten()
    for i in range(0, flat.numel(), 7):  # a sample of coordinates; the rest by autograd symmetry is costly
        e = torch.zeros_like(flat)
        e[i] = eps
        grads.view(-1)[i] = ((model.encode((flat + e).view_as(x)) - model.encode((flat - e).view_as(x))).sum()
                             / (2 * eps))
    xg = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.encode(xg).sum(), xg)
    sampled = g.flatten()[::7]
    assert torch.allclose(sampled, grads.flatten()[::7], atol=1e-6)
    assert pen == pytest.approx(float(g.square().mean()), rel=1e-9)


@pytest.mark.parametrize("kind", ["binary", "counts", "grey", "signed"])
def test_the_neighbours_gram_matrix_is_the_float64_product_bit_for_bit(kind):
    from geoae.training.objectives import _gram

    gen = torch.Generator().manual_seed(0)
    flat = {"binary": lambda: (torch.rand(40, 4096, generator=gen) > 0.5).float(),
            "counts": lambda: torch.randint(0, 9, (40, 300), generator=gen).float(),
            "grey": lambda: (torch.rand(40, 4096, generator=gen) * 255).floor() / 255,
            "signed": lambda: torch.randint(-3, 4, (40, 300), generator=gen).float()}[kind]()
    wide = flat.double()
    assert torch.equal(_gram(flat), wide @ wide.T)


@pytest.mark.parametrize("kind", ["binary", "counts"])
def test_a_selection_of_the_sets_exact_distances_gives_the_locality_penalty_bit_for_bit(kind):
    from geoae.training.objectives import exact_distances

    gen = torch.Generator().manual_seed(1)
    images = {"binary": lambda: (torch.rand(60, 1, 32, 32, generator=gen) > 0.7).float(),
              "counts": lambda: torch.randint(0, 5, (60, 1, 20), generator=gen).float()}[kind]()
    images[7] = images[3]  # duplicates: neighbours at distance 0, ties broken alike
    index = torch.randint(60, (33,), generator=gen)
    index[5] = index[9]  # one image twice in the batch: distance 0 off the diagonal
    full = exact_distances(images)
    assert full is not None
    x, z = images[index], torch.randn(33, 2, generator=gen)
    selected = full[index[:, None], index[None, :]]
    kept = selected.clone()
    assert torch.equal(T.locality_penalty(None, z, selected), T.locality_penalty(x, z))
    assert torch.equal(selected, kept)  # not modified
    flat = images.flatten(1).double()
    assert torch.equal(full.double(), torch.cdist(flat, flat).square().round())  # the exact integers


def test_exact_distances_decline_where_they_would_not_be_exact():
    from geoae.training.objectives import MAX_GRAM_IMAGES, exact_distances

    assert exact_distances(torch.rand(10, 1, 8, 8)) is None  # grey levels
    assert exact_distances(-torch.ones(10, 1, 8)) is None  # negative
    assert exact_distances(torch.full((3, 1, 4), 2048.0)) is None  # ‖x‖² = 2²⁴ > 2²³
    assert exact_distances(torch.ones(MAX_GRAM_IMAGES + 1, 1, 4)) is None  # too many images to hold
    assert exact_distances(torch.ones(MAX_GRAM_IMAGES, 1, 4)) is not None


def test_locality_penalty_uses_the_nearest_neighbour():
    x = torch.zeros(3, 1, 2, 2)
    x[1] += 1.0
    x[2] += 1.1  # nearest neighbour of 1 is 2 and of 2 is 1; of 0 is 1
    z = torch.tensor([[0.0], [2.0], [2.0]])
    dx = torch.tensor([4.0, 0.04, 0.04])
    dz = torch.tensor([4.0, 0.0, 0.0])
    assert float(T.locality_penalty(x, z)) == pytest.approx(float((dx - dz).square().mean()), rel=1e-5)


@pytest.mark.parametrize("reg", [r for r in T.REGULARISERS if r != "none"])
def test_each_regulariser_trains(reg):
    res = T.train(dataclasses.replace(SMALL, iterations=3, regulariser=reg, reg_weight=1e-3))
    assert all(np.isfinite(h["loss"]) and h["penalty"] > 0 for h in res.history)


def test_dirac_training_1d():
    cfg = T.TrainConfig(model=ModelConfig(arch="paper1d", size=16, latent_dim=1),
                        data=DiracData(size=16, ndim=1), iterations=3, batch_size=4, log_every=1)
    assert len(T.train(cfg).history) == 3


# -------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"regulariser": "dropout"}, "regulariser must be one of none, locality"),
        ({"lr": -1.0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"iterations": 0}, "iterations must be an integer from 1 to"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"reg_weight": -0.1}, "reg_weight must be"),
        ({"model": ModelConfig(arch="paper1d", size=16)}, "does not fit the data"),
        ({"model": ModelConfig(size=32)}, "differs from data.size"),
    ],
)
def test_bad_config_is_rejected_before_any_work(change, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        T.train(dataclasses.replace(SMALL, **change), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_config_json_round_trip_and_unknown_keys():
    cfg = dataclasses.replace(SMALL, data=DiskData(n=10, size=16, exclude=((3, 4),)), regulariser="l2_all")
    assert T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig key"):
        T.TrainConfig.from_dict(cfg.to_dict() | {"learning_rate": 1})
    with pytest.raises(ValueError, match="data.kind"):
        T.TrainConfig.from_dict(cfg.to_dict() | {"data": {"kind": "squares"}})


# the central claim (bias-free loss at the discrete optimum, Airy profile, biases 5x better) is tested
# in tests/test_central_claim.py, in the default run


@pytest.mark.parametrize("backend, small_macs, in_process", [("auto", 0, 0), ("torch", 0, 4), ("auto", None, 4)])
def test_train_many_in_workers_equals_sequential_and_skips_finished(tmp_path, monkeypatch, backend, small_macs,
                                                                    in_process):
    # fused-kernel runs train in the worker threads, torch-path runs in processes; every model of the experiments
    # is fused; networks under SMALL_MACS (these 16 x 16 ones, by default) go to processes: their steps are
    # mostly Python
    from geoae.training import schedule

    monkeypatch.setenv("GEOAE_BACKEND", backend)
    if small_macs is not None:
        monkeypatch.setattr(schedule, "SMALL_MACS", small_macs)
    coord = dataclasses.replace(SMALL, model=ModelConfig(size=16, coord=True))
    cfgs = [dataclasses.replace(SMALL, seed=s) for s in (0, 1)] + [dataclasses.replace(coord, seed=s) for s in (0, 1)]
    used = []
    original = schedule._in_workers

    def spy(cs, root, workers, progress, names):
        used.append((len(cs), len(names)))
        return original(cs, root, workers, progress, names)

    monkeypatch.setattr(schedule, "_in_workers", spy)
    parallel = T.train_many(cfgs + cfgs[:1], tmp_path / "par", workers=2)  # a duplicate is trained once
    if backend == "torch" or fused.available():
        assert used == [(4, in_process)]
    sequential = T.train_many(cfgs, tmp_path / "seq", workers=1)
    assert len(parallel) == 5 and parallel[0].config == parallel[4].config
    for a, b in zip(parallel, sequential, strict=False):
        assert same_weights(weights(a.model), weights(b.model))
    monkeypatch.setattr(T.BatchSource, "draw", lambda self: pytest.fail("retrained a finished run"))
    again = T.train_many(cfgs, tmp_path / "par", workers=2)
    assert same_weights(weights(again[1].model), weights(parallel[1].model))


def test_workers_from_environment(monkeypatch):
    monkeypatch.setenv("GEOAE_WORKERS", "3")
    assert T.default_workers() == 3
    monkeypatch.setenv("GEOAE_WORKERS", "zero")
    with pytest.raises(ValueError, match="GEOAE_WORKERS"):
        T.default_workers()


# ------------------------------------------------------------------------------------ composed configs


def test_a_partial_dict_merges_over_the_defaults_and_leaves_its_inputs_alone():
    from geoae.training.config import merge_partial

    base = T.TrainConfig().to_dict()
    before = json.dumps(base, sort_keys=True)
    partial = {"data": {"rendering": "binary"}}
    config = T.TrainConfig.from_partial(base, partial, {"model": {"alpha": 0.05}}, {"lr": 0.01})
    assert config.data.rendering == "binary" and config.data.n == T.TrainConfig().data.n
    assert config.model.alpha == 0.05 and config.lr == 0.01 and config.model.arch == "paper64"
    assert json.dumps(base, sort_keys=True) == before and partial == {"data": {"rendering": "binary"}}
    assert merge_partial(base) == base and merge_partial(base) is not base
    later = T.TrainConfig.from_partial(base, {"seed": 1, "data": {"n": 10}}, {"seed": 2})
    assert later.seed == 2 and later.data.n == 10  # later overrides win, key by key


@pytest.mark.parametrize(("partial", "size"), [({"model": {"arch": "keras63"}}, 63),
                                               ({"model": {"arch": "keras63", "size": 63}}, 63),
                                               ({"model": {"size": 32}}, 32), ({"data": {"size": 16}}, 16)])
def test_the_arch_implies_its_size_and_the_two_sizes_move_together(partial, size):
    config = T.TrainConfig.from_partial(T.TrainConfig().to_dict(), partial)
    assert config.model.size == config.data.size == size


def test_the_arch_does_not_override_a_size_given_later_or_kept_by_the_base():
    keras = T.TrainConfig.from_partial(T.TrainConfig().to_dict(), {"model": {"arch": "keras63"}}).to_dict()
    assert T.TrainConfig.from_partial(keras, {"lr": 0.1}).model.size == 63  # the base's arch: its size kept
    back = T.TrainConfig.from_partial(keras, {"model": {"arch": "paper64", "size": 32}})
    assert back.model.size == back.data.size == 32


def test_a_new_data_kind_starts_from_its_own_defaults():
    base = T.TrainConfig.from_partial(T.TrainConfig().to_dict(), {"data": {"rendering": "binary", "n": 7}}).to_dict()
    diracs = T.TrainConfig.from_partial(base, {"model": {"arch": "paper1d", "size": 32}, "data": {"kind": "diracs",
                                                                                               "scheme": "hole"}})
    assert isinstance(diracs.data, DiracData) and diracs.data.n is None and diracs.data.ndim == 1
    assert diracs.data.scheme == "hole" and diracs.data.size == 32
    disks = T.TrainConfig.from_partial(diracs.to_dict(), {"model": {"arch": "paper64"}, "data": {"kind": "disks"}})
    assert isinstance(disks.data, DiskData) and disks.data.n == T.TrainConfig().data.n and disks.model.size == 64
    assert disks.data.rendering == "area"  # the base's binary rendering belonged to its disks, long gone


@pytest.mark.parametrize(("overrides", "key", "source"), [
    (({"data": {"rendering": "blurry"}}, {"lr": 0.1}), "data.rendering", "a.toml"),
    (({"data": {"rendering": "binary"}}, {"lr": -1}), "lr", "--set lr=-1"),
    (({"model": {"bogus": 1}}, {}), "model.bogus", "a.toml"),
    (({"data": 5}, {}), "data", "a.toml"),
])
def test_a_bad_value_names_its_key_and_the_override_that_set_it(overrides, key, source):
    from geoae.training.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        T.TrainConfig.from_partial(T.TrainConfig().to_dict(), *overrides, sources=["a.toml", "--set lr=-1"])
    assert exc.value.key == key and exc.value.source == source and str(exc.value).startswith(f"{source}: {key}")


@pytest.mark.parametrize("in_c", [False, True], ids=["torch", "kernel-library"])
@pytest.mark.parametrize("betas, eps, weight_decay", [((0.9, 0.999), 1e-8, 0.0), ((0.8, 0.99), 3e-7, 0.0),
                                                      ((0.5, 0.9), 1e-3, 1e-2)])
def test_adam_step_is_optimizer_step_bit_for_bit(betas, eps, weight_decay, in_c):
    from geoae import fused
    from geoae.training.optim import AdamStep, c_adam_width

    # with the kernel library, the update runs in C (geoae_adam) where it applies: the first two settings, on one
    # torch thread (the training loop's); the third (1 - β₁ = 0.5, weight decay) is torch's even then
    kernel = fused.kernel() if in_c else None
    if in_c and (kernel is None or c_adam_width(kernel) is None):
        pytest.skip("no kernel library, or its C update differs from this torch's (then torch's is used)")
    models = [build_model(ModelConfig(size=16, channels=(3, 5, 7)), seed=0) for _ in range(2)]  # 1 to 315 entries
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)
            for m in models]
    direct = AdamStep(opts[1], kernel)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _steps_compared(models, opts, direct, eps)
    finally:
        torch.set_num_threads(threads)
    # the C update ran where it applies: the 4 steps after the first (which creates the state), not after a
    # parameter was skipped (its counter lags: torch's update handles counters that differ)
    assert direct.c_steps == (4 if in_c and weight_decay == 0 else 0)


def _steps_compared(models, opts, direct, eps):
    gen = torch.Generator().manual_seed(0)
    for step in range(5):
        grads = [torch.randn(p.shape, generator=gen) for p in models[0].parameters()]
        for m, opt in zip(models, opts, strict=True):
            for p, g in zip(m.parameters(), grads, strict=True):
                p.grad = g.clone()
            opt.param_groups[0]["eps"] = eps * (step + 1)  # set per step, as the Keras recipe does
            direct.step() if opt is opts[1] else opt.step()
    # a step where a parameter has no gradient: torch skips it, and so must the direct step
    for m, opt in zip(models, opts, strict=True):
        for i, p in enumerate(m.parameters()):
            p.grad = None if i == 0 else torch.full_like(p, 0.1)
        direct.step() if opt is opts[1] else opt.step()
    for m, opt in zip(models, opts, strict=True):  # and direct again: the skipped parameter's counter lags by one
        for p in m.parameters():
            p.grad = torch.full_like(p, -0.2)
        direct.step() if opt is opts[1] else opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)
    # the direct step's counters are views of one tensor (one add_ a step)
    steps = [opts[1].state[p]["step"] for p in models[1].parameters()]
    assert len({s.untyped_storage().data_ptr() for s in steps}) == 1
    sa, sb = opts[0].state_dict()["state"], opts[1].state_dict()["state"]
    assert all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])


@pytest.mark.parametrize("recipe", ["released", "iclr2018"])
def test_training_with_the_c_update_equals_torchs_update_bit_for_bit(monkeypatch, recipe):
    from geoae.recipes import get_recipe
    from geoae.training import optim

    # the training loop hands AdamStep the kernel library: its C update must leave every weight as torch's
    # (the released recipe sets Keras's ε every step and keeps a best-batch snapshot)
    if fused.kernel() is None or optim.c_adam_width(fused.kernel()) is None:
        pytest.skip("no kernel library, or its C update differs from this torch's (then torch's is used)")
    config = dataclasses.replace(get_recipe(recipe).config("tiny", seed=3), iterations=40, batch_size=16)
    updates = []
    step = optim.AdamStep._c_step
    monkeypatch.setattr(optim.AdamStep, "_c_step", lambda self, *a: updates.append(step(self, *a)) or updates[-1])
    in_c = T.train(config)
    assert sum(updates) == config.iterations - 1  # every step but the first (which creates Adam's state)
    monkeypatch.setattr(optim, "c_adam_width", lambda kernel: None)
    in_torch = T.train(config)
    for (name, a), b in zip(in_c.model.state_dict().items(), in_torch.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="measured on x86-64 only")
def test_the_c_update_is_torchs_on_x86_and_refuses_what_it_does_not_compute():
    import ctypes

    from geoae.training import optim

    # torch 2.13's fused CPU Adam on x86-64 (AVX2 or AVX-512 machines) computes in 8-wide vectors with a scalar
    # tail: geoae_adam must match it at one of the widths it tries (else training uses torch's update, slower)
    kernel = fused.kernel()
    if kernel is None:
        pytest.skip("no kernel library")
    assert optim.c_adam_width(kernel) in (8, 16, 4)
    p, g, m, v = torch.ones(3), torch.ones(3), torch.zeros(3), torch.zeros(3)
    arrays = [(ctypes.c_void_p * 1)(t.data_ptr()) for t in (p, g, m, v)]
    numel = (ctypes.c_longlong * 1)(3)
    assert kernel.lib.geoae_adam(1, *arrays, numel, 1e-3, 0.5, 0.999, 1e-8, 1.0, 8) == 1  # 1 - β₁ ≥ 0.5: its lerp
    assert kernel.lib.geoae_adam(1, *arrays, numel, 1e-3, 0.9, 0.999, 1e-8, 1.0, 0) == 1
    assert torch.equal(p, torch.ones(3))  # refused before any work
    assert kernel.lib.geoae_adam(1, *arrays, numel, 1e-3, 0.9, 0.999, 1e-8, 1.0, 8) == 0 and bool((p < 1).all())
