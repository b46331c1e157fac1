"""The paper's central claim at the issue's budget, in the default test run (ICLR 2018 Prop. 2 and §3.2.2: D4 and D5).

Two 3,000-iteration runs, trained together (the quick profile's bias-free and biased seed-0 runs, identical
configs): a bias-free network reaches the discrete optimum of its training set (loss within 2 %), draws the
Airy profile (within 5 % relative L2), and biases beat the bias-free optimum at least 5-fold.
"""

import pytest
import torch

from geoae import theory
from geoae.data import make_disks
from geoae.experiments import d4
from geoae.experiments.common import Context, disk_config, disk_test_set, r_train
from geoae.train import BatchSource, train_many


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    ctx = Context(profile="quick", seeds=(0,), out=None, runs=None)
    free, biased = disk_config(ctx, seed=0, bias=False), disk_config(ctx, seed=0)
    assert free.iterations == biased.iterations == 3000
    return train_many([free, biased], tmp_path_factory.mktemp("central"))


def test_bias_free_training_reaches_the_discrete_optimum_and_draws_airy(runs):
    ctx = Context(profile="quick", seeds=(0,), out=None, runs=None)
    images, radii = disk_test_set(ctx)
    m = d4.measure(runs[0], images, radii, r_train(ctx))
    print(f"\nbias-free: loss / optimum {m['loss_ratio']:.4f}, profile vs optimum {m['profile_vs_svd']:.4f}, "
          f"vs Airy {m['profile_vs_airy']:.4f}, optimum vs Airy {m['svd_vs_airy']:.4f}")
    assert 1 - 1e-4 <= m["loss_ratio"] <= 1.02
    assert m["profile_vs_airy"] < 0.05
    assert m["corr_z_h"] > 0.99


def test_biases_beat_the_bias_free_optimum_fivefold(runs):
    test_x, _ = make_disks(300, seed=12345)
    with torch.no_grad():
        test_mse = float((runs[1].model(test_x).x_hat - test_x).square().mean())
    opt = theory.discrete_optimum(BatchSource(runs[1].config).images)
    print(f"\nwith biases: test MSE {test_mse:.5g}; bias-free optimum {opt.mse:.5g}; ratio {opt.mse / test_mse:.2f}")
    assert test_mse * 5 <= opt.mse
