"""The stacked (several models at once) path against the plain one: losses, gradients, trained weights,
and train_many's grouping (same runs as one by one, finished runs skipped)."""

import dataclasses
import json

import pytest
import torch

from geoae import sweep
from geoae import train as T
from geoae.data import DiskData, make_disks
from geoae.models import ModelConfig, build_model

SMALL = T.TrainConfig(model=ModelConfig(size=8), data=DiskData(n=32, size=8), iterations=20, batch_size=8,
                      log_every=5, checkpoint_every=10)
WEIGHTS = {"none": 0.0, "locality": 1e-3, "l2_all": 1e-2, "l2_encoder": 1e-2, "contractive": 1e-2}
TOL = 1e-5  # relative, after 20 Adam steps (measured ~1e-6: summation order inside grouped convolutions)


def rel_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-12)) for k in a)


@pytest.mark.parametrize("model_config", [ModelConfig(size=16), ModelConfig(size=8, bias=False, latent_dim=2),
                                          ModelConfig(size=8, output_activation="sigmoid")])
def test_stacked_losses_and_gradients_equal_the_plain_path(model_config):
    with T.training_threads():
        _check_losses_and_gradients(model_config)


def _check_losses_and_gradients(model_config):
    size = model_config.size
    models = [build_model(model_config, seed=s) for s in range(len(T.REGULARISERS))]
    net = sweep.StackedAutoencoder(models)
    xs = [make_disks(6, size=size, seed=s)[0] + 0.05 for s in range(len(models))]  # off the leaky ReLU's kink
    regs = list(T.REGULARISERS)
    lams = [WEIGHTS[r] or 0.5 for r in regs]
    total, mse, pen = sweep.stacked_losses(net, torch.stack(xs, 1).squeeze(2), regs, lams)
    total.sum().backward()
    total, mse, pen = total.detach(), mse.detach(), pen.detach()
    for j, (model, x, reg, lam) in enumerate(zip(models, xs, regs, lams, strict=True)):
        ref = T.compute_loss(model, x, reg, lam)
        ref.total.backward()
        assert float(total[j]) == pytest.approx(ref.total.item(), rel=1e-5)
        assert float(mse[j]) == pytest.approx(ref.mse.item(), rel=1e-5)
        assert float(pen[j]) == pytest.approx(ref.penalty.item(), rel=1e-5, abs=1e-12)
        for p, stacked in zip(model.parameters(), net.params, strict=True):
            assert torch.allclose(stacked.grad[j], p.grad, rtol=1e-4, atol=1e-7 * float(p.grad.abs().max()))


def test_unsupported_models_are_not_grouped():
    assert sweep.supported(ModelConfig())
    assert not sweep.supported(ModelConfig(upsample="nearest"))
    assert not sweep.supported(ModelConfig(arch="keras63", size=63))
    assert not sweep.supported(ModelConfig(arch="paper1d", size=16))


def test_grouped_training_equals_single_runs_for_every_regulariser():
    configs = [dataclasses.replace(SMALL, seed=s, regulariser=r, reg_weight=WEIGHTS[r])
               for s, r in enumerate(T.REGULARISERS)]
    together = sweep.train_group(configs)
    for config, res in zip(configs, together, strict=True):
        alone = T.train(config)
        assert rel_diff(alone.model.state_dict(), res.model.state_dict()) < TOL
        assert [h["iteration"] for h in res.history] == [h["iteration"] for h in alone.history]
        assert res.history[-1]["loss"] == pytest.approx(alone.history[-1]["loss"], rel=TOL)


def test_grouped_training_is_deterministic():
    configs = [dataclasses.replace(SMALL, seed=s, iterations=5) for s in range(3)]
    a, b = sweep.train_group(configs), sweep.train_group(configs)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x.model.state_dict()[k], y.model.state_dict()[k]) for k in x.model.state_dict())


def test_train_many_groups_writes_runs_like_train_and_skips_finished(tmp_path, monkeypatch):
    configs = [dataclasses.replace(SMALL, seed=s, iterations=6) for s in range(3)]
    configs.append(dataclasses.replace(SMALL, model=ModelConfig(size=8, upsample="nearest"), iterations=6))
    calls = []
    original = sweep.train_group
    monkeypatch.setattr(sweep, "train_group", lambda cs, *a, **k: calls.append(len(cs)) or original(cs, *a, **k))
    results = T.train_many(configs, tmp_path, group=True)
    assert calls == [3]  # the three paper64 runs at once, the `nearest` one alone
    for config, res in zip(configs, results, strict=True):
        run = tmp_path / T.run_name(config)
        assert {"config.json", "history.json", "metrics.json", "model.safetensors"} <= {p.name for p in run.iterdir()}
        loaded = T.load_run(run)
        assert loaded.config == config and loaded.history == res.history
        assert json.loads((run / "config.json").read_text())["config"] == config.to_dict()
        again = T.train(config, run)  # a finished run is loaded by train, not retrained
        assert rel_diff(again.model.state_dict(), loaded.model.state_dict()) == 0
    assert rel_diff(T.train(configs[1]).model.state_dict(), results[1].model.state_dict()) < TOL
    monkeypatch.setattr(T.BatchSource, "next", lambda self: pytest.fail("retrained a finished run"))
    assert [r.history for r in T.train_many(configs, tmp_path, group=True)] == [r.history for r in results]
