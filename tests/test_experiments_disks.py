"""Disk experiments D1, D2, D3, D5: end to end on the tiny profile, their measures on known answers, and
``reproduce`` (report, no redone work, a failing experiment reported while the others run)."""

import json
import math

import numpy as np
import pytest
import torch

from geoae.data import render_disks, test_radii
from geoae.experiments import d1, d2, d3, d5, registry
from geoae.experiments.common import VERDICTS, Context
from geoae.experiments.runner import reproduce, run_experiment
from geoae.models import ModelConfig, build_model
from geoae.theory import pixel_radii


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("disks")


@pytest.fixture(scope="module")
def tiny_records(tiny_root):
    """D1, D2, D3, D5 on the tiny profile (one seed; their runs are shared, trained once)."""
    out = {}
    for exp_id in ("D1", "D2", "D3", "D5"):
        ctx = Context(profile="tiny", seeds=(0,), out=tiny_root / exp_id, runs=tiny_root / "runs")
        out[exp_id] = run_experiment(exp_id, ctx, progress=False)
    return out


@pytest.mark.parametrize("exp_id", ["D1", "D2", "D3", "D5"])
def test_experiment_runs_end_to_end_on_tiny_profile(tiny_root, tiny_records, exp_id):
    rec = tiny_records[exp_id]
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["verdict"] in VERDICTS and rec["rule"] and rec["control"]
    assert json.loads((tiny_root / exp_id / "results.json").read_text())["verdict"] == rec["verdict"]
    for name, value in rec["numbers"].items():
        assert name in rec["descriptions"]
        assert math.isfinite(value) or "NaN" in rec["notes"], (name, value)
    assert rec["figures"]
    for fig in rec["figures"]:
        assert (tiny_root / exp_id / fig).stat().st_size > 1000
    assert rec["n_runs"] == {"D1": 1, "D2": 1, "D3": 2, "D5": 2}[exp_id]
    assert set(rec["configs"]) == {"D1": {"biased/s0"}, "D2": {"biased/s0"}, "D3": {"biased/s0", "bias_free/s0"},
                                   "D5": {"biased/s0", "bias_free/s0"}}[exp_id]


def test_tiny_numbers_of_d1_d2(tiny_records):
    """Numbers that do not depend on training, recomputed here, and ranges that any run must respect."""
    d1n, d2n = tiny_records["D1"]["numbers"], tiny_records["D2"]["numbers"]
    images = render_disks(test_radii(17, size=64), size=64)
    assert d1n["trivial_mse"] == pytest.approx(float((images - images.mean(0)).square().mean()), rel=1e-6)
    assert d1n["worst_seed_mse_r_le_30"] == pytest.approx(d1n["mse_r_le_30"])  # one seed
    assert 0 < d1n["mse_r_le_30"] < 1
    assert d2n["control_integrator_exponent"] == pytest.approx(2.0, abs=0.05)  # z = Σx grows like r²
    assert d2n["control_integrator_uniformity"] == pytest.approx(1.0, abs=1e-9)
    assert d2n["control_radius_code_exponent"] == pytest.approx(1.0, abs=0.02)  # z = r
    assert 0 <= d2n["abs_spearman_min"] <= 1


def test_tiny_numbers_of_d3_d5(tiny_records):
    d3n, d5n = tiny_records["D3"]["numbers"], tiny_records["D5"]["numbers"]
    assert d3n["implementation_check_homogeneity"] < 1e-12  # a theorem, float64
    assert d3n["biased_homogeneity_error"] >= 0
    assert 0.5 <= d3n["codes_same_sign_min"] <= 1
    if d3n["codes_same_sign_min"] == 1.0:  # one sign: rank 1 (Prop. 1)
        assert d3n["bias_free_rank1_residual"] < 1e-6
    # the trained bias-free network cannot beat the bias-free optimum on its own training set
    assert d5n["train_mse_bias_free"] >= d5n["train_mse_bias_free_optimum"] * (1 - 1e-4)
    assert d5n["edge_step_bias_free_optimum"] < 1


def test_d2_integration_measures_separate_area_from_radius_codes():
    radii = test_radii(65, size=64).numpy().astype(float)
    area = np.pi * radii**2
    assert d2.growth_exponent(area + 3.0, radii) == pytest.approx(2.0, abs=1e-9)
    assert d2.growth_exponent(-(radii + 1.0), radii) == pytest.approx(1.0, abs=1e-9)  # sign-free, monotone
    assert math.isnan(d2.growth_exponent(np.zeros(65), radii))
    ring = torch.zeros(1, 64, 64)
    rho = torch.from_numpy(pixel_radii(64))
    ring[0][(rho > 15) & (rho <= 16)] = 1.0  # an encoder that reads the disk's edge only
    assert d2.disk_uniformity(ring, 16.0) < 0.5
    assert d2.disk_uniformity(torch.ones(1, 64, 64), 16.0) == pytest.approx(1.0)


def test_official_comparison_is_present_when_the_weights_are():
    pytest.importorskip("h5py")
    from geoae.models import official_model_path

    if official_model_path() is None:
        pytest.skip("authors' weights not available")
    from geoae.experiments.common import mse_per_image

    model, why = d1.official_model()
    assert why == "" and model is not None
    mse = mse_per_image(model, d1.official_inputs(torch.tensor([6.0, 12.0, 24.0])))
    assert mse.shape == (3,)
    assert np.all(mse < 5e-3)  # the README's measurement: ~1e-3 to 3e-3 for r <= 30


def test_missing_official_weights_are_skipped_with_a_reason(monkeypatch):
    import geoae.models

    monkeypatch.setattr(geoae.models, "official_model_path", lambda: None)
    model, why = d1.official_model()
    assert model is None and "not found" in why


def test_homogeneity_error_separates_bias_free_from_biased():
    z = torch.linspace(0.1, 3.0, 7)[:, None]
    free = build_model(ModelConfig(bias=False), seed=1)
    assert d3.homogeneity_error(free.decode, z) < 1e-5
    assert d3.homogeneity_error(d3.float64_decoder(free), z.double()) < 1e-12
    biased = build_model(ModelConfig(bias=True), seed=1)
    with torch.no_grad():
        for layer in biased.conv_layers():
            layer.bias.fill_(0.1)
    assert d3.homogeneity_error(biased.decode, z) > 1e-3


def test_rank1_residual_known_answers():
    u, v = np.random.default_rng(0).normal(size=(2, 20))
    tail, frob, s = d3.rank1_residual(np.outer(u, v))
    assert tail < 1e-28 and frob < 1e-14 and s[0] == pytest.approx(np.linalg.norm(u) * np.linalg.norm(v))
    tail, frob, _ = d3.rank1_residual(np.eye(4))
    assert tail == pytest.approx(0.75) and frob == pytest.approx(math.sqrt(0.75))
    assert math.isnan(d3.rank1_residual(np.zeros((3, 5)))[0])


def test_code_statistics_of_an_exact_integrator():
    radii = test_radii(33, size=64).numpy().astype(float)
    area = render_disks(radii, size=64).double().sum((1, 2, 3)).numpy()
    stats = d2.code_statistics(3.0 * area + 1.0, radii, area)
    assert stats["spearman"] == pytest.approx(1.0)
    assert stats["r2_area"] == pytest.approx(1.0) and stats["r2_radius"] < stats["r2_area"]
    assert all(math.isnan(v) for v in d2.code_statistics(np.ones(33), radii, area).values())


def test_gradient_map_of_the_integrating_encoder_is_one_everywhere():
    from geoae.models import IntegratingEncoder

    enc = IntegratingEncoder(64)
    grads = d2.gradient_maps(enc, render_disks(torch.tensor([5.0, 20.0]), size=64) + 0.1)  # all pre-activations > 0
    assert torch.allclose(grads, torch.ones_like(grads))
    stats = d2.gradient_statistics(grads)
    assert stats["positive_fraction"] == pytest.approx(1.0) and stats["min_cosine"] == pytest.approx(1.0)
    assert math.isnan(d2.gradient_statistics(torch.zeros(2, 1, 4, 4))["min_cosine"])


def test_edge_step_of_exact_and_flat_disks():
    radii = torch.tensor([4.0, 10.5, 27.0])
    assert d5.edge_step(render_disks(radii, size=64), radii.numpy()) == pytest.approx(1.0, abs=1e-12)
    assert d5.edge_step(torch.full((3, 1, 64, 64), 0.7), radii.numpy()) == pytest.approx(0.0)
    assert math.isnan(d5.edge_step(render_disks(radii, size=64), radii.numpy(), r_range=(40, 50)))


def test_registry_lists_every_experiment_module():
    ids = [e.id for e in registry.EXPERIMENTS]
    assert len(set(ids)) == len(ids)
    for exp in registry.EXPERIMENTS:
        module = exp.load()
        assert module.ID == exp.id and exp.kind in ("claim", "theorem", "factors")
        assert isinstance(module.STAGES, tuple) and callable(module.analyse)
        assert module.PAPER and module.CLAIM


def test_stages_see_the_runs_of_earlier_stages(tmp_path, monkeypatch):
    """A later stage is listed from the finished runs of the earlier ones (D7's λ search, then its main runs)."""
    from geoae.experiments import common, runner

    seen = []

    def first(ctx, done):
        return {"a": common.disk_config(ctx, seed=0)}

    def second(ctx, done):
        seen.append(sorted(done))
        return {"b": common.disk_config(ctx, seed=int(done["a"].config.seed) + 1)}

    fake = type("M", (), {"STAGES": (first, second)})
    monkeypatch.setattr(registry.Experiment, "load", lambda self: fake)
    ctx = Context(profile="tiny", seeds=(0,), out=tmp_path / "X", runs=tmp_path / "runs")
    done, errors = runner.train_stages(["D1"], {"D1": ctx}, progress=False)
    assert errors == {} and seen == [["a"]]
    assert done["D1"]["b"].config.seed == 1 and done["D1"]["a"].metrics["train_mse"] > 0


def _mtimes(out):
    return {i: (out / i / "iclr2018" / "results.json").stat().st_mtime_ns for i in ("D1", "D2")}


def test_reproduce_writes_report_and_does_not_redo(tmp_path):
    assert reproduce("tiny", only=["D1", "D2"], out=tmp_path, progress=False, recipes="iclr2018") == 0
    md = (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.html").exists()
    for exp_id in ("D1", "D2"):
        verdict = json.loads((tmp_path / exp_id / "iclr2018" / "results.json").read_text())["verdict"]
        assert f"## {exp_id}:" in md and f"| {exp_id} |" in md
        assert verdict in VERDICTS
    assert md.count("**Our result. Verdict: ") == 2
    before = _mtimes(tmp_path)
    assert reproduce("tiny", only=["D1", "D2"], out=tmp_path, progress=False) == 0
    assert _mtimes(tmp_path) == before


def test_failing_experiment_is_reported_while_the_other_runs(tmp_path, monkeypatch):
    def boom(ctx, runs):
        raise RuntimeError("analysis exploded")

    monkeypatch.setattr(d1, "analyse", boom)
    assert reproduce("tiny", only=["D1", "D2"], out=tmp_path, progress=False, recipes="iclr2018") == 1
    rec1 = json.loads((tmp_path / "D1" / "iclr2018" / "results.json").read_text())
    rec2 = json.loads((tmp_path / "D2" / "iclr2018" / "results.json").read_text())
    assert rec1["status"] == "failed" and "analysis exploded" in rec1["error"]
    assert rec2["status"] == "ok"
    md = (tmp_path / "report.md").read_text()
    assert "Verdict: FAILED" in md and "analysis exploded" in md
    assert f"**Our result. Verdict: {rec2['verdict']}.**" in md


def test_same_seeds_give_the_same_numbers(tmp_path):
    """Determinism: two independent reproductions (separate run directories) report identical numbers."""
    numbers = []
    for name in ("first", "second"):
        assert reproduce(profile="tiny", only=["D2", "D5"], out=tmp_path / name, seeds=1, progress=False,
                         recipes="released") == 0
        numbers.append([json.loads((tmp_path / name / i / "released" / "results.json").read_text())["numbers"]
                        for i in ("D2", "D5")])
    assert numbers[0] == numbers[1]
