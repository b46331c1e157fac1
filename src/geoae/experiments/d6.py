"""D6: the autoencoder does not generalise outside its training radii (the paper's hole experiment).

Two training distributions, both with biases (the paper's full network), one run per seed:

- **hole**: radii U(0, 32) without (11, 18), as in the paper; test disks with 11 < r < 18 were never seen;
- **extrapolation**: radii U(0, R_EXTRA) with R_EXTRA = 24 < 32; test disks with r > 24 were never seen
  (Prop. 2 also says a bias-free decoder cannot draw a disk larger than R; here the decoder has biases).

On the evenly spaced test disks over [0, 32] (``disk_test_set``) we measure the per-pixel MSE per radius and
compare the unseen radii with the seen ones. The D1 baseline (same network trained on all radii, shared
runs) is evaluated on the same disks as a control: disks of larger radius have a longer boundary and hence
a larger MSE even when they were seen, so its ratios show how much of a ratio is due to the radius alone.
"""

from __future__ import annotations

import numpy as np
import torch

from ..plots import contact_sheet, new_figure, save_figure
from .common import Context, Result, disk_config, disk_test_set, mse_per_image, reconstructions, verdict_from

ID = "D6"
TITLE = "Generalisation fails: unseen radii (a hole, or beyond the largest) are not reconstructed"
CLAIM = ("An autoencoder trained on disks whose radii avoid an interval (the hole, radii 11–18 of 32), or stop "
         "below the largest radius, does not reconstruct the disks it did not see: the hole is not "
         "interpolated and larger disks are not extrapolated.")
PAPER = ("Radii 11–18 removed from training: the reconstructions of disks inside the hole are wrong (the "
         "paper's figure shows them as badly drawn disks of a wrong size); no number is given.")

HOLE = (11.0, 18.0)
R_EXTRA = 24.0
RATIO_OK = 3.0
N_SHOW = 8


def configs(ctx: Context):
    """Hole runs, extrapolation runs (r_max = 24), then the full-range baseline (D1's), one per seed each."""
    return ([disk_config(ctx, seed=s, exclude=(HOLE,)) for s in ctx.seeds]
            + [disk_config(ctx, seed=s, r_max=R_EXTRA) for s in ctx.seeds]
            + [disk_config(ctx, seed=s) for s in ctx.seeds])


def in_hole(radii, hole=HOLE) -> np.ndarray:
    """Boolean mask of the radii strictly inside the open interval ``hole`` (never sampled in training)."""
    r = np.asarray(radii, dtype=np.float64)
    return (r > hole[0]) & (r < hole[1])


def beyond(radii, r_max=R_EXTRA) -> np.ndarray:
    """Boolean mask of the radii above the largest training radius ``r_max``."""
    return np.asarray(radii, dtype=np.float64) > r_max


def split_ratio(mse: np.ndarray, unseen: np.ndarray) -> tuple[float, float, float]:
    """(mean MSE on unseen radii, mean MSE on seen radii, their ratio)."""
    a, b = float(mse[unseen].mean()), float(mse[~unseen].mean())
    return a, b, (a / b if b > 0 else float("inf"))


def analyse(ctx: Context, runs) -> Result:
    images, radii = disk_test_set(ctx)
    r = radii.double().numpy()
    n = len(ctx.seeds)
    hole_runs, extra_runs, base_runs = runs[:n], runs[n:2 * n], runs[2 * n:]
    m_hole = np.stack([mse_per_image(run.model, images) for run in hole_runs]).astype(np.float64)
    m_extra = np.stack([mse_per_image(run.model, images) for run in extra_runs]).astype(np.float64)
    m_base = np.stack([mse_per_image(run.model, images) for run in base_runs]).astype(np.float64)
    hmask, bmask = in_hole(r), beyond(r)

    per_seed_hole = [split_ratio(m, hmask) for m in m_hole]
    per_seed_extra = [split_ratio(m, bmask) for m in m_extra]
    hole_in, hole_out, hole_ratio = split_ratio(m_hole.mean(0), hmask)
    ext_in, ext_out, ext_ratio = split_ratio(m_extra.mean(0), bmask)
    base_hole_ratio = split_ratio(m_base.mean(0), hmask)[2]
    base_ext_ratio = split_ratio(m_base.mean(0), bmask)[2]
    numbers = {
        "hole_ratio": hole_ratio,
        "beyond_ratio": ext_ratio,
        "hole_ratio_min_seed": min(p[2] for p in per_seed_hole),
        "beyond_ratio_min_seed": min(p[2] for p in per_seed_extra),
        "hole_mse": hole_in,
        "outside_hole_mse": hole_out,
        "beyond_mse": ext_in,
        "below_mse": ext_out,
        "hole_vs_baseline": hole_in / float(m_base.mean(0)[hmask].mean()),
        "beyond_vs_baseline": ext_in / float(m_base.mean(0)[bmask].mean()),
        "baseline_hole_ratio": base_hole_ratio,
        "baseline_beyond_ratio": base_ext_ratio,
    }
    descriptions = {
        "hole_ratio": f"hole model: mean test MSE for {HOLE[0]:g} < r < {HOLE[1]:g} / mean test MSE at the other "
                      "radii of [0, 32] (MSE per radius averaged over seeds)",
        "beyond_ratio": f"r_max = {R_EXTRA:g} model: mean test MSE for r > {R_EXTRA:g} / for r ≤ {R_EXTRA:g}",
        "hole_ratio_min_seed": "smallest hole ratio over seeds",
        "beyond_ratio_min_seed": "smallest beyond-R ratio over seeds",
        "hole_mse": "hole model: mean per-pixel MSE of the test disks inside the hole",
        "outside_hole_mse": "hole model: mean per-pixel MSE of the test disks outside the hole",
        "beyond_mse": f"r_max = {R_EXTRA:g} model: mean per-pixel MSE of the test disks with r > {R_EXTRA:g}",
        "below_mse": f"r_max = {R_EXTRA:g} model: mean per-pixel MSE of the test disks with r ≤ {R_EXTRA:g}",
        "hole_vs_baseline": "hole MSE / the full-range baseline's MSE on the same radii",
        "beyond_vs_baseline": f"beyond-{R_EXTRA:g} MSE / the full-range baseline's MSE on the same radii",
        "baseline_hole_ratio": "control: the same hole ratio for the baseline trained on all radii",
        "baseline_beyond_ratio": f"control: the same r > {R_EXTRA:g} ratio for the baseline trained on all radii",
    }
    hole_fails = all(p[2] > RATIO_OK for p in per_seed_hole)
    extra_fails = all(p[2] > RATIO_OK for p in per_seed_extra)
    confirmed = hole_fails and extra_fails
    partly = hole_ratio > RATIO_OK or ext_ratio > RATIO_OK
    rule = (f"confirmed if, for every seed, the hole MSE is > {RATIO_OK:g}× the outside-hole MSE and the "
            f"beyond-R MSE (r > {R_EXTRA:g}) is > {RATIO_OK:g}× the below-R MSE; partly if at least one of the "
            f"two seed-averaged ratios is > {RATIO_OK:g}; not reproduced otherwise. The baseline ratios are a "
            "control, not part of the rule.")
    tables = [{"title": "Per seed: mean test MSE on unseen vs seen radii",
               "columns": ["seed", "hole MSE", "outside-hole MSE", "hole ratio", f"r > {R_EXTRA:g} MSE",
                           f"r ≤ {R_EXTRA:g} MSE", "beyond ratio"],
               "rows": [[run.config.seed, *ph, *pe] for run, ph, pe in
                        zip(hole_runs, per_seed_hole, per_seed_extra, strict=True)]}]
    notes = (f"The extrapolation runs use R = {R_EXTRA:g} (radii U(0, {R_EXTRA:g})) since no disk larger than "
             "32 fits a 64 × 64 image. MSE grows with the radius even for seen radii (longer boundary), hence "
             "the baseline control ratios.")
    figures = ["d6_mse_per_radius.png", "d6_reconstructions.png"]
    _plot_mse(ctx.figure(figures[0]), r, m_hole, m_extra, m_base)
    _plot_reconstructions(ctx.figure(figures[1]), images, radii, hole_runs[0], extra_runs[0])
    return Result(numbers, descriptions, verdict_from(confirmed, partly), rule, figures, tables, notes)


def _plot_mse(path, r, m_hole, m_extra, m_base):
    fig, axes = new_figure(2, width=5.0, height=3.6)
    panels = [(axes[0, 0], m_hole, HOLE, f"trained without radii {HOLE[0]:g}–{HOLE[1]:g}"),
              (axes[0, 1], m_extra, (R_EXTRA, float(r.max())), f"trained on radii ≤ {R_EXTRA:g}")]
    for ax, m, shade, title in panels:
        ax.axvspan(*shade, color="0.85", zorder=0, label="unseen radii")
        for k, row in enumerate(m):
            ax.plot(r, row, "-", color="tab:red", lw=0.6, alpha=0.35, label="seeds" if k == 0 else None)
        ax.plot(r, m.mean(0), "-", color="tab:red", lw=1.8, label="mean over seeds")
        ax.plot(r, m_base.mean(0), "--", color="tab:blue", lw=1.4, label="baseline (all radii)")
        ax.set_yscale("log")
        ax.set_xlabel("test radius r (px)")
        ax.set_ylabel("per-pixel MSE")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _plot_reconstructions(path, images, radii, hole_run, extra_run):
    """Rows: inputs around the hole, the hole model's outputs, inputs around R, the r_max model's outputs."""
    def nearest(targets):
        return [int(torch.argmin((radii - t).abs())) for t in targets]

    i_hole = nearest(np.linspace(HOLE[0] - 2, HOLE[1] + 2, N_SHOW))
    i_extra = nearest(np.linspace(R_EXTRA - 4, float(radii.max()), N_SHOW))
    rows = [images[i_hole], reconstructions(hole_run.model, images[i_hole]),
            images[i_extra], reconstructions(extra_run.model, images[i_extra])]
    titles = ([f"r={float(radii[i]):.1f}" + (" (hole)" if in_hole([float(radii[i])])[0] else "") for i in i_hole]
              + ["hole model"] * N_SHOW
              + [f"r={float(radii[i]):.1f}" + (" (>R)" if float(radii[i]) > R_EXTRA else "") for i in i_extra]
              + [f"r≤{R_EXTRA:g} model"] * N_SHOW)
    contact_sheet(torch.cat(rows).clamp(0, 1), path, titles=titles, ncols=N_SHOW, max_images=4 * N_SHOW)
