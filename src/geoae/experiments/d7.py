"""D7: which regulariser lets the autoencoder fill the hole in its training radii (ICLR 2018 §3.2.4).

All runs use the hole data of D6 (radii U(0, 32) without (11, 18), ``area`` disks) and the paper's biased
network, at the same budget. The regularisers are the paper's ``locality`` (type 1), ``l2_all`` (type 2),
``l2_encoder`` (type 3) and ``none`` (D6's hole runs); the released code's ``contractive`` in the tiny profile.

**Choosing λ (stage 1, no peeking at the hole).** Every λ of a log grid (``lambda_grid``: 7 values from
1e-5 to 1, 1.0 included, denser around 1e-4 to 1e-3 where λ·ψ meets the MSE; extended below for
``locality``, whose penalty starts ~1e3× the MSE; 4 values in the quick profile) is trained with the first
seed at the main runs' budget (λ interacts with training dynamics, see below, so it must be chosen at the
budget it is used at). Each run is scored on validation disks drawn from the *training* distribution (hole
excluded, a seed of their own) and on its training set. The chosen λ is the largest whose validation MSE
and training MSE are both within ``TOLERANCE``× those of the unregularised run of the same seed and budget
(the strongest regularisation that still fits the data); the smallest λ of the grid if none is. The hole's
radii enter nothing of this.

**Main runs (stage 2).** Every seed with the chosen λ (the first seed's run is the search run, shared), and
the first seed of ``none`` and ``l2_all`` stopped at 1/8, 1/4 and 1/2 of the budget (a run stopped at k
iterations *is* the longer run at iteration k: same seed, same batches, no schedule), for |z| over training.

**The rescaling argument.** With a biased decoder whose first layer is not penalised, scaling the encoder's
layers by s (biases by s^l) scales z by s^L; dividing the decoder's first kernel by s^L leaves every output
unchanged while ``l2_encoder``'s penalty is multiplied by s² (and ``contractive``'s by s^{2L}). The penalised
loss has no minimiser away from z → 0, so these regularisers act through the training dynamics, not through
the optimum. ``rescaled`` does this to a trained network and the results measure it.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..plots import line_plot, new_figure, save_figure
from . import sources
from .common import (
    Context,
    Number,
    Result,
    codes,
    disk_config,
    disk_iterations,
    disk_test_set,
    mean_std,
    mse_per_image,
    per_seed,
    reconstructions,
    seed_runs,
    spearman,
    verdict_from,
)
from .d6 import HOLE, in_hole

ID = "D7"
TITLE = "Regularisation: locality fails with holes, l2_all lets z grow, l2_encoder generalises best"
CLAIM = ("With a hole in the training radii: the locality-preserving regulariser (type 1) fails, since no "
         "training pair straddles the hole; weight decay on all weights (type 2) lets the decoder's weights "
         "shrink while the code z grows, and hurts; weight decay on the encoder only (type 3) gives the best "
         "interpolation inside the hole.")
PAPER = sources.statement("D7")  # what the source says (sources.py)

PAPER_REGULARISERS = ("none", "locality", "l2_all", "l2_encoder")  # the claim is about these
EXTRA = "contractive"  # the released code's penalty: tiny profile only
TOLERANCE = 1.25  # training fit: validation and training MSE within 1.25× the unregularised run's
VALIDATION_SEED = 1_000_001
TRAJECTORY = (8, 4, 2)  # runs stopped at N/8, N/4, N/2 iterations
Z_GROWTH, TRAIN_HURT = 1.5, 1.2
LOCALITY_FAILS, ENCODER_CLOSES = 0.25, 0.5  # fraction of the hole's gap to the all-radii control closed
RESCALE = 0.5


def regularisers(ctx: Context) -> tuple[str, ...]:
    """The regularisers compared (``none`` first): the paper's three. The released code's ``contractive`` is
    exercised by the tiny profile only (it is not part of the paper's claim, and its λ search would cost the
    paper profile a third more); ``regulariser='contractive'`` stays available to ``train``."""
    return ctx.pick(PAPER_REGULARISERS, PAPER_REGULARISERS, tiny=(*PAPER_REGULARISERS, EXTRA))


# λ grids: dense where λ·ψ meets the MSE (ψ ~ 1-10 for the weight penalties at initialisation against an MSE
# of a few 1e-3, so λ ~ 1e-4 to 1e-3), decades elsewhere up to 1.0 (the released code's default); locality's
# penalty starts ~1e3× larger, so its grid goes three decades lower
PAPER_GRID = (1e-5, 1e-4, 3e-4, 1e-3, 1e-2, 1e-1, 1.0)
LOCALITY_BELOW = (1e-8, 1e-7, 1e-6)
QUICK_GRID = (1e-5, 1e-4, 1e-3, 1.0)
QUICK_LOCALITY = (1e-7, 1e-5, 1e-3, 1.0)


def lambda_grid(ctx: Context, reg: str) -> tuple[float, ...]:
    """The λ tried for ``reg``: in the paper profile ``PAPER_GRID`` (7 values from 1e-5 to 1), ``locality``
    extended by decades down to 1e-8; the quick profile (a first look) 4 values from the same range; the tiny
    profile three."""
    if reg == "locality":
        grid = ctx.pick(QUICK_LOCALITY, LOCALITY_BELOW + PAPER_GRID)
    elif reg == "contractive":
        grid = PAPER_GRID[:-1] + (1.0, 10.0, 100.0)  # its penalty starts ~1e-3x the MSE
    else:
        grid = ctx.pick(QUICK_GRID, PAPER_GRID)
    grid = tuple(sorted(set(grid)))
    return ctx.pick(grid, grid, tiny=(grid[0], 1e-2, 1.0))


def _hole(ctx: Context, seed: int, reg: str = "none", lam: float = 0.0, iterations: int | None = None):
    return disk_config(ctx, seed=seed, exclude=(HOLE,), regulariser=reg, reg_weight=lam, iterations=iterations)


def search_runs(ctx: Context, done=None) -> dict:
    """Stage 1: every λ of the grid with the first seed, at the main runs' budget, and the references."""
    s0 = ctx.seeds[0]
    out = {f"search/{reg}/{lam:g}": _hole(ctx, s0, reg, lam) for reg in regularisers(ctx)[1:]
           for lam in lambda_grid(ctx, reg)}
    return out | per_seed(ctx, lambda s: _hole(ctx, s), "none") | per_seed(ctx, lambda s: disk_config(ctx, seed=s),
                                                                           "biased")


def validation_set(ctx: Context) -> torch.Tensor:
    """Disks from the training distribution (hole excluded), with a seed of their own: (N, 1, 64, 64)."""
    return _hole(ctx, 0).data.make(ctx.pick(300, 1000, tiny=32), seed=VALIDATION_SEED)[0]


def select_lambda(lambdas, val_mse, train_mse, ref_val: float, ref_train: float,
                  tolerance: float = TOLERANCE) -> tuple[float, bool]:
    """(the largest λ whose validation and training MSE are ≤ tolerance × the reference's, True), or
    (the smallest λ, False) if none is."""
    ok = [lam for lam, v, t in zip(lambdas, val_mse, train_mse, strict=True)
          if v <= tolerance * ref_val and t <= tolerance * ref_train]
    return (float(max(ok)), True) if ok else (float(min(lambdas)), False)


def search_table(ctx: Context, done: dict) -> tuple[dict, dict, list]:
    """Chosen λ per regulariser, whether it fits, and one row per search run (for the table and figure)."""
    val = validation_set(ctx)
    images, radii = disk_test_set(ctx)
    hole = in_hole(radii.numpy())
    ref = done[f"none/s{ctx.seeds[0]}"]
    ref_val = float(mse_per_image(ref.model, val).mean())
    ref_train = float(ref.metrics["train_mse"])
    ref_hole = float(mse_per_image(ref.model, images[torch.from_numpy(hole)]).mean())
    chosen, fits, rows = {"none": 0.0}, {"none": True}, [["none", 0.0, ref_val, ref_train, ref_hole, True]]
    for reg in regularisers(ctx)[1:]:
        lams = list(lambda_grid(ctx, reg))
        runs = [done[f"search/{reg}/{lam:g}"] for lam in lams]
        val_mse = [float(mse_per_image(r.model, val).mean()) for r in runs]
        train_mse = [float(r.metrics["train_mse"]) for r in runs]
        chosen[reg], fits[reg] = select_lambda(lams, val_mse, train_mse, ref_val, ref_train)
        for lam, r, v, t in zip(lams, runs, val_mse, train_mse, strict=True):
            h = float(mse_per_image(r.model, images[torch.from_numpy(hole)]).mean())  # the figure only
            rows.append([reg, lam, v, t, h, lam == chosen[reg]])
    return chosen, fits, rows


def main_runs(ctx: Context, done: dict) -> dict:
    """Stage 2: every seed with the chosen λ, and the trajectory runs of ``none`` and ``l2_all``."""
    chosen, _, _ = search_table(ctx, done)
    out = {}
    for reg in regularisers(ctx)[1:]:
        out |= per_seed(ctx, lambda s, r=reg: _hole(ctx, s, r, chosen[r]), reg)
    for reg in ("none", "l2_all"):
        for it in trajectory_points(ctx):
            out[f"trajectory/{reg}/{it}"] = _hole(ctx, ctx.seeds[0], reg, chosen[reg], iterations=it)
    return out


def trajectory_points(ctx: Context) -> list[int]:
    """The iterations at which the trajectory runs stop (N/8, N/4, N/2 of the budget N)."""
    return [max(1, disk_iterations(ctx) // k) for k in TRAJECTORY]


STAGES = (search_runs, main_runs)


# -------------------------------------------------------------------------------------------- measures


@torch.no_grad()
def rescaled(model, s: float):
    """A copy of ``model`` whose encoder layer l has weights × s and bias × s^l, and whose first decoder kernel
    is × s^{-L}: z is scaled by s^L and, for s > 0, every output is unchanged (leaky ReLUs are positively
    homogeneous); the encoder's Σ‖w‖² is × s²."""
    m = copy.deepcopy(model).double()
    enc = [layer for layer in m.encoder if hasattr(layer, "weight")]
    for l, layer in enumerate(enc, 1):
        layer.weight.mul_(s)
        if layer.bias is not None:
            layer.bias.mul_(s ** l)
    first = next(layer for layer in m.decoder if hasattr(layer, "weight"))
    first.weight.mul_(s ** -len(enc))
    return m


def rescaling_check(model, images: torch.Tensor, s: float = RESCALE) -> dict:
    """Largest output change and the encoder-penalty ratio of ``rescaled(model, s)`` (float64)."""
    from ..train import compute_loss

    base = copy.deepcopy(model).double()
    m = rescaled(model, s)
    x = images.double()
    change = float((reconstructions(m, x) - reconstructions(base, x)).abs().max())
    with torch.no_grad():
        pen = [float(compute_loss(net, x[:64], "l2_encoder", 1.0).penalty) for net in (base, m)]
    return {"output_change": change, "penalty_ratio": pen[1] / pen[0],
            "code_ratio": float((codes(m, x[-1:]) / codes(base, x[-1:])).squeeze())}


def measure(run, images, radii) -> dict:
    r = radii.double().numpy()
    hole = in_hole(r)
    mse = mse_per_image(run.model, images).astype(np.float64)
    z = codes(run.model, images)[:, 0].double().numpy()
    return {"hole_mse": float(mse[hole].mean()), "outside_mse": float(mse[~hole].mean()),
            "train_mse": float(run.metrics["train_mse"]), "z_max": float(np.abs(z).max()),
            "z_range": float(np.ptp(z)), "monotone": abs(spearman(z, r)), "z": z}


def gap_closed(h_reg: float, h_none: float, h_control: float) -> float:
    """Fraction of the hole's excess MSE (none over the all-radii control) that a regulariser removes: 1 when
    it matches the control, 0 when no better than no regulariser, < 0 when worse; NaN without a gap."""
    gap = h_none - h_control
    return (h_none - h_reg) / gap if gap > 0 else float("nan")


def analyse(ctx: Context, done: dict) -> Result:
    chosen, fits, search_rows = search_table(ctx, done)
    regs = regularisers(ctx)
    images, radii = disk_test_set(ctx)
    per = {reg: [measure(run, images, radii) for run in seed_runs(done, reg)] for reg in regs}
    control = [measure(run, images, radii) for run in seed_runs(done, "biased")]
    stats = {reg: {key: mean_std([m[key] for m in ms]) for key in
                   ("hole_mse", "outside_mse", "train_mse", "z_max", "z_range", "monotone")}
             for reg, ms in per.items()}

    def mean(reg, key):
        return stats[reg][key][0]

    h_control = float(np.mean([m["hole_mse"] for m in control]))
    closed = {reg: gap_closed(mean(reg, "hole_mse"), mean("none", "hole_mse"), h_control) for reg in regs[1:]}
    locality_fails = bool(closed["locality"] < LOCALITY_FAILS)
    z_grows = mean("l2_all", "z_max") > Z_GROWTH * mean("none", "z_max")
    hurts = (mean("l2_all", "hole_mse") > mean("none", "hole_mse")
             or mean("l2_all", "train_mse") > TRAIN_HURT * mean("none", "train_mse"))
    paper = [reg for reg in PAPER_REGULARISERS[1:]]
    best = max(paper, key=lambda reg: -np.inf if np.isnan(closed[reg]) else closed[reg])
    encoder_best = bool(best == "l2_encoder" and closed["l2_encoder"] >= ENCODER_CLOSES)
    held = [locality_fails, z_grows and hurts, encoder_best]

    n_iter = disk_iterations(ctx)
    traj = {reg: [(it, measure(done[f"trajectory/{reg}/{it}"], images, radii)["z_max"])
                  for it in trajectory_points(ctx)] + [(n_iter, per[reg][0]["z_max"])] for reg in ("none", "l2_all")}
    resc = rescaling_check(seed_runs(done, "l2_encoder")[0].model, images)

    numbers = {"subclaims_holding": Number(int(sum(held)), "how many of the three sub-claims hold (locality fails; "
                                           "l2_all lets z grow and hurts; l2_encoder generalises best)")}
    for reg in regs[1:]:
        numbers[f"{reg}_gap_closed"] = Number(closed[reg], f"{reg} (λ = {chosen[reg]:g}): fraction of the hole's "
                                              "excess MSE over the all-radii control that it removes (1: as if the "
                                              "hole had been seen; 0: no better than no regulariser)")
    for reg in regs:
        numbers[f"{reg}_hole_mse"] = Number(mean(reg, "hole_mse"), f"{reg} (λ = {chosen[reg]:g}): test MSE inside the "
                                            f"hole {HOLE[0]:g} < r < {HOLE[1]:g}, mean over seeds")
    numbers |= {
        "control_hole_mse": Number(h_control, "control: the all-radii network's test MSE on the hole radii"),
        "l2_all_zmax_over_none": Number(mean("l2_all", "z_max") / mean("none", "z_max"), "l2_all: max |z| over the "
                                        "test disks / the same without regulariser (seed means)"),
        "l2_all_train_over_none": Number(mean("l2_all", "train_mse") / mean("none", "train_mse"), "l2_all: training "
                                         "MSE / that of no regulariser (seed means)"),
        "l2_all_zmax_growth": Number(traj["l2_all"][-1][1] / traj["l2_all"][0][1], f"l2_all, first seed: max |z| at "
                                     f"the end / at iteration {traj['l2_all'][0][0]}"),
        "none_zmax_growth": Number(traj["none"][-1][1] / traj["none"][0][1], "the same growth without regulariser"),
        "rescaling_output_change": Number(resc["output_change"], f"l2_encoder, first seed: largest output change when "
                                          f"the encoder is rescaled by s = {RESCALE:g} per layer and the decoder's "
                                          "first kernel by s^-L (float64 round-off: the outputs are unchanged)"),
        "rescaling_penalty_ratio": Number(resc["penalty_ratio"], "the encoder's Σ‖w‖² after / before the same "
                                          f"rescaling (s² = {RESCALE ** 2:g}): the penalty can be made as small as "
                                          "wanted at the same outputs"),
    }
    rule = ("three sub-claims, on the means over seeds, each regulariser at its chosen λ; gap closed = "
            "(H_none − H_reg) / (H_none − H_control), H the test MSE on the hole radii: (1) locality fails if it "
            f"closes < {LOCALITY_FAILS:g} of the gap; (2) l2_all lets z grow and hurts if its max |z| is > "
            f"{Z_GROWTH:g}× that "
            f"of no regulariser and either its hole MSE exceeds no regulariser's or its training MSE is > "
            f"{TRAIN_HURT:g}× it; (3) l2_encoder generalises best if it closes the largest fraction of the gap among "
            f"locality, l2_all and l2_encoder, and at least {ENCODER_CLOSES:g}. Confirmed if all three hold, partly "
            "if one or two, not reproduced if none.")
    control_text = ("the same network trained on all radii (D1's runs), on the hole radii: the gap a regulariser "
                    "can close; λ is chosen against the unregularised run of the same seed and budget, on data from "
                    "the training distribution only.")

    def pm(reg, key):
        return f"{stats[reg][key][0]:.3g} ± {stats[reg][key][1]:.2g}"

    n = len(ctx.seeds)
    tables = [
        {"title": f"Per regulariser at its chosen λ, mean ± std over {n} seed(s) (test disks over [0, 32]; train MSE "
                  "on the run's training set, outside the hole)",
         "columns": ["regulariser", "λ", "fits", "hole MSE", "gap closed", "outside-hole test MSE", "train MSE",
                     "max |z|", "|Spearman(z, r)|"],
         "rows": [[reg, chosen[reg], fits[reg], pm(reg, "hole_mse"), closed.get(reg, 0.0), pm(reg, "outside_mse"),
                   pm(reg, "train_mse"), pm(reg, "z_max"), pm(reg, "monotone")] for reg in regs]},
        {"title": f"λ search (seed {ctx.seeds[0]}, {n_iter} iterations like the main runs; chosen: the largest λ "
                  f"with validation and training MSE ≤ {TOLERANCE:g}× the unregularised run's; validation disks from "
                  "the training distribution; the hole MSE is shown, never used)",
         "columns": ["regulariser", "λ", "validation MSE", "train MSE", "hole MSE", "chosen"],
         "rows": search_rows},
        {"title": "max |z| over the test disks during training (first seed; runs stopped early are the same run)",
         "columns": ["iteration", "none", "l2_all"],
         "rows": [[it, zn, za] for (it, zn), (_, za) in zip(traj["none"], traj["l2_all"], strict=True)]},
        {"title": "Sub-claims", "columns": ["sub-claim", "holds"],
         "rows": [["locality fails with the hole", locality_fails], ["l2_all lets z grow", z_grows],
                  ["l2_all hurts", hurts], [f"l2_encoder generalises best (best: {best})", encoder_best]]},
    ]
    notes = "`none` are the D6 hole runs and the control the D1 runs."
    if EXTRA in regs:
        notes += f" `{EXTRA}` (released code) is reported but not part of the sub-claims."
    unfit = [reg for reg in regs[1:] if not fits[reg]]
    if unfit:
        notes += (f" No λ of the grid fits the data for {', '.join(unfit)}: they run at the smallest λ of their "
                  "grid.")
    figures = ["d7_codes.png", "d7_lambda_search.png", "d7_z_over_training.png"]
    _plot_codes(ctx.figure(figures[0]), radii.double().numpy(), per, chosen)
    _plot_search(ctx.figure(figures[1]), search_rows, h_control)
    _plot_trajectory(ctx.figure(figures[2]), traj)
    return Result(numbers, verdict_from(all(held), any(held)), rule, control_text, figures, tables, notes)


def _plot_codes(path, r, per: dict[str, list[dict]], chosen: dict[str, float]):
    """z(r) per regulariser (one panel each, every seed), the hole shaded."""
    fig, axes = new_figure(len(per), width=3.0, height=3.0)
    for ax, (reg, ms) in zip(axes.flat, per.items(), strict=True):
        ax.axvspan(*HOLE, color="0.85", zorder=0)
        for m in ms:
            ax.plot(r, m["z"], "-", lw=1.2)
        ax.set_title(f"{reg} (λ = {chosen[reg]:g})", fontsize=9)
        ax.set_xlabel("test radius r (px)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("code z")
    save_figure(fig, path)


def _plot_search(path, rows: list, h_control: float):
    """Hole MSE and training MSE against λ, one panel per regulariser; none and the control as lines."""
    regs = [reg for reg in dict.fromkeys(row[0] for row in rows) if reg != "none"]
    ref = next(row for row in rows if row[0] == "none")
    fig, axes = new_figure(len(regs), width=3.4, height=3.0)
    for ax, reg in zip(axes.flat, regs, strict=True):
        rr = [row for row in rows if row[0] == reg]
        lam = [row[1] for row in rr]
        ax.loglog(lam, [row[4] for row in rr], "o-", ms=3, label="hole MSE")
        ax.loglog(lam, [row[3] for row in rr], "s--", ms=3, label="train MSE")
        ax.axhline(ref[4], color="tab:blue", lw=0.8, ls=":", label="hole MSE, none")
        ax.axhline(ref[3], color="tab:orange", lw=0.8, ls=":", label="train MSE, none")
        ax.axhline(h_control, color="k", lw=0.8, ls="-.", label="hole radii, all-radii control")
        for row in rr:
            if row[5]:
                ax.axvline(row[1], color="0.4", lw=0.8)
        ax.set_title(reg, fontsize=9)
        ax.set_xlabel("λ")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("per-pixel MSE")
    axes[0, 0].legend(fontsize=6)
    save_figure(fig, path)


def _plot_trajectory(path, traj: dict):
    its = [p[0] for p in next(iter(traj.values()))]
    line_plot(path, its, {reg: np.array([p[1] for p in pts]) for reg, pts in traj.items()}, xlabel="iteration",
              ylabel="max |z| over the test disks", title="|z| over training (first seed)",
              styles=dict.fromkeys(traj, "o-"))
