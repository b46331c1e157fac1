"""D4, D6, D7 end to end on the tiny profile, and their analysis helpers against known answers."""

import json
import math

import numpy as np
import pytest
import torch

from geoae.experiments import d4, d6, d7
from geoae.experiments.common import VERDICTS, Context, pearson, spearman
from geoae.experiments.runner import run_experiment
from geoae.models import ModelConfig, build_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run faster on one thread, and much faster when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("disks2")


@pytest.fixture(scope="module")
def records(shared_runs):
    return {exp_id: run_experiment(exp_id, Context(profile="tiny", seeds=(0,), out=shared_runs / exp_id,
                                                   runs=shared_runs / "runs"), progress=False)
            for exp_id in ("D4", "D6", "D7")}


@pytest.mark.parametrize("exp_id", ["D4", "D6", "D7"])
def test_tiny_end_to_end(exp_id, shared_runs, records):
    out = shared_runs / exp_id
    rec = records[exp_id]
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["verdict"] in VERDICTS
    assert rec["numbers"] and set(rec["numbers"]) <= set(rec["descriptions"])
    assert all(isinstance(v, int | float) for v in rec["numbers"].values())
    assert rec["rule"] and rec["control"] and rec["figures"]
    for name in rec["figures"]:
        assert (out / name).stat().st_size > 1000
    saved = json.loads((out / "results.json").read_text())
    assert saved["id"] == exp_id and saved["verdict"] == rec["verdict"]


def test_tiny_numbers_of_d4(records):
    n = records["D4"]["numbers"]
    assert n["loss_over_optimum_max"] >= 1 - 1e-4  # the discrete optimum is a lower bound
    assert 0 <= n["optimum_vs_airy"] < 1 and 0 <= n["profile_vs_airy_max"] <= 1 + 1e-9
    assert n["iterations"] == 4


def test_tiny_numbers_of_d6(records):
    n = records["D6"]["numbers"]
    for case in ("hole", "beyond"):
        assert n[f"{case}_mse_vs_control"] > 0 and n[f"{case}_radius_error"] >= 0
        assert n[f"{case}_seeds_failing"] in (0, 1)
    rows = next(t for t in records["D6"]["tables"])["rows"]
    assert {r[0] for r in rows} == {"hole", "beyond"}
    for r in rows:  # ratio = MSE / control MSE, and the "fails" column follows the rule
        assert r[4] == pytest.approx(r[2] / r[3])
        assert r[7] == (r[4] >= d6.MSE_FAIL and r[5] >= d6.RADIUS_FAIL)


def test_tiny_numbers_of_d7(records):
    rec = records["D7"]
    n = rec["numbers"]
    assert n["rescaling_output_change"] < 1e-9  # the rescaled network draws the same outputs …
    assert n["rescaling_penalty_ratio"] == pytest.approx(d7.RESCALE**2)  # … at s² of the encoder penalty
    subs = dict(next(t for t in rec["tables"] if t["title"] == "Sub-claims")["rows"])
    assert set(subs.values()) <= {"holds", "fails", "inconclusive"}
    l2_all = d7.combine(subs["l2_all lets z grow during training"], subs["l2_all hurts (hole or training MSE)"])
    held = [subs["locality fails with the hole"], l2_all, subs["l2_encoder generalises best"]]
    assert n["subclaims_holding"] == sum(h == "holds" for h in held)
    assert rec["verdict"] == d7.verdict_of(held)


def test_d7_tiny_search_table_and_main_runs(shared_runs, records):
    """The λ search lists every candidate with one chosen λ per regulariser, at the main runs' budget."""
    ctx = Context(profile="tiny", seeds=(0,), out=shared_runs / "D7", runs=shared_runs / "runs")
    rec = records["D7"]
    search = next(t for t in rec["tables"] if t["title"].startswith("λ search"))
    regs = d7.regularisers(ctx)
    assert len(search["rows"]) == 1 + sum(len(d7.lambda_grid(ctx, r)) for r in regs[1:])
    for reg in regs:
        assert sum(row[6] for row in search["rows"] if row[0] == reg) == 1
    configs = rec["configs"]
    search_iters = {c["iterations"] for k, c in configs.items() if k.startswith("search/")}
    main_iters = {c["iterations"] for k, c in configs.items() if k.split("/")[0] in regs}
    assert search_iters == main_iters == {4}  # λ chosen at the budget it is used at
    assert configs["none/s0"] == d6.runs(ctx)["hole/s0"].to_dict()  # `none` is D6's hole run
    assert configs["l2_all/s0"]["reg_weight"] in d7.lambda_grid(ctx, "l2_all")


# ------------------------------------------------------------------------------------------- D7 helpers


def test_select_lambda_picks_largest_that_fits():
    lams = [1e-4, 1e-3, 1e-2]  # ratios to the unregularised runs, means over the search seeds
    assert d7.select_lambda(lams, [1.0, 1.2, 3.0], [1, 1, 1]) == (1e-3, True)
    assert d7.select_lambda(lams, [1.0, 1.2, 1.25], [1, 1, 1]) == (1e-2, True)  # ≤ 1.25 counts
    assert d7.select_lambda(lams, [1.0, 1.0, 1.0], [1, 2, 2]) == (1e-4, True)  # the training fit too
    assert d7.select_lambda(lams[::-1], [3.0, 1.2, 1.0], [1, 1, 1]) == (1e-3, True)  # order-free
    assert d7.select_lambda(lams, [2.0, 5.0, 9.0], [1, 1, 1]) == (1e-4, False)  # none fits


def test_lambda_grids_and_search_seeds_per_profile():
    paper = Context(profile="paper", seeds=(0, 1, 2, 3, 4), out=None, runs=None)
    quick = Context(profile="quick", seeds=(0, 1), out=None, runs=None)
    for reg in d7.regularisers(paper)[1:]:
        assert d7.lambda_grid(paper, reg) == (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
        assert len(d7.lambda_grid(quick, reg)) == 4
    assert d7.search_seeds(paper) == (0, 1, 2) and d7.search_seeds(quick) == (0, 1)
    runs = d7.search_runs(paper)
    assert sum(k.startswith("search/") for k in runs) == 3 * 5 * 3  # regularisers × λ × search seeds


def test_paired_outcomes_and_the_verdict():
    from geoae.experiments.common import seed_interval, side_of

    assert side_of(seed_interval([0.1, 0.2, 0.15, 0.12, 0.18]), "above") == "holds"
    assert side_of(seed_interval([0.1, 0.2, 0.15, 0.12, 0.18]), "below") == "fails"
    assert side_of(seed_interval([-0.1, 0.2, 0.05, -0.12, 0.18]), "above") == "inconclusive"
    assert side_of(seed_interval([1.0]), "above") == "inconclusive"  # one seed: nothing known of the spread
    lo_hi = seed_interval([1.0, 2.0, 3.0])
    assert lo_hi[0] == 2.0 and 1.0 <= lo_hi[1] < 2.0 < lo_hi[2] <= 3.0
    assert seed_interval([1.0, 2.0, 3.0]) == lo_hi  # deterministic
    assert d7.combine("holds", "holds") == "holds" and d7.combine("holds", "inconclusive") == "inconclusive"
    assert d7.combine("inconclusive", "fails") == "fails"
    assert d7.verdict_of(["holds"] * 3) == "confirmed" and d7.verdict_of(["holds", "fails", "fails"]) == "partly"
    assert d7.verdict_of(["fails"] * 3) == "not reproduced"
    assert d7.verdict_of(["fails", "inconclusive", "fails"]) == "inconclusive"


def test_z_growth_reads_the_training_history():
    class Run:
        config = type("C", (), {"iterations": 800})()
        history = [{"iteration": i, "z_abs_max": 1.0 + i / 100} for i in range(100, 900, 100)]

    assert d7.z_growth(Run()) == pytest.approx(np.mean([7.0, 8.0, 9.0]) / 2.0)  # end ÷ at N/8 = 100
    Run.history = Run.history[:2]
    assert math.isnan(d7.z_growth(Run()))


def test_rescaled_network_draws_the_same_outputs():
    model = build_model(ModelConfig(size=16), seed=3)
    with torch.no_grad():
        for layer in model.conv_layers():
            layer.bias.uniform_(-0.1, 0.1)
    x = torch.rand(5, 1, 16, 16, dtype=torch.float64)
    m = d7.rescaled(model, 0.3)
    base = model.double()
    with torch.no_grad():
        assert torch.allclose(m.decode(m.encode(x)), base.decode(base.encode(x)), atol=1e-12)
        assert torch.allclose(m.encode(x), 0.3 ** 4 * base.encode(x), atol=1e-12)


def test_gap_closed():
    assert d7.gap_closed(0.5, 1.0, 0.0) == 0.5 and d7.gap_closed(1.0, 1.0, 0.2) == 0.0
    assert d7.gap_closed(0.2, 1.0, 0.2) == pytest.approx(1.0) and math.isnan(d7.gap_closed(0.1, 0.2, 0.3))


def test_spearman_and_pearson_handle_constant_inputs():
    r = np.linspace(0, 32, 20)
    assert spearman(r**2, r) == pytest.approx(1.0)
    assert spearman(-np.exp(r / 8), r) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.zeros(20), r))


def test_regularisers_per_profile():
    ctx = Context(profile="quick", seeds=(0,), out=None, runs=None)
    assert d7.regularisers(ctx) == ("none", "locality", "l2_all", "l2_encoder")
    assert d7.regularisers(Context(profile="paper", seeds=(0,), out=None, runs=None)) == d7.regularisers(ctx)
    assert "contractive" in d7.regularisers(Context(profile="tiny", seeds=(0,), out=None, runs=None))


# ------------------------------------------------------------------------------------------- D6 helpers


def test_hole_and_beyond_masks():
    r = np.array([0.0, 10.9, 11.0, 11.5, 17.99, 18.0, 24.0, 24.5, 32.0])
    assert d6.in_hole(r).tolist() == [False, False, False, True, True, False, False, False, False]
    assert d6.beyond(r).tolist() == [False] * 7 + [True, True]


@pytest.mark.parametrize("recipe", ["iclr2018", "released", None])
def test_hole_radii_are_never_trained_on_and_follow_the_recipe(recipe):
    from geoae.recipes import DEFAULT, RECIPES

    runs = d6.runs(Context(profile="tiny", seeds=(0,), out=None, runs=None, recipe=recipe))
    images, radii = runs["hole/s0"].data.make(None, 0)
    assert not d6.in_hole(radii.numpy()).any()
    want = RECIPES[recipe or DEFAULT]
    assert runs["hole/s0"].data.rendering == want.rendering and runs["hole/s0"].model.size == want.size
    assert runs["beyond/s0"].data.r_max == d6.R_EXTRA


def test_unseen_scores_of_a_perfect_and_a_wrong_size_model():
    from geoae.data import render_disks

    radii = torch.tensor([12.0, 14.0, 16.0])
    x = render_disks(radii, size=64)

    class Fixed(torch.nn.Module):  # outputs disks of radius r + shift
        def __init__(self, shift):
            super().__init__()
            self.shift = shift

        def encode(self, x):
            return (x.flatten(1).sum(1, keepdim=True) / math.pi).sqrt()

        def decode(self, z):
            return render_disks(z[:, 0] + self.shift, size=64)

    mask = np.ones(3, bool)
    s = d6.unseen_scores(Fixed(2.0), Fixed(0.0), x, mask)
    assert s["radius_error_control"] < 1e-6 and s["radius_error_model"] == pytest.approx(2.0, abs=1e-4)
    assert s["mse_control"] < 1e-10 and s["fails"]


# ------------------------------------------------------------------------------------------- D4 helpers


def test_profile_helpers_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8))
    assert d4.relative_distance(-3.0 * x, x) == pytest.approx(0.0, abs=1e-12)  # free scale, either sign
    y = np.zeros((8, 8))
    y[0, 0] = 1.0
    x[0, 0] = 0.0
    assert d4.relative_distance(x, y) == pytest.approx(1.0)  # orthogonal
    assert d4.code_sign(np.array([-1.0, -2.0, 0.5])) == -1.0 and d4.code_sign(np.array([0.0, 1.0])) == 1.0
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))


# -------------------------------------------------------------------------------------------------- D6F


def test_d6f_varies_one_recipe_item_at_a_time():
    from geoae.experiments import d6_factors as f
    from geoae.recipes import RECIPES

    ctx = Context(profile="paper", seeds=(0, 1, 2, 3, 4), out=None, runs=None)
    runs = f.runs(ctx)
    base = {k: c for k, c in runs.items() if k.startswith("released/")}
    assert base["released/hole/s0"] == d6.runs(Context(profile="paper", seeds=(0,), out=None, runs=None,
                                                       recipe="released"))["hole/s0"]  # shared with D6
    assert len(runs) == len(f.variants()) * 2 * 3  # hole and control, 3 seeds each
    ref, other = RECIPES["released"].config("paper"), RECIPES["iclr2018"].config("paper")
    for name in f.FACTORS:
        cfg = runs[f"{name}/hole/s1"]
        changed = {key for key in ("arch", "alpha", "lr", "batch_size", "rendering", "keep")
                   if _item(cfg, key) != _item(ref, key)}
        assert len(changed) == 1 and all(_item(cfg, k) == _item(other, k) for k in changed), (name, changed)
        assert cfg.iterations * cfg.batch_size >= 640_000  # the same images as the base


def _item(cfg, key):
    return {"arch": cfg.model.arch, "alpha": cfg.model.negative_slope, "lr": cfg.lr, "batch_size": cfg.batch_size,
            "rendering": cfg.data.rendering, "keep": cfg.keep}[key]


def test_d6f_deciding_factors():
    from geoae.experiments import d6_factors as f

    fails = {"released": [True, True, True], "lr": [False, False, False], "alpha": [True, False, True],
             "batch": [False, True, False]}
    assert f.deciding_factors(fails) == ["lr"]
    assert f.deciding_factors({"released": [True, False, False], "lr": [False] * 3}) == []  # mixed base
    assert f.outcome([False, False]) == "interpolates" and f.outcome([True, True, False]) == "fails"


def test_d6f_tiny_end_to_end(tmp_path):
    rec = run_experiment("D6F", Context(profile="tiny", seeds=(0,), out=tmp_path / "D6F", runs=tmp_path / "runs"),
                         progress=False)
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["verdict"] == "measured" and len(rec["tables"][0]["rows"]) == 7
    assert (tmp_path / "D6F" / "d6f_factors.png").stat().st_size > 1000
