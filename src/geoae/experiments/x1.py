"""X1 (beyond the paper): in dimension k = 1 the optimal bias-free decoder draws a cosine arch.

The derivation of Prop. 2 in dimension k gives λ f'' + ρ^{k−1} f = 0, f'(0) = 0, f(R) = 0 (``theory``); for
k = 1 (centred intervals [−r, r], r ~ U(0, R)) its solution is the cosine arch f̂(x) = cos(π|x|/(2R)) and the
optimal code is ĥ(r) = ⟨f̂, 1_{[−r, r]}⟩ ∝ sin(πr/(2R)). We train the ``paper1d`` network of the paper's family
(bias-free, d = 1) on 1,000 signals of 64 samples (``DiskData(ndim=1)``, area rendering, R = 32) and compare
the learned D(±1), separately, with the discrete optimum of the same 1,000 signals (rank-1 SVD) and with the
cosine sampled at the 64 sample centres; the alternative it must be told apart from is the 2-D answer of D4,
the Airy profile f̂(|x|) of the same R.
"""

from __future__ import annotations

import numpy as np

from .. import theory
from ..data import render_disks, test_radii
from ..plots import label_axes, new_figure, save_figure
from . import beyond, sources
from .common import Context, Number, Result, per_seed, seed_runs
from .d4 import scale_to

ID = "X1"
TITLE = "Beyond the paper: intervals in 1-D: the bias-free decoder draws a cosine arch (k = 1)"
CLAIM = ("ICLR 2018 Prop. 2 carried to dimension k = 1: a bias-free d = 1 autoencoder trained on "
         "centred intervals of uniform half-lengths r ≤ R learns the profile f̂(x) = cos(π|x|/(2R)) and a code "
         "proportional to ĥ(r) = ⟨f̂, 1_[−r,r]⟩ ∝ sin(πr/(2R)).")
PAPER = sources.statement("X1")  # what the source says (sources.py)
CORR_OK = 0.99  # Pearson(z, ĥ) for every seed


def runs(ctx: Context, done=None) -> dict:
    """One bias-free ``paper1d`` run per seed on centred intervals."""
    return per_seed(ctx, lambda s: beyond.beyond_config(ctx, s, ndim=1), "intervals")


STAGES = (runs,)


def predictions(n: int = 64, R: float = beyond.R_TRAIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, cosine f̂(|x|), Airy f̂(|x|)) at the sample centres x = i − (n − 1)/2."""
    x = np.arange(n) - (n - 1) / 2
    return x, theory.closed_form_profile(np.abs(x), R, k=1), theory.f_hat(np.abs(x), R)


def analyse(ctx: Context, done: dict) -> Result:
    rs = seed_runs(done, "intervals")
    radii = test_radii(ctx.pick(129, 257, tiny=17), size=64)
    signals = render_disks(radii, size=64, ndim=1)
    x, cosine, airy = predictions()
    ms = [beyond.measure(run, signals, cosine, airy) for run in rs]

    def col(key):
        return np.array([m[key] for m in ms], dtype=np.float64)

    sep = beyond.dist(cosine, airy)
    loss, lp, corr = col("loss_ratio"), col("learned_vs_prediction"), col("corr_z_h")
    verdict = beyond.verdict_of(loss, [(lp, sep / 2), (1 - corr, 1 - CORR_OK)])
    rule = beyond.rule_text([f"the learned profile's distance to the cosine < half the distance between the cosine "
                             f"and the Airy profile (= {sep / 2:.4f})",
                             f"Pearson(z, ĥ) > {CORR_OK} (z ∝ the optimal code)"])
    numbers = {
        "loss_over_optimum_max": Number(float(loss.max()), "worst seed: final training MSE ÷ the discrete optimum's "
                                        "(rank-1 SVD of the run's own 1,000 signals; ≥ 1)"),
        "learned_vs_cosine_max": Number(float(lp.max()), "worst seed: dist(D(±1), cos(π|x|/2R)) = sin of the angle "
                                        "between the learned profile and the cosine over the 64 samples"),
        "cosine_vs_airy": Number(sep, "dist(cosine, Airy f̂(|x|)): how far the prediction is from the alternative "
                                 "(the bound of the rule is half of it)"),
        "learned_vs_optimum_max": Number(float(col("learned_vs_optimum").max()), "worst seed: dist(D(±1), the "
                                         "discrete optimum's profile): training alone"),
        "optimum_vs_cosine_max": Number(float(col("optimum_vs_prediction").max()), "worst seed: dist(discrete "
                                        "optimum, cosine): the sampling and the finite set of radii alone"),
        "learned_vs_airy_min": Number(float(col("learned_vs_alternative").min()), "best seed: dist(D(±1), Airy)"),
        "corr_z_h_min": Number(float(corr.min()), "worst seed: Pearson correlation of the sign-fixed code with "
                               "ĥ(r) = ⟨cosine, x⟩ on evenly spaced test intervals"),
        "loss_over_optimum_mean": Number(float(loss.mean()), "mean over seeds of the loss ratio"),
        "learned_vs_cosine_mean": Number(float(lp.mean()), "mean over seeds of dist(D(±1), cosine)"),
        "iterations": Number(int(rs[0].config.iterations), "training iterations of each run"),
    }
    control = (f"the alternative, the paper's Airy profile of the same R, is {sep:.4f} from the cosine on these 64 "
               "samples: a learned profile within half of that is closer to the cosine than to Airy. The discrete "
               "optimum is the exact lower bound of any bias-free d = 1 network's loss on the same signals.")
    figures = ["x1_profiles.png", "x1_codes.png"]
    _plot_profiles(ctx.figure(figures[0]), x, cosine, airy, ms)
    beyond.plot_codes(ctx.figure(figures[1]), {"intervals, k = 1": ms})
    tables = [beyond.seed_table("Per seed (bias-free paper1d runs; prediction: cosine; alternative: Airy)", ms)]
    notes = ("The network is the paper's family in 1-D (``paper1d``: Conv1d, stride 2, channels 1 → 8 → 4 → 4 → 3 "
             "→ 2 → 1, leaky ReLU 0.2, no biases), trained like the disk runs (Adam 1e-3, batch 64, 1,000 fixed "
             "signals, area rendering).")
    return Result(numbers, verdict, rule, control, figures, tables, notes)


def _plot_profiles(path, x, cosine, airy, ms):
    fig, axes = new_figure(width=5.6, height=3.8)
    ax = axes[0, 0]
    xf = np.linspace(x[0], x[-1], 400)
    ax.plot(xf, theory.closed_form_profile(np.abs(xf), beyond.R_TRAIN, k=1), "k-", lw=2.2,
            label="prediction: cosine arch (k = 1)")
    ax.plot(xf, scale_to(theory.f_hat(np.abs(xf), beyond.R_TRAIN), theory.closed_form_profile(
        np.abs(xf), beyond.R_TRAIN, k=1)), ":", color="0.45", lw=1.4, label="alternative: Airy f̂(|x|)")
    ax.plot(x, scale_to(ms[0]["svd"], cosine), "--", color="tab:orange", lw=1.6,
            label="discrete optimum (SVD)")
    for m in ms:
        ax.plot(x, scale_to(m["output"], cosine), ".", ms=4, alpha=0.8,
                label=f"learned D(±1), seed {m['seed']}")
    label_axes(ax, "sample position x", "profile (scaled onto the cosine)",
               "1-D intervals: learned profile vs cosine prediction")
    save_figure(fig, path)
