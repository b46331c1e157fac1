"""Tests for the position experiments P1–P3 (tiny profile, end to end), their measures, the sampling
arguments' validation (library and CLI) and the coordinate-channel (CoordConv) model option."""

import json
import math

import numpy as np
import pytest
import torch

from geoae.cli import main as cli_main
from geoae.data import DiracData, all_dirac_positions, make_diracs, render_diracs
from geoae.experiments import p2
from geoae.experiments.common import Context
from geoae.experiments.runner import run_experiment
from geoae.models import CoordConv, ModelConfig, UpsampleConv, build_model, coordinate_maps, count_parameters

# --- the experiments, end to end on the tiny profile --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Run P1, P2, P3 once (tiny profile, one seed) into a shared directory; P2 and P3 share runs."""
    root = tmp_path_factory.mktemp("position")
    records, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: thread hand-offs cost more than they save on a busy machine
    try:
        for exp_id in ("P1", "P2", "P3"):
            ctx = Context(profile="tiny", seeds=(0,), out=root / exp_id, runs=root / "runs")
            records[exp_id] = run_experiment(exp_id, ctx, progress=False)
    finally:
        torch.set_num_threads(threads)
    return root, records


@pytest.mark.parametrize("exp_id", ["P1", "P2", "P3"])
def test_experiment_runs_end_to_end(tiny, exp_id):
    root, records = tiny
    rec = records[exp_id]
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["verdict"] in ("confirmed", "partly", "not reproduced") and rec["rule"]
    assert rec["numbers"] and all(math.isfinite(v) for v in rec["numbers"].values())
    assert set(rec["numbers"]) <= set(rec["descriptions"])
    assert rec["figures"] and all((root / exp_id / f).stat().st_size > 0 for f in rec["figures"])
    assert json.loads((root / exp_id / "results.json").read_text())["id"] == exp_id


def test_p1_is_exact_for_every_position(tiny):
    rec = tiny[1]["P1"]
    assert rec["verdict"] == "confirmed"
    for k in ("1d", "2d"):
        assert rec["numbers"][f"max_rel_error_{k}"] < 1e-6
        assert rec["numbers"][f"max_position_error_{k}"] == 0.0
        assert rec["numbers"][f"r2_{k}"] == pytest.approx(1.0)
    assert rec["configs"] == {} and rec["n_runs"] == 0  # nothing trained


def test_p2_and_p3_share_the_all_runs(tiny):
    root, records = tiny
    digests = {json.dumps(c, sort_keys=True) for r in (records["P2"], records["P3"]) for c in r["configs"].values()
               if not any(k.endswith("/ramp/s0") and v == c for k, v in r["configs"].items())}
    plain_dirs = [d for d in (root / "runs").iterdir() if not d.name.startswith("init-")]
    assert len(plain_dirs) == len(digests)  # identical configs trained once
    assert records["P2"]["configs"]["1d/plain/s0"] == records["P3"]["configs"]["1d/autoencoder/all/s0"]
    assert (root / "runs" / "init-ramp").is_dir()  # the ramp-initialised runs live apart
    p3_schemes = {c["data"]["scheme"] for c in records["P3"]["configs"].values()}
    assert {"all", "stride", "quadrant"} <= p3_schemes


def test_tiny_numbers_of_p2_and_p3(tiny):
    p2n, p3n = tiny[1]["P2"]["numbers"], tiny[1]["P3"]["numbers"]
    for key, value in p2n.items():
        if key.startswith(("r2_", "monotonicity_", "accuracy_", "gradient_ramp_cosine_")):
            assert 0 <= value <= 1 + 1e-9, key
    # 10 iterations from the hand-crafted encoder cannot undo it: the code is still close to the ramp
    assert p2n["diagnostics_ramp_init_r2"] > 0.5
    assert p2n["diagnostics_ramp_emerges"] in (0, 1)
    for key, value in p3n.items():
        assert 0 <= value <= 1, key
    assert p3n["best_heldout_acc_1d_autoencoder"] == p3n["heldout_acc_1d_autoencoder_stride2_blur2"]


def test_p3_rule_ignores_training_on_every_position(tiny):
    rec = tiny[1]["P3"]
    held = [rec["numbers"][f"best_heldout_acc_{nd}d_autoencoder"] for nd in (1, 2)]
    expected = ("confirmed" if min(held) >= 0.9 else "partly" if max(held) >= 0.9 or min(held) >= 0.5
                else "not reproduced")
    assert rec["verdict"] == expected
    assert not any("_all" in k for k in rec["numbers"] if k.startswith("heldout"))


def test_ramp_init_is_the_hand_crafted_encoder():
    from geoae.experiments.common import codes

    for d in (1, 2):
        model = build_model(ModelConfig(arch="paper1d", size=16, latent_dim=d, channels=(4, 4, 4)), seed=0)
        p2.ramp_init(model)
        x = render_all(16, 1)
        z = codes(model, x)
        q = torch.arange(16.0) / 16
        expected = q[:, None] if d == 1 else torch.stack([torch.ones(16), q], 1)
        assert torch.allclose(z, expected, atol=1e-6)
        assert p2.gradient_ramp_cosine(model, x, np.arange(16.0)[:, None]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="ramp_init"):
        p2.ramp_init(build_model(ModelConfig(arch="paper1d", size=16, latent_dim=2, channels=(4, 1, 4)), seed=0))


def test_blurred_diracs():
    from geoae.data import render_diracs

    x = render_diracs(torch.tensor([5]), size=16, blur=2.0)[0, 0]
    assert x.argmax() == 5 and x[5] == 1.0 and x[7] == pytest.approx(math.exp(-0.5))
    assert torch.equal(render_diracs(torch.tensor([[1, 2]]), size=4, ndim=2, blur=0.0),
                       render_diracs(torch.tensor([[1, 2]]), size=4, ndim=2))
    with pytest.raises(ValueError, match="blur"):
        DiracData(size=16, blur=float("nan"))


# --- the ramp measures ---------------------------------------------------------------------------------------


def test_ramp_measures_on_known_codes():
    p = np.arange(64.0)[:, None]
    assert p2.linearity(p, 3 - 0.5 * p) == pytest.approx(1.0)
    assert p2.monotonicity(p, 3 - 0.5 * p) == pytest.approx(1.0)
    assert p2.linearity(p, np.ones_like(p)) == 0.0 and p2.monotonicity(p, np.ones_like(p)) == 0.0
    wiggle = np.sin(p)  # not a ramp
    assert p2.linearity(p, wiggle) < 0.1 and p2.monotonicity(p, wiggle) < 0.3
    ii, jj = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    pos = np.stack([ii.ravel(), jj.ravel()], 1)
    rotated = pos @ np.array([[0.6, -0.8], [0.8, 0.6]]) + 2.0  # a rotated 2-D ramp is still a ramp
    assert p2.linearity(pos, rotated) == pytest.approx(1.0)
    assert p2.monotonicity(pos, rotated) == pytest.approx(1.0)


# --- bad sampling arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"scheme": "bogus"}, "scheme"),
        ({"scheme": "random", "fraction": 0.0}, "fraction"),
        ({"scheme": "random", "fraction": 1.5}, "fraction"),
        ({"scheme": "hole", "hole": (40, 20)}, "hole"),
        ({"scheme": "hole", "hole": (0, 64)}, "hole"),
        ({"scheme": "stride", "stride": 0}, "stride"),
        ({"scheme": "quadrant", "ndim": 1}, "quadrant"),
        ({"scheme": "quadrant", "ndim": 2, "quadrant": 4}, "quadrant"),
    ],
)
def test_bad_sampling_arguments_are_rejected(kwargs, param):
    with pytest.raises(ValueError, match=param):
        DiracData(size=64, **kwargs)
    with pytest.raises(ValueError, match=param):
        make_diracs(size=64, **kwargs)


@pytest.mark.parametrize(
    "argv",
    [
        ["--scheme", "bogus"],
        ["--scheme", "random", "--fraction", "2"],
        ["--scheme", "quadrant", "--ndim", "1"],
        ["--scheme", "hole", "--hole", "30:10"],
    ],
)
def test_cli_rejects_bad_sampling_with_exit_code_2(argv, tmp_path, capsys):
    out = tmp_path / "x.npz"
    assert cli_main(["data", "diracs", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and len(err.strip().splitlines()) == 1  # one line, no traceback
    assert not out.exists()


# --- the coordinate-channel option (models.ModelConfig.coord) --------------------------------------------


def test_coordinate_maps():
    c = coordinate_maps((3, 5))
    assert c.shape == (2, 3, 5)
    assert c[0, :, 0].tolist() == [-1.0, 0.0, 1.0] and c[1, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert coordinate_maps((1,)).tolist() == [[0.0]]


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("mode", ["zeros", "nearest"])
def test_coord_layers_equal_explicit_concatenation(ndim, mode):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, *(6,) * ndim, generator=g, dtype=torch.float64)
    for layer in (CoordConv(ndim, 4, 2), UpsampleConv(ndim, 4, 2, mode, coord=True)):
        layer = layer.double()
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
            layer.bias.copy_(torch.randn(2, generator=g))
        assert layer.weight.shape[1] == 4 + ndim
        assert torch.allclose(layer(x), layer.forward_explicit(x), atol=1e-12)


def test_coord_model_shapes_params_and_config():
    plain, coord = ModelConfig(arch="paper1d"), ModelConfig(arch="paper1d", coord=True)
    # paper1d n=64: 6 + 6 layers with 22 output channels each side; coord adds 1 input channel × 3 taps each
    assert count_parameters(build_model(coord)) - count_parameters(build_model(plain)) == 2 * 3 * 22
    # paper64: 2 coordinate channels × 9 taps × 22 output channels, encoder and decoder
    assert count_parameters(build_model(ModelConfig(coord=True))) == 1412 + 2 * 2 * 9 * 22
    model = build_model(ModelConfig(size=16, latent_dim=2, coord=True))
    z, x_hat = model(torch.rand(2, 1, 16, 16))
    assert z.shape == (2, 2) and x_hat.shape == (2, 1, 16, 16)
    assert "coord" not in plain.to_dict()  # plain configs keep their dicts and run digests
    assert ModelConfig.from_dict(json.loads(json.dumps(coord.to_dict()))) == coord
    for bad in (ModelConfig(coord="yes"), ModelConfig(arch="keras63", size=63, coord=True)):
        with pytest.raises(ValueError, match="coord"):
            build_model(bad)


def test_coord_breaks_homogeneity_even_without_bias():
    model = build_model(ModelConfig(arch="paper1d", bias=False, coord=True), seed=1)
    z = torch.rand(4, 1) + 0.5
    with torch.no_grad():
        assert not torch.allclose(model.decode(2 * z), 2 * model.decode(z), atol=1e-4)



# --- the frozen hand-crafted encoder (models.ModelConfig.encoder='position'), P3's decoding protocol -------


@pytest.mark.parametrize(("arch", "ndim"), [("paper1d", 1), ("paper64", 2)])
def test_frozen_position_encoder_trains_the_decoder_only(arch, ndim):
    from geoae.train import TrainConfig, train

    model_cfg = ModelConfig(arch=arch, size=8, latent_dim=1 + ndim, encoder="position", channels=(4, 4))
    config = TrainConfig(model=model_cfg, data=DiracData(size=8, ndim=ndim), iterations=3, batch_size=4, lr=1e-2)
    before = build_model(model_cfg, seed=0)
    run = train(config)
    x = render_all(8, ndim)
    z = run.model.encode(x)
    pos = all_dirac_positions(8, ndim).reshape(len(x), ndim)
    assert torch.equal(z, torch.cat([torch.ones(len(x), 1), pos / 8], 1))  # exact code (1, p/n)
    for a, b in zip(before.encoder.parameters(), run.model.encoder.parameters(), strict=True):
        assert not b.requires_grad and torch.equal(a, b)  # the encoder is not trained
    assert any(not torch.equal(a, b) for a, b in zip(before.decoder.parameters(), run.model.decoder.parameters(),
                                                       strict=True))  # the decoder is


def render_all(size, ndim):
    return render_diracs(all_dirac_positions(size, ndim), size=size, ndim=ndim)


def test_frozen_position_encoder_config():
    cfg = ModelConfig(arch="paper1d", latent_dim=2, encoder="position")
    assert cfg.to_dict()["encoder"] == "position" and ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert "encoder" not in ModelConfig(arch="paper1d").to_dict()  # earlier dicts and run digests unchanged
    for bad, match in ((ModelConfig(arch="paper1d", latent_dim=1, encoder="position"), "latent_dim"),
                       (ModelConfig(encoder="nope"), "encoder"),
                       (ModelConfig(arch="keras63", size=63, latent_dim=3, encoder="position"), "encoder")):
        with pytest.raises(ValueError, match=match):
            build_model(bad)


def test_p3_decoders_sit_behind_the_frozen_encoder(tiny):
    configs = tiny[1]["P3"]["configs"].values()
    frozen = [c for c in configs if c["model"].get("encoder") == "position"]
    assert frozen and {c["data"]["ndim"] for c in frozen} == {1, 2}
    assert {c["data"]["scheme"] for c in frozen} >= {"stride", "quadrant"}
