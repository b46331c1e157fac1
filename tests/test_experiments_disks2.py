"""D4, D6, D7 end to end on the tiny profile, and their analysis helpers against known answers."""

import json
import math

import numpy as np
import pytest
import torch

from geoae.experiments import d4, d6, d7
from geoae.experiments.common import VERDICTS, Context, pearson, spearman
from geoae.experiments.runner import run_experiment


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


@pytest.mark.parametrize("exp_id", ["D4", "D6", "D7"])
def test_tiny_end_to_end(exp_id, shared_runs):
    out = shared_runs / exp_id
    rec = run_experiment(exp_id, Context(profile="tiny", seeds=(0,), out=out, runs=shared_runs / "runs"),
                         progress=False)
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["verdict"] in VERDICTS
    assert rec["numbers"] and set(rec["numbers"]) <= set(rec["descriptions"])
    assert all(isinstance(v, int | float) for v in rec["numbers"].values())
    assert rec["rule"] and rec["figures"]
    for name in rec["figures"]:
        assert (out / name).stat().st_size > 1000
    saved = json.loads((out / "results.json").read_text())
    assert saved["id"] == exp_id and saved["verdict"] == rec["verdict"]


def test_d7_tiny_search_table_and_main_runs(shared_runs):
    """The λ search table lists every candidate with one chosen λ per regulariser."""
    ctx = Context(profile="tiny", seeds=(0,), out=shared_runs / "D7", runs=shared_runs / "runs")
    path = ctx.out / "results.json"  # written by test_tiny_end_to_end[D7] when it ran first
    rec = json.loads(path.read_text()) if path.exists() else run_experiment("D7", ctx)
    assert rec["status"] == "ok", rec.get("error")
    search = next(t for t in rec["tables"] if t["title"].startswith("λ search"))
    regs = d7.regularisers(ctx)
    assert len(search["rows"]) == 1 + (len(regs) - 1) * len(d7.GRID_FACTORS)
    for reg in regs:
        assert sum(row[4] for row in search["rows"] if row[0] == reg) == 1
    configs = [c for c in (d7.configs(ctx)) if c.seed != d7.SEARCH_SEED]  # all trained: no training here
    assert [c.regulariser for c in configs] == list(regs)
    assert configs[0].to_dict() == d6.configs(ctx)[0].to_dict()  # `none` is D6's hole run


# ------------------------------------------------------------------------------------------- D7 helpers


def test_select_lambda_picks_largest_within_tolerance():
    lams = [1e-4, 1e-3, 1e-2]
    assert d7.select_lambda(lams, [1.0, 1.4, 3.0], reference_mse=1.0) == 1e-3
    assert d7.select_lambda(lams, [1.0, 1.2, 1.5], reference_mse=1.0) == 1e-2  # ≤ 1.5× counts
    assert d7.select_lambda(lams[::-1], [3.0, 1.4, 1.0], reference_mse=1.0) == 1e-3  # order-free
    assert d7.select_lambda(lams, [2.0, 5.0, 9.0], reference_mse=1.0) == 1e-4  # none fits: smallest
    assert d7.select_lambda(lams, [0.5, 0.6, 2.0], reference_mse=0.5, tolerance=1.2) == 1e-3


def test_lambda_grid_and_rounding():
    assert d7.round_sig(0.0123) == 0.01 and d7.round_sig(4.56e-7) == 5e-7 and d7.round_sig(0.0) == 0.0
    grid = d7.lambda_grid(1e-3, {"l2_all": 10.0, "locality": 1e4})
    assert grid["l2_all"] == [1e-5, 1e-4, 1e-3]
    assert grid["locality"] == [1e-8, 1e-7, 1e-6]


def test_spearman_and_pearson_handle_constant_inputs():
    r = np.linspace(0, 32, 20)
    assert spearman(r**2, r) == pytest.approx(1.0)
    assert spearman(-np.exp(r / 8), r) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.zeros(20), r))


def test_regularisers_per_profile():
    ctx = Context(profile="quick", seeds=(0,), out=None, runs=None)
    assert d7.regularisers(ctx) == ("none", "locality", "l2_all", "l2_encoder")
    assert "contractive" in d7.regularisers(Context(profile="paper", seeds=(0,), out=None, runs=None))


# ------------------------------------------------------------------------------------------- D6 helpers


def test_hole_and_beyond_masks():
    r = np.array([0.0, 10.9, 11.0, 11.5, 17.99, 18.0, 24.0, 24.5, 32.0])
    assert d6.in_hole(r).tolist() == [False, False, False, True, True, False, False, False, False]
    assert d6.beyond(r).tolist() == [False] * 7 + [True, True]
    mse = np.array([1.0, 1.0, 1.0, 8.0, 8.0, 1.0, 1.0, 1.0, 1.0])
    assert d6.split_ratio(mse, d6.in_hole(r)) == (8.0, 1.0, 8.0)


def test_hole_radii_are_never_trained_on():
    images, radii = d6.configs(Context(profile="tiny", seeds=(0,), out=None, runs=None))[0].data.make(None, 0)
    assert not d6.in_hole(radii.numpy()).any()


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
