"""Experiments beyond the paper (X1–X4) and the data options they need: radius densities, shapes, 1-D intervals."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from geoae import theory
from geoae.data import DiskData, _render_area, _render_ellipse, make_disks, radius_density, render_disks, sample_radii
from geoae.datasets import DiskFactors
from geoae.experiments import beyond, registry, x1, x2, x3, x4
from geoae.experiments.common import Context, disk_config
from geoae.experiments.p2 import dirac_config
from geoae.experiments.runner import reproduce
from geoae.models import ModelConfig
from geoae.official import keras63_config
from geoae.train import TrainConfig

R = 32.0


# ------------------------------------------------------------------------------------- data: validation
@pytest.mark.parametrize("kwargs, needle", [
    ({"density": "gamma"}, "density='gamma' is not one of 'uniform', 'area', 'small'"),
    ({"shape": "triangle"}, "shape='triangle' is not one of 'disk', 'square', 'ellipse'"),
    ({"ndim": 3}, "ndim must be an integer in [1, 2]"),
    ({"ndim": 1, "shape": "square"}, "shape='square' needs ndim=2"),
    ({"shape": "ellipse", "rendering": "gaussian"}, "not available for shape='ellipse'"),
    ({"fresh": True, "density": "area"}, "fresh=True draws uniform 2-D disks"),
    ({"fresh": True, "ndim": 1}, "fresh=True draws uniform 2-D disks"),
])
def test_disk_options_are_validated(kwargs, needle):
    with pytest.raises(ValueError) as err:
        DiskData(n=10, **kwargs)
    assert needle in str(err.value)


def test_disk_options_are_validated_by_the_generators():
    with pytest.raises(ValueError, match="density='x' is not one of"):
        sample_radii(3, density="x", seed=0)
    with pytest.raises(ValueError, match="shape='ring' is not one of"):
        make_disks(3, shape="ring", seed=0)
    with pytest.raises(ValueError, match="needs ndim=2"):
        render_disks([1.0], shape="ellipse", ndim=1)
    with pytest.raises(ValueError, match="density='x' is not one of"):
        radius_density("x", R)
    with pytest.raises(ValueError, match="DiskFactors covers uniform 2-D disks"):
        DiskFactors(DiskData(n=10, shape="square"))
    with pytest.raises(ValueError, match="data.density='x' is not one of"):
        TrainConfig.from_dict(TrainConfig().to_dict() | {"data": {"kind": "disks", "n": 10, "density": "x"}})


def test_intervals_need_the_1d_network():
    with pytest.raises(ValueError, match="does not fit the data"):
        TrainConfig(data=DiskData(n=10, ndim=1)).validate()
    TrainConfig(model=ModelConfig(arch="paper1d", size=64), data=DiskData(n=10, ndim=1)).validate()


# ---------------------------------------------------------------------------------- data: ground truth
def ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov–Smirnov statistic of samples u against U(0, 1)."""
    return float(stats.kstest(u, "uniform").statistic)


def test_density_area_makes_the_areas_uniform():
    n = 20000
    tol = 1.95 / math.sqrt(n)  # the KS critical value at the 0.1 % level
    area = sample_radii(n, density="area", seed=1).double().numpy()
    assert ks_uniform((area / R) ** 2) < tol  # πr² / πR² ~ U(0, 1)
    small = sample_radii(n, density="small", seed=2).double().numpy()
    assert ks_uniform((1 - small / R) ** 2) < tol  # p ∝ R − r: CDF 1 − (1 − r/R)²
    uniform = sample_radii(n, seed=3).double().numpy()
    assert ks_uniform(uniform / R) < tol and ks_uniform((uniform / R) ** 2) > 10 * tol  # the control fails


@pytest.mark.parametrize("density", ["uniform", "area", "small"])
def test_densities_respect_the_range_and_the_holes(density):
    r = sample_radii(5000, r_min=2.0, r_max=30.0, exclude=((11, 18),), density=density, seed=4).double().numpy()
    assert r.min() >= 2.0 and r.max() <= 30.0 and not np.any((r > 11) & (r < 18))


def test_uniform_draws_are_those_of_earlier_versions():
    r = sample_radii(1000, seed=3, exclude=((11, 18),))
    assert hashlib.sha256(r.numpy().tobytes()).hexdigest()[:16] == "2041360606dd311f"
    assert torch.equal(sample_radii(100, seed=7), sample_radii(100, density="uniform", seed=7))


def test_square_pixel_area_is_side_squared():
    r = torch.tensor([0.0, 0.3, 3.3, 10.7, 25.25, 32.0])
    for rendering, tol in (("area", 1e-4), ("gaussian", 0.05)):
        sq = render_disks(r, shape="square", rendering=rendering).double()
        np.testing.assert_allclose(sq.sum((1, 2, 3)).numpy()[:-1], (2 * r.double().numpy()[:-1]) ** 2, rtol=tol,
                                   atol=tol)
    assert float(render_disks(torch.tensor([32.0]), shape="square").min()) == 1.0  # fills the image exactly
    binary = render_disks(torch.tensor([3.0]), shape="square", rendering="binary")
    assert int(binary.sum()) == 36  # centres at ±0.5, ±1.5, ±2.5 on each axis


def test_ellipse_rendering_is_exact():
    r = np.array([0.7, 5.2, 13.0, 20.0])
    # aspect 1: the ellipse machinery gives the disk's exact rendering
    np.testing.assert_allclose(_render_ellipse(r, 64, "area", 1.0), _render_area(r, 64), atol=1e-12)
    el = render_disks(torch.tensor(r), shape="ellipse").double()
    np.testing.assert_allclose(el.sum((1, 2, 3)).numpy(), np.pi * 0.5 * r**2, rtol=1e-5)
    # against 64 × 64 supersampling of one pixel grid (error of the sampling itself ≲ 1/64 per edge pixel)
    s = (np.arange(64) + 0.5) / 64 - 0.5
    x = np.arange(64) - 31.5
    X = x[None, :, None, None] + s[None, None, None, :]
    Y = x[:, None, None, None] + s[None, None, :, None]
    sup = ((X**2 + (Y / 0.5) ** 2) <= 13.0**2).mean((2, 3))
    assert np.abs(sup - el[2, 0].numpy()).max() < 4e-3


def test_intervals_are_centred_balls_in_1d():
    r = torch.tensor([0.0, 0.25, 3.3, 17.5, 32.0])
    sig = render_disks(r, ndim=1)
    assert sig.shape == (5, 1, 64)
    np.testing.assert_allclose(sig.double().sum((1, 2)).numpy(), 2 * r.double().numpy(), atol=1e-5)
    assert torch.equal(sig, sig.flip(-1))  # centred
    binary = render_disks(torch.tensor([3.0]), ndim=1, rendering="binary")
    assert int(binary.sum()) == 6
    x, radii = DiskData(n=7, ndim=1, density="area").make(seed=0)
    assert x.shape == (7, 1, 64) and radii.shape == (7,)


# ---------------------------------------------------------------------------------------- config digests
DIGESTS = {  # the run digests of the paper's configs before the options existed: run names must not change
    "quick-disk-bias": "773eff95b2da", "quick-disk-free": "d117d09396cc", "quick-disk-hole": "1554c1ed451b",
    "quick-dirac1": "346ae1116fd5", "quick-dirac2": "45b7547da299", "paper-disk-bias": "fc3f94d14d76",
    "paper-disk-free": "4ccd936ce673", "paper-disk-hole": "cd702d782dc2", "paper-dirac1": "2e26428b0fcd",
    "paper-dirac2": "06150c5d226d", "tiny-disk-bias": "59de579c061b", "tiny-disk-free": "1ad767d3ed45",
    "tiny-disk-hole": "8fc1eb490414", "tiny-dirac1": "7e7089182add", "tiny-dirac2": "4fb6fcd667f3",
    "keras63": "0577affe2a03", "default": "48617a973a41",
}


def test_existing_config_digests_are_unchanged():
    found = {"keras63": keras63_config().digest(), "default": TrainConfig().digest()}
    for prof in ("quick", "paper", "tiny"):
        ctx = Context(prof, (0,), None, None)
        found |= {f"{prof}-disk-bias": disk_config(ctx, seed=1).digest(),
                  f"{prof}-disk-free": disk_config(ctx, seed=2, bias=False).digest(),
                  f"{prof}-disk-hole": disk_config(ctx, seed=0, exclude=((11, 18),), rendering="binary").digest(),
                  f"{prof}-dirac1": dirac_config(ctx, 1, 0).digest(),
                  f"{prof}-dirac2": dirac_config(ctx, 2, 1, blur=1.0).digest()}
    assert found == DIGESTS
    assert not {"density", "shape", "ndim"} & set(TrainConfig().to_dict()["data"])


def test_new_options_round_trip_and_change_the_digest():
    ctx = Context("quick", (0,), None, None)
    base = disk_config(ctx, seed=0, bias=False)
    assert beyond.beyond_config(ctx, 0) == base  # uniform disks: D3/D4's runs, shared
    seen = {base.digest()}
    for kw in ({"density": "area"}, {"density": "small"}, {"shape": "square"}, {"shape": "ellipse"}, {"ndim": 1}):
        cfg = beyond.beyond_config(ctx, 0, **kw)
        d = json.loads(json.dumps(cfg.to_dict()))
        assert TrainConfig.from_dict(d) == cfg and set(kw) <= set(d["data"])
        seen.add(cfg.digest())
    assert len(seen) == 6
    assert beyond.beyond_config(ctx, 0, ndim=1).model.arch == "paper1d"


# ------------------------------------------------------------------------------------ the rule and measures
def test_verdict_rule_gives_each_verdict():
    seeds = 3
    ok = [1.01] * seeds
    assert beyond.verdict_of(ok, [([0.01, 0.02, 0.03], 0.04)]) == "confirmed"
    assert beyond.verdict_of([1.01, 1.02, 1.07], [([0.01] * 3, 0.04)]) == "partly"  # one seed's loss, mean fine
    assert beyond.verdict_of(ok, [([0.01, 0.01, 0.05], 0.04)]) == "partly"  # one seed's distance
    assert beyond.verdict_of(ok, [([0.05, 0.05, 0.03], 0.04)]) == "not reproduced"
    assert beyond.verdict_of([1.2] * 3, [([0.0] * 3, 0.04)]) == "not reproduced"
    assert beyond.verdict_of(ok, [([0.01] * 3, 0.04), ([0.1, 0.1, 0.1], [0.2, 0.3, 0.1])]) == "partly"  # per seed
    with pytest.raises(ValueError, match="one value per seed"):
        beyond.verdict_of(ok, [([0.01], 0.04)])
    assert beyond.worst(["confirmed", "partly", "confirmed"]) == "partly"
    assert beyond.worst(["confirmed", "not reproduced"]) == "not reproduced"


def test_distance_and_radial_fit():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    assert beyond.dist(a, b) == pytest.approx(beyond.dist(b, a)) == pytest.approx(beyond.dist(-3 * a, b))
    assert beyond.dist(a, 2 * a) < 1e-7 and beyond.dist(np.zeros(4), np.ones(4)) == 1.0
    airy = theory.f_hat_image(64, R)
    assert beyond.dist(airy, beyond.radial_fit(airy)) < 1e-3  # a radial image is fitted (X3's control)
    assert beyond.dist(x3.prediction_image("square"), beyond.radial_fit(x3.prediction_image("square"))) > 0.1


def dense_optimum(radii, **kw) -> np.ndarray:
    """The discrete optimum of many shapes at the given radii (the continuum limit of a training set)."""
    return theory.discrete_optimum(render_disks(torch.tensor(radii), **kw)).profile


def test_predictions_are_the_optimum_of_dense_data():
    """The continuous predictions of X1–X3 against the rank-1 SVD of 200 quantile-spaced shapes (no training):
    within 0.005, while the alternatives are ≥ 0.08 away."""
    u = (np.arange(200) + 0.5) / 200
    x, cosine, airy1 = x1.predictions()
    o = theory.discrete_optimum(render_disks(torch.tensor(u * R), ndim=1)[:, :, None, :]).profile.ravel()
    assert beyond.dist(o, cosine) < 1e-3 and beyond.dist(o, airy1) > 0.08
    airy = theory.f_hat_image(64, R)
    for density, radii in (("small", R * (1 - np.sqrt(1 - u))), ("area", R * np.sqrt(u))):  # inverse CDFs
        o = dense_optimum(radii)
        pred = x2.prediction_image(density, n=400)
        assert beyond.dist(o, pred) < 5e-3 and beyond.dist(o, airy) > 0.08
    for shape in ("square", "ellipse"):
        o = dense_optimum(u * R, shape=shape)
        assert beyond.dist(o, x3.prediction_image(shape)) < 5e-3 and beyond.dist(o, beyond.radial_fit(o)) > 0.15


def test_x4_theory_and_cost():
    prof, lam = x4.agreement(3, 400)
    assert prof < 1e-4 and lam < 1e-4
    assert x4.macs(2) == 305924  # the paper64 network's forward MACs (spec)
    c = x4.cost_3d(3000, 3)
    assert 50 < c["mac_ratio"] < 100 and c["step_s"] == pytest.approx(x4.STEP_2D_S * c["mac_ratio"])


# --------------------------------------------------------------------------------------- end to end (tiny)
EXPECTED = {
    "X1": {"loss_over_optimum_max", "learned_vs_cosine_max", "cosine_vs_airy", "learned_vs_optimum_max",
           "optimum_vs_cosine_max", "learned_vs_airy_min", "corr_z_h_min", "loss_over_optimum_mean",
           "learned_vs_cosine_mean", "iterations"},
    "X2": {f"{k}_small" for k in ("learned_vs_prediction_max", "prediction_vs_airy", "loss_over_optimum_max",
                                  "learned_vs_optimum_max", "optimum_vs_prediction_max", "learned_vs_airy_min",
                                  "corr_z_h_min")}
    | {"control_uniform_learned_vs_airy_max", "control_uniform_learned_vs_small_min", "iterations"},
    "X3": {f"{k}_square" for k in ("learned_vs_optimum_max", "optimum_vs_radial_min", "learned_vs_prediction_max",
                                   "prediction_vs_radial", "prediction_vs_radial_airy", "loss_over_optimum_max",
                                   "optimum_vs_prediction_max", "learned_vs_radial_min", "corr_z_h_min")}
    | {"iterations"},
    "X4": {"k3_profile_rel_error", "k3_energy_rel_error", "k1_profile_rel_error", "k1_energy_rel_error",
           "k2_profile_rel_error", "k2_energy_rel_error", "mac_ratio_3d_over_2d", "est_3d_step_s", "est_3d_run_h",
           "est_3d_experiment_wall_h", "est_3d_training_set_gib", "est_3d_discrete_optimum_gmac"},
}


def test_beyond_experiments_run_tiny_end_to_end(tmp_path):
    ids = ["X1", "X2", "X3", "X4"]
    assert all(not registry.BY_ID[i].paper_claim for i in ids)
    assert reproduce("tiny", only=ids, out=tmp_path, progress=False) == 0
    for i in ids:
        rec = json.loads((tmp_path / i / "results.json").read_text())
        assert rec["status"] == "ok" and rec["paper_claim"] is False, rec.get("error")
        assert set(rec["numbers"]) == EXPECTED[i]
        assert all(math.isfinite(v) for v in rec["numbers"].values())
        assert rec["verdict"] in ("confirmed", "partly", "not reproduced") and "confirmed if" in rec["rule"]
        assert all((tmp_path / i / f).is_file() for f in rec["figures"])
    x1n = json.loads((tmp_path / "X1" / "results.json").read_text())["numbers"]
    assert x1n["cosine_vs_airy"] == pytest.approx(beyond.dist(*x1.predictions()[1:]))
    assert x1n["loss_over_optimum_max"] >= 1.0 - 1e-6  # the discrete optimum is a lower bound
    x4rec = json.loads((tmp_path / "X4" / "results.json").read_text())
    assert x4rec["verdict"] == "confirmed" and x4rec["numbers"]["k3_profile_rel_error"] < 1e-4
    report = (tmp_path / "report.md").read_text()
    assert report.count("**Our prediction (beyond the paper).**") == 4 and "Paper's claim" not in report
    assert "Beyond the paper: the experiments below test our own predictions" in report


def test_beyond_experiments_take_three_seeds_in_the_quick_profile():
    from geoae.experiments.runner import DEFAULT_SEEDS, seed_count

    assert [seed_count(i, "quick") for i in ("X1", "X2", "X3")] == [3, 3, 3]
    assert seed_count("D1", "quick") == DEFAULT_SEEDS["quick"] and seed_count("X1", "paper") == DEFAULT_SEEDS["paper"]
    assert seed_count("X1", "quick", seeds=1) == 1  # an explicit --seeds wins
