"""The benchmark: its plain reference computes geoae's maths, its FLOP count, and a tiny end-to-end run
(no timed assertions)."""

import argparse
import json

import pytest
import torch

from geoae import bench
from geoae.data import make_disks
from geoae.models import ModelConfig, build_model
from geoae.train import compute_loss


@pytest.mark.parametrize("bias", [True, False])
def test_plain_reference_is_the_same_network(bias):
    model = build_model(ModelConfig(size=16, bias=bias), seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # non-zero biases too
    plain = bench.PlainAutoencoder(model)
    x, _ = make_disks(4, size=16, seed=0)
    assert torch.allclose(plain(x), model(x).x_hat, rtol=1e-5, atol=1e-7)
    loss_plain = torch.nn.functional.mse_loss(plain(x), x)
    assert loss_plain.item() == pytest.approx(compute_loss(model, x, "none", 0.0).total.item(), rel=1e-5)


def test_conv_macs_of_the_paper_network():
    # 64 -> 32 ... -> 1, channels 1 8 4 4 3 2 1: encoder + mirrored decoder. Real taps only: a 3-tap stride-2
    # conv with padding 1 onto n outputs reads 3n - 1 samples per axis (the first output's first tap is padding);
    # "zero insertion then 3-tap conv" from n inputs reads 3n - 1 per axis (the first input's last tap falls off)
    sides, chans = [32, 16, 8, 4, 2, 1], [1, 8, 4, 4, 3, 2, 1]
    per_layer = [(3 * n - 1) ** 2 * cin * cout for n, cin, cout in zip(sides, chans[:-1], chans[1:], strict=True)]
    assert bench.conv_macs(ModelConfig()) == 2 * sum(per_layer) == 305_924


def test_tiny_bench_runs_and_checks_equivalence(capsys):
    args = argparse.Namespace(batch_size=8, threads=None, no_bias=False, steps=5, repeats=1, sweep=5,
                              sweep_steps=3, sweep_repeats=1, json=True, size=8, networks="keras63,paper1d")
    assert bench.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["single"]["losses_agree"] and out["sweep"]["weights_agree"]
    assert out["single"]["plain_images_per_second"] > 0 and 0 < out["single"]["geoae_matmul_fraction"]
    assert set(out["networks"]) == {"keras63", "paper1d"}
    assert all(r["losses_agree"] and r["plain_images_per_second"] > 0 for r in out["networks"].values())


@pytest.mark.parametrize("name", list(bench.NETWORKS))
def test_the_other_networks_plain_references_are_the_same_networks(name):
    cfg = bench.network_config(name, 4, 1)
    model = build_model(cfg.model, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    x = cfg.data.make(seed=0)[0][:4] if cfg.model.ndim == 1 else cfg.data.make(4, seed=0)[0]
    assert torch.allclose(bench.PlainAutoencoder(model)(x), model(x).x_hat, rtol=1e-5, atol=1e-6)
