"""Recipes: the released code's semantics (Keras step, kept weights, data), the ICLR 2018 set-up, ours apart."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from geoae import train as T
from geoae.data import DiskData, render_disks
from geoae.models import ModelConfig, build_model
from geoae.recipes import NAMES, PAPER_IMAGES, RECIPES, get_recipe, recipe_of
from geoae.training.loop import KeptWeights, keras_epsilon

RELEASED = RECIPES["released"]


# --------------------------------------------------------------------- a float64 reference of the Keras network


def conv_valid_s2(x, w, b):
    """Keras Conv2D(3×3, stride 2, 'valid'): x (B, cin, n, n), w (cout, cin, 3, 3) -> (B, cout, (n-3)//2+1, …);
    cross-correlation written out tap by tap."""
    n_out = (x.shape[-1] - 3) // 2 + 1
    out = torch.zeros(x.shape[0], w.shape[0], n_out, n_out, dtype=x.dtype)
    for a in range(3):
        for c in range(3):
            patch = x[:, :, a:a + 2 * n_out - 1:2, c:c + 2 * n_out - 1:2]  # (B, cin, n_out, n_out)
            out = out + torch.einsum("bixy,oi->boxy", patch, w[:, :, a, c])
    return out + b[None, :, None, None]


def conv_transpose_valid_s2(x, w, b):
    """Keras Conv2DTranspose(3×3, stride 2, 'valid'): out[2i + a, 2j + c] += x[i, j]·w[a, c]; x (B, cin, n, n),
    w (cin, cout, 3, 3) (torch's layout of the same kernel) -> (B, cout, 2n + 1, 2n + 1)."""
    n = x.shape[-1]
    out = torch.zeros(x.shape[0], w.shape[1], 2 * n + 1, 2 * n + 1, dtype=x.dtype)
    for a in range(3):
        for c in range(3):
            out[:, :, a:a + 2 * n - 1:2, c:c + 2 * n - 1:2] += torch.einsum("bixy,io->boxy", x, w[:, :, a, c])
    return out + b[None, :, None, None]


def keras_forward(params, x, alpha):
    """The released network in float64 with LeakyReLU(alpha) after every layer; params: [(w, b)] × 10."""
    h = x
    for w, b in params[:5]:
        h = torch.nn.functional.leaky_relu(conv_valid_s2(h, w, b), alpha)
    for w, b in params[5:]:
        h = torch.nn.functional.leaky_relu(conv_transpose_valid_s2(h, w, b), alpha)
    return h


def keras_adam_step(p, g, lr, eps, b1=0.9, b2=0.999, t=1):
    """Keras's Adam update from zero state at step t (ε̂ added to √v before the bias correction)."""
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
    return p - lr_t * m / (v.sqrt() + eps)


def test_one_step_of_the_released_recipe_equals_the_keras_semantics_in_float64():
    cfg = dataclasses.replace(RELEASED.config("tiny", seed=3), iterations=1, log_every=1)
    assert cfg.model.arch == "keras63" and cfg.optimizer == "adam_keras" and cfg.eps == 1e-7 and cfg.lr == 1e-2
    batch = T.BatchSource(cfg).next().double()  # the batch the run draws first
    start = build_model(cfg.model, seed=cfg.seed)  # the run's initial weights (Glorot, zero biases)
    layers = start.conv_layers()
    params = [(ly.weight.detach().double().clone().requires_grad_(True),
               ly.bias.detach().double().clone().requires_grad_(True)) for ly in layers]
    loss = (keras_forward(params, batch, 0.05) - batch).square().mean()
    grads = torch.autograd.grad(loss, [t for pair in params for t in pair])
    expected = [keras_adam_step(t.detach(), g, cfg.lr, cfg.eps) for t, g in zip(
        [t for pair in params for t in pair], grads, strict=True)]
    run = T.train(cfg)
    got = [t.detach().double() for ly in run.model.conv_layers() for t in (ly.weight, ly.bias)]
    assert abs(run.history[0]["loss"] - loss.item()) < 1e-6
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(g, e, atol=1e-5, rtol=0), float((g - e).abs().max())
    moved = max(float((g - t.detach()).abs().max()) for g, t in zip(got, [t for p in params for t in p], strict=True))
    assert moved > 1e-3  # the step did change the weights: the comparison is not between two initialisations


def test_keras_epsilon_gives_the_keras_update_where_the_two_conventions_differ():
    g = torch.tensor([1e-9, -3e-8, 2e-6, 0.5], dtype=torch.float64)  # tiny gradients: ε matters
    for t in (1, 2, 10):
        p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.01, eps=1e-7)
        m = torch.zeros(4, dtype=torch.float64)
        v = torch.zeros(4, dtype=torch.float64)
        for step in range(1, t + 1):
            p.grad = g.clone()
            opt.param_groups[0]["eps"] = keras_epsilon(1e-7, 0.999, step)
            opt.step()
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        q = torch.zeros(4, dtype=torch.float64)
        m2, v2 = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
        for step in range(1, t + 1):
            m2, v2 = 0.9 * m2 + 0.1 * g, 0.999 * v2 + 0.001 * g * g
            q = q - 0.01 * math.sqrt(1 - 0.999**step) / (1 - 0.9**step) * m2 / (v2.sqrt() + 1e-7)
        assert torch.allclose(p.detach(), q, rtol=1e-9, atol=1e-15)
        torch_plain = torch.zeros(4, dtype=torch.float64, requires_grad=True)  # torch's own ε: visibly different
        opt2 = torch.optim.Adam([torch_plain], lr=0.01, eps=1e-7)
        for _ in range(t):
            torch_plain.grad = g.clone()
            opt2.step()
        assert not torch.allclose(torch_plain.detach()[:2], q[:2], rtol=1e-3)


# ------------------------------------------------------------------------------------------ kept weights


def authors_rule(losses, every):
    """The released code's loop: at i % every == 0, keep (i + 1 steps of weights) if the batch loss is the lowest."""
    best, kept = float("inf"), None
    for i, loss in enumerate(losses):
        if i % every == 0 and loss < best:
            best, kept = loss, i + 1
    return kept, best


@pytest.mark.parametrize("losses", [
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4],  # always improving: the last iteration on the grid
    [1.0, 9.0, 9.0, 9.0, 0.5, 9.0, 2.0],  # a dip off the grid is never seen
    [3.0, 0.1, 4.0, 0.2, 5.0, 0.3, 6.0],  # worse at every later check: the first snapshot stays
    [float("inf")] * 3 + [1.0] * 4,        # an infinite first loss is not "lower than inf"
])
def test_kept_weights_follow_the_released_codes_rule_on_a_scripted_loss_sequence(losses):
    every = 2
    kept = KeptWeights(every)
    model = torch.nn.Linear(1, 1, bias=False)
    for i, loss in enumerate(losses):
        kept.offer(i, loss)
        with torch.no_grad():
            model.weight.fill_(float(i + 1))  # "the weights after step i + 1"
        kept.after_step(i, model)
    want, best = authors_rule(losses, every)
    assert kept.iteration == want and kept.loss == best
    if want is not None:
        assert float(kept.state["weight"]) == float(want)


def test_a_released_run_ends_with_the_snapshot_its_rule_names(tmp_path):
    cfg = dataclasses.replace(RELEASED.config("tiny", seed=1), iterations=9, log_every=1, keep_every=3,
                              checkpoint_every=4)
    run = T.train(cfg, tmp_path / "run")
    losses = [h["loss"] for h in run.history]  # each step's batch loss, before its update
    want, best = authors_rule(losses, 3)
    assert run.metrics["kept_iteration"] == want and run.metrics["kept_batch_loss"] == pytest.approx(best)
    last = T.train(dataclasses.replace(cfg, keep="last"))  # same steps, the last iterate
    if want != 9:
        assert not torch.equal(run.model.encoder[0].weight, last.model.encoder[0].weight)
    loaded = T.load_run(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                  run.model.state_dict().values(), strict=True))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["recipe"] == "released"


def test_a_released_run_killed_mid_way_resumes_to_the_same_snapshot(tmp_path, monkeypatch):
    cfg = dataclasses.replace(RELEASED.config("tiny", seed=2), iterations=10, log_every=1, keep_every=3,
                              checkpoint_every=4)
    reference = T.train(cfg)
    original, calls = T.BatchSource.draw, {"n": 0}

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 7:  # after the checkpoint of iteration 4 (which holds the snapshot of step 4)
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(T.BatchSource, "draw", dying)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, tmp_path / "run")
    monkeypatch.setattr(T.BatchSource, "draw", original)
    resumed = T.train(cfg, tmp_path / "run")
    assert resumed.metrics["kept_iteration"] == reference.metrics["kept_iteration"]
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(),
                                                  reference.model.state_dict().values(), strict=True))


def test_subset_batches_hold_distinct_images_and_need_enough_of_them():
    cfg = RELEASED.config("tiny", seed=0)  # 64 images, batches of 64: each batch is the whole set, shuffled
    batch = T.BatchSource(cfg).next()
    assert len({tuple(x.flatten().tolist()[:: 97]) + (float(x.sum()),) for x in batch}) == len(
        {tuple(x.flatten().tolist()[:: 97]) + (float(x.sum()),) for x in T.BatchSource(cfg).images})
    with pytest.raises(ValueError, match="batch_sampling='subset'.*data.n=32"):
        dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, n=32)).validate()


# ------------------------------------------------------------------------------------------------- data


def authors_monte_carlo(radius: float, size: int = 63, samples: int = 800, sigma: float = 0.5, seed: int = 0):
    """The released code's rendering, re-implemented from its description: the mean over Gaussian jitters q of
    the grid of the indicator (X + q_x)² + (Y + q_y)² < r², X, Y integer offsets from the centre pixel."""
    rng = np.random.default_rng(seed)
    h = size // 2
    Y, X = np.meshgrid(np.arange(-h, h + 1), np.arange(-h, h + 1), indexing="ij")
    img = np.zeros((size, size))
    for _ in range(samples):
        q = sigma * rng.standard_normal(2)
        img += ((X + q[0]) ** 2 + (Y + q[1]) ** 2) < radius**2
    return img / samples


@pytest.mark.parametrize("radius", [0.7, 6.3, 17.0, 29.9])
def test_the_released_rendering_is_the_expectation_of_the_authors_monte_carlo_disks(radius):
    ours = render_disks([radius], size=63, rendering="gaussian", sigma=0.5)[0, 0].double().numpy()
    mc = authors_monte_carlo(radius, samples=20_000, seed=int(radius * 10))
    noise = np.sqrt(np.maximum(ours * (1 - ours), 1e-12) / 20_000)
    assert np.all(np.abs(mc - ours) <= 6 * noise + 1e-9)  # within the Monte Carlo noise of 20,000 jitters
    eight_bit = RELEASED.render(torch.tensor([radius]))[0, 0].double().numpy()
    levels = eight_bit * 255  # uint8(255·x) read back as /255: whole levels, truncated (never above x)
    assert np.abs(levels - np.round(levels)).max() < 1e-4
    assert np.all(eight_bit <= ours + 1e-6) and np.all(ours - eight_bit < 1 / 255 + 1e-6)
    authors = np.floor(authors_monte_carlo(radius) * 255) / 255  # their 800 jitters, 8-bit
    assert np.abs(authors - eight_bit).max() < 0.1 and np.abs(authors - eight_bit).mean() < 2e-3


# ---------------------------------------------------------------------------------------------- recipes


def test_each_recipe_is_what_its_source_states():
    iclr, rel, ours = RECIPES["iclr2018"], RECIPES["released"], RECIPES["geoae"]
    c = iclr.config("paper")
    assert (c.model.arch, c.model.size, c.model.negative_slope, c.data.rendering, c.lr, c.batch_size) == (
        "paper64", 64, 0.2, "binary", 1e-3, 300)
    c = rel.config("paper")
    assert (c.model.arch, c.model.size, c.model.negative_slope, c.data.rendering, c.data.sigma, c.data.quantise,
            c.lr, c.eps, c.optimizer, c.batch_size, c.batch_sampling, c.keep, c.keep_every, c.iterations) == (
        "keras63", 63, 0.05, "gaussian", 0.5, 255, 1e-2, 1e-7, "adam_keras", 64, "subset", "best_batch", 500, 10_000)
    assert rel.test_radii("paper").tolist() == pytest.approx(np.linspace(0, 31.5, 300).tolist(), abs=1e-5)
    for recipe in (iclr, rel, ours):  # the same number of images in every recipe's paper-profile run
        cfg = recipe.config("paper")
        assert PAPER_IMAGES <= cfg.iterations * cfg.batch_size < PAPER_IMAGES + cfg.batch_size
        assert recipe_of(cfg) == recipe.name
    assert ours.deviations and not rel.deviations
    assert all("our reading" in v for k, v in iclr.choices.items() if k in ("iterations", "kept weights"))


def test_the_geoae_recipe_keeps_the_configs_and_digests_of_earlier_runs():
    cfg = RECIPES["geoae"].config("paper", seed=0)
    legacy = T.TrainConfig(model=ModelConfig(arch="paper64", size=64, latent_dim=1, bias=True),
                           data=DiskData(n=1000, size=64, rendering="area"), iterations=10000, batch_size=64,
                           lr=1e-3, seed=0, log_every=100, checkpoint_every=500)
    assert cfg == legacy and cfg.digest() == legacy.digest()
    assert set(cfg.to_dict()) == set(legacy.to_dict())  # new fields at their defaults are not written


def test_unknown_recipes_and_items_are_refused():
    with pytest.raises(ValueError, match="recipe must be one of iclr2018, released, geoae"):
        get_recipe("keras")
    with pytest.raises(ValueError, match="unknown recipe item"):
        RELEASED.config("quick", momentum=0.5)
    assert set(NAMES) == {"iclr2018", "released", "geoae"}
