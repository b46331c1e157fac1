"""D6: the autoencoder does not generalise outside its training radii (ICLR 2018 §3.2.3: the hole experiment).

Training distributions, under the context's recipe (``geoae.recipes``: its network, data, optimiser and kept
weights), all with biases, one run per seed each:

- **hole**: radii U(0, R) without (11, 18), as in ICLR 2018 §3.2.3; test disks with 11 < r < 18 were never
  seen;
- **extrapolation**: radii U(0, R_EXTRA) with R_EXTRA = 24 < R; test disks with r > 24 were never seen;
- **controls**: the same network trained on all radii (D1's runs), evaluated on the same test disks. MSE grows
  with r even for seen radii (longer boundary), so unseen radii are compared with the control *at the same
  radii*, never with other radii.

Measures on the unseen radii, per seed: the MSE against the control's at the same radii, and the radius
error of the outputs, |r̂(x̂) − r̂(x)| with r̂ = √(Σ x / π) (the radius of the disk holding the image's mass): a
model that interpolates draws the right size, one that fails does not. ``unseen_scores`` is shared with D6F,
which finds the recipe item that decides whether the hole is interpolated.
"""

from __future__ import annotations

import numpy as np
import torch

from ..plots import contact_sheet, label_axes, new_figure, save_figure
from . import sources
from .common import (
    Context,
    Number,
    Result,
    area_radius,
    disk_config,
    disk_test_set,
    mse_per_image,
    per_seed,
    reconstructions,
    seed_runs,
    verdict_from,
)

ID = "D6"
TITLE = "Generalisation fails: unseen radii (a hole, or beyond the largest) are not reconstructed"
CLAIM = ("An autoencoder trained on disks whose radii avoid an interval (the hole, radii 11–18 of 32), or stop "
         "below the largest radius, does not reconstruct the disks it did not see: the hole is not "
         "interpolated and larger disks are not extrapolated.")
PAPER = sources.statement("D6")  # what the source says (sources.py)

HOLE = (11.0, 18.0)
R_EXTRA = 24.0
MSE_FAIL = 3.0  # unseen radii "fail" for a seed if their MSE is ≥ 3× the control's at the same radii …
RADIUS_FAIL = 1.0  # … and the outputs' radius is off by ≥ 1 px on average (a disk of the wrong size)
N_SHOW = 8


def runs(ctx: Context, done=None) -> dict:
    """Hole runs, extrapolation runs (r_max = 24) and the all-radii controls (D1's runs), per seed."""
    return (per_seed(ctx, lambda s: disk_config(ctx, seed=s, exclude=(HOLE,)), "hole")
            | per_seed(ctx, lambda s: disk_config(ctx, seed=s), "biased")
            | per_seed(ctx, lambda s: disk_config(ctx, seed=s, r_max=R_EXTRA), "beyond"))


STAGES = (runs,)


def in_hole(radii, hole=HOLE) -> np.ndarray:
    """Boolean mask of the radii strictly inside the open interval ``hole`` (never sampled in training)."""
    r = np.asarray(radii, dtype=np.float64)
    return (r > hole[0]) & (r < hole[1])


def beyond(radii, r_max=R_EXTRA) -> np.ndarray:
    """Boolean mask of the radii above the largest training radius ``r_max``."""
    return np.asarray(radii, dtype=np.float64) > r_max


def unseen_scores(model, control, images, unseen: np.ndarray) -> dict:
    """On the unseen test disks: MSE of ``model`` and of the all-radii ``control``, their ratio, and the mean
    radius error |r̂(x̂) − r̂(x)| (px) of each."""
    x = images[torch.from_numpy(unseen)]
    r_true = area_radius(x)
    out = {}
    for key, m in (("model", model), ("control", control)):
        rec = reconstructions(m, x)
        out[f"mse_{key}"] = float((rec - x).square().mean())
        out[f"radius_error_{key}"] = float(np.mean(np.abs(area_radius(rec) - r_true)))
    out["mse_ratio"] = out["mse_model"] / out["mse_control"] if out["mse_control"] > 0 else float("inf")
    out["fails"] = out["mse_ratio"] >= MSE_FAIL and out["radius_error_model"] >= RADIUS_FAIL
    return out


def analyse(ctx: Context, done: dict) -> Result:
    images, radii = disk_test_set(ctx)
    r = radii.double().numpy()
    hmask, bmask = in_hole(r), beyond(r)
    cases = {  # name -> (model runs, control runs, unseen mask)
        "hole": (seed_runs(done, "hole"), seed_runs(done, "biased"), hmask),
        "beyond": (seed_runs(done, "beyond"), seed_runs(done, "biased"), bmask),
    }
    scores = {name: [unseen_scores(m.model, c.model, images, mask) for m, c in zip(ms, cs, strict=True)]
              for name, (ms, cs, mask) in cases.items()}
    recipe = ctx.disk_recipe
    what = {"hole": f"hole {HOLE[0]:g} < r < {HOLE[1]:g}",
            "beyond": f"r > {R_EXTRA:g}, model trained on r ≤ {R_EXTRA:g}"}
    numbers = {}
    for name, sc in scores.items():
        numbers |= {
            f"{name}_mse_vs_control": Number(float(np.mean([s["mse_ratio"] for s in sc])), f"{what[name]}: MSE / the "
                                             "all-radii control's MSE on the same radii, mean over seeds"),
            f"{name}_mse_vs_control_min": Number(float(np.min([s["mse_ratio"] for s in sc])), f"{what[name]}: "
                                                 "smallest MSE ratio to the control over seeds"),
            f"{name}_radius_error": Number(float(np.mean([s["radius_error_model"] for s in sc])), f"{what[name]}: "
                                           "mean |r̂(x̂) − r̂(x)| (px), r̂ = √(Σx/π), mean over seeds"),
            f"{name}_radius_error_control": Number(float(np.mean([s["radius_error_control"] for s in sc])),
                                                   f"control: the same radius error of the all-radii model on the "
                                                   f"{name} radii"),
            f"{name}_seeds_failing": Number(int(sum(s["fails"] for s in sc)), f"{what[name]}: seeds (of "
                                            f"{len(sc)}) whose outputs fail (MSE ≥ {MSE_FAIL:g}× control and radius "
                                            f"error ≥ {RADIUS_FAIL:g} px)"),
        }
    n = len(ctx.seeds)
    fails = {name: all(s["fails"] for s in sc) for name, sc in scores.items()}
    rule = (f"on unseen radii, a seed's outputs fail if their MSE is ≥ {MSE_FAIL:g}× the all-radii control's on the "
            f"same radii and their radius r̂ = √(Σx̂/π) is off by ≥ {RADIUS_FAIL:g} px on average. Confirmed if every "
            f"seed fails in the hole and beyond R = {R_EXTRA:g}; partly if every seed fails in one of the two; not "
            "reproduced otherwise.")
    control = ("the same network trained on all radii (per seed, same recipe), on the same test radii: its MSE is "
               "the denominator of the ratio, and its radius error shows what the unseen radii would give if they "
               "had been seen.")
    tables = [{"title": "Per seed and case: unseen radii against the all-radii control at the same radii",
               "columns": ["case", "seed", "MSE", "control MSE", "ratio", "radius error (px)",
                           "control radius error (px)", "fails"],
               "rows": [[name, run.config.seed, s["mse_model"], s["mse_control"], s["mse_ratio"],
                         s["radius_error_model"], s["radius_error_control"], s["fails"]]
                        for name, sc in scores.items() for run, s in zip(cases[name][0], sc, strict=True)]}]
    notes = (f"Recipe `{recipe.name}` ({recipe.size} × {recipe.size} {recipe.rendering} disks). The extrapolation "
             f"runs use R = {R_EXTRA:g} (radii U(0, {R_EXTRA:g})), since no larger disk fits the image. {n} seed(s).")
    figures = ["d6_mse_per_radius.png", "d6_reconstructions.png"]
    m_hole = np.stack([mse_per_image(run.model, images) for run in cases["hole"][0]]).astype(np.float64)
    m_extra = np.stack([mse_per_image(run.model, images) for run in cases["beyond"][0]]).astype(np.float64)
    m_base = np.stack([mse_per_image(run.model, images) for run in cases["beyond"][1]]).astype(np.float64)
    _plot_mse(ctx.figure(figures[0]), r, m_hole, m_extra, m_base)
    _plot_reconstructions(ctx.figure(figures[1]), images, radii, cases["hole"][0][0], cases["beyond"][0][0])
    per = {f"{name}_{key}": [x[field] for x in sc] for name, sc in scores.items()
           for key, field in (("mse_vs_control", "mse_ratio"), ("radius_error", "radius_error_model"))}
    return Result(numbers, verdict_from(all(fails.values()), any(fails.values())), rule, control, figures, tables,
                  notes, per_seed=per, headline="; ".join(
                      f"{name}: MSE {np.mean([x['mse_ratio'] for x in sc]):.2g}× the control, "
                      f"{np.mean([x['radius_error_model'] for x in sc]):.2g} px off, {sum(x['fails'] for x in sc)} of "
                      f"{len(sc)} seeds fail" for name, sc in scores.items()) + f" (fail: ≥ {MSE_FAIL:g}× and ≥ "
                      f"{RADIUS_FAIL:g} px)")


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
        label_axes(ax, "test radius r (px)", "per-pixel MSE", title)
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
