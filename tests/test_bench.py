"""The benchmark: its plain reference computes geoae's maths, its FLOP count, and a tiny end-to-end run
(no timed assertions)."""

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from geoae import bench
from geoae.data import make_disks
from geoae.environment import LEVELS, TORCH_LEVEL_VARIABLES, level_environment
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


@pytest.mark.parametrize("level", list(LEVELS))
def test_a_level_limits_the_kernels_and_each_of_torchs_libraries(level):
    env = level_environment(level, cpu_level="x86-64-v4")
    assert env["GEOAE_MARCH"] == level and set(env) == {"GEOAE_MARCH", *TORCH_LEVEL_VARIABLES}


@pytest.mark.parametrize("level, cpu, needs", [("x86-64-v4", "x86-64-v3", "choose x86-64-v3"),
                                               ("x86-64-v3", "x86-64-v2", "no level here"),
                                               ("x86-64-v3", "aarch64", "no level here"),
                                               ("x86-64-v5", "x86-64-v4", "one of x86-64-v3, x86-64-v4")])
def test_a_level_this_cpu_cannot_run_is_refused_by_name(level, cpu, needs):
    with pytest.raises(ValueError, match=f"level.*{needs}"):
        level_environment(level, cpu_level=cpu)


def test_bench_at_a_level_runs_torch_and_the_kernels_at_that_level():
    """``--level x86-64-v3`` on a CPU that runs it: the child measures with ATen at AVX2, MKL and oneDNN limited,
    and the kernels built for x86-64-v3 (one fixed configuration: no tuning)."""
    try:
        level_environment("x86-64-v3")
    except ValueError as err:
        pytest.skip(f"this CPU cannot emulate x86-64-v3: {err}")
    env = {k: v for k, v in os.environ.items() if k not in ("GEOAE_MARCH", *TORCH_LEVEL_VARIABLES)}
    proc = subprocess.run([sys.executable, "-m", "geoae", "bench", "--level", "x86-64-v3", "--batch-size", "8",
                           "--steps", "2", "--repeats", "1", "--sweep", "0", "--size", "8", "--networks", "",
                           "--json"], env=env | {"GEOAE_KERNEL": "lanes=8,wg=8"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["torch_limits"] == {"aten_capability": "AVX2", **LEVELS["x86-64-v3"]}
    assert "-march=x86-64-v3" in out["kernel"]["flags"] and out["single"]["losses_agree"]


@pytest.mark.parametrize("march, limited, shown", [("x86-64-v3", False, "`geoae bench --level x86-64-v3`"),
                                                    ("haswell", False, "understate a haswell CPU"),
                                                    ("x86-64-v3", True, None), ("native", False, None)])
def test_the_figures_say_when_only_the_kernels_run_below_this_cpus_best(march, limited, shown):
    limits = {"aten_capability": "AVX512", **(LEVELS["x86-64-v3"] if limited else dict.fromkeys(TORCH_LEVEL_VARIABLES))}
    note = bench.level_note(march, limits)
    assert note is None if shown is None else shown in note


def test_a_level_and_another_geoae_march_are_refused_before_any_work(monkeypatch, capsys):
    from geoae.cli import main

    try:
        level_environment("x86-64-v3")
    except ValueError as err:
        pytest.skip(f"this CPU cannot emulate x86-64-v3: {err}")
    monkeypatch.setenv("GEOAE_MARCH", "native")
    assert main(["bench", "--level", "x86-64-v3"]) == 2
    assert "--level x86-64-v3 builds the kernels for x86-64-v3, but GEOAE_MARCH=native" in capsys.readouterr().err


def test_the_level_child_gets_every_other_option_of_the_command():
    """``--level`` reruns ``geoae bench`` in a child: its command line, parsed again, is the same command but for
    ``--level`` (native there), ``--quiet`` and the flags included, whatever options the bench parser has."""
    from geoae.cli.commands import bench_child_argv
    from geoae.cli.parser import get_parser

    argv = ["bench", "--batch-size", "16", "--threads", "1", "--no-bias", "--steps", "7", "--repeats", "2",
            "--sweep", "0", "--sweep-steps", "9", "--sweep-repeats", "3", "--size", "32", "--networks", "",
            "--level", "x86-64-v3", "--json", "--quiet"]
    args = get_parser().parse_args(argv)
    again = get_parser().parse_args(bench_child_argv(args))
    assert again.level == "native"
    assert {**vars(again), "level": args.level} == vars(args)
    plain = get_parser().parse_args(bench_child_argv(get_parser().parse_args(["bench", "--level", "x86-64-v3"])))
    assert not plain.quiet and not plain.json and plain.threads is None
