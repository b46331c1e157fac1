"""D7: which regulariser lets the autoencoder fill the hole in its training radii (ICLR 2018 §3.2.4).

All runs use the hole data of D6 (radii U(0, R) without (11, 18)) and the biased network of the context's
recipe, at the same budget. The regularisers are ICLR 2018's ``locality`` (type 1), ``l2_all`` (type 2),
``l2_encoder`` (type 3) and ``none`` (D6's hole runs); the released code's ``contractive`` in the tiny profile.

**Choosing λ (stage 1, no peeking at the hole).** Every λ of a log grid (``lambda_grid``: 1e-6 to 1e-2 in the
paper profile, 4 values in the quick one) is trained with the first ``SEARCH_SEEDS`` seeds at the main runs'
budget (λ interacts with training dynamics, see below, so it is chosen at the budget it is used at). Each run
is scored on validation disks drawn from the *training* distribution (hole excluded, a seed of their own) and
on its training set, as a ratio to the unregularised run of the same seed. The chosen λ is the largest whose
validation and training MSE ratios, averaged over the search seeds, are both ≤ ``TOLERANCE`` (the strongest
regularisation that still fits the data); the smallest λ of the grid if none is. The hole enters nothing.

**Main runs (stage 2).** Every seed at the chosen λ (the search seeds' runs are shared). Each sub-claim is
decided on per-seed *paired* differences (same seed, same data, regulariser minus none) with a bootstrap
interval over seeds: it holds when the interval lies on the claimed side of 0, fails when it lies on the other,
and is inconclusive when it straddles 0. |z| over training is read from every run's history (``z_abs_max``:
max |z| of the batch at each log step), as ICLR 2018 states it ("the code z increases in amplitude during the
training").

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

from ..plots import new_figure, save_figure
from . import sources
from .common import (
    Context,
    Number,
    Result,
    codes,
    disk_config,
    disk_test_set,
    mse_per_image,
    per_seed,
    reconstructions,
    seed_interval,
    seed_runs,
    side_of,
    spearman,
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
TOLERANCE = 1.25  # training fit: validation and training MSE within 1.25× the unregularised run's (seed mean)
SEARCH_SEEDS = 3  # the λ search uses the first 3 seeds (the quick profile's 2)
VALIDATION_SEED = 1_000_001
EARLY = 8  # |z| growth: the end of training against iteration N/8
RESCALE = 0.5


def regularisers(ctx: Context) -> tuple[str, ...]:
    """The regularisers compared (``none`` first): the paper's three. The released code's ``contractive`` is
    exercised by the tiny profile only (it is not part of the paper's claim, and its λ search would cost the
    paper profile a third more); ``regulariser='contractive'`` stays available to ``train``."""
    return ctx.pick(PAPER_REGULARISERS, PAPER_REGULARISERS, tiny=(*PAPER_REGULARISERS, EXTRA))


# λ grids: decades where λ·ψ meets the MSE (ψ ~ 1-10 for the weight penalties at initialisation against an MSE of a
# few 1e-3; locality's penalty starts ~1e3× larger); earlier paper-profile searches found every weight penalty
# collapsing the fit from 1e-2 up (1.0, the released code's default, included), so the grid stops there
PAPER_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
QUICK_GRID = (1e-5, 1e-4, 1e-3, 1e-2)


def lambda_grid(ctx: Context, reg: str) -> tuple[float, ...]:
    """The λ tried for ``reg``: ``PAPER_GRID`` (5 decades from 1e-6) in the paper profile, ``QUICK_GRID`` in the
    quick one, three values in the tiny one (``contractive``, whose penalty starts ~1e-3× the MSE, goes higher)."""
    if reg == "contractive":
        return (1e-2, 1.0, 100.0)
    grid = ctx.pick(QUICK_GRID, PAPER_GRID)
    return ctx.pick(grid, grid, tiny=(grid[0], 1e-2, 1.0))


def search_seeds(ctx: Context) -> tuple[int, ...]:
    return ctx.seeds[:SEARCH_SEEDS]


def _hole(ctx: Context, seed: int, reg: str = "none", lam: float = 0.0, iterations: int | None = None):
    return disk_config(ctx, seed=seed, exclude=(HOLE,), regulariser=reg, reg_weight=lam, iterations=iterations)


def search_runs(ctx: Context, done=None) -> dict:
    """Stage 1: every λ of the grid with the search seeds, at the main runs' budget, and the references."""
    out = {f"search/{reg}/{lam:g}/s{s}": _hole(ctx, s, reg, lam) for reg in regularisers(ctx)[1:]
           for lam in lambda_grid(ctx, reg) for s in search_seeds(ctx)}
    return out | per_seed(ctx, lambda s: _hole(ctx, s), "none") | per_seed(ctx, lambda s: disk_config(ctx, seed=s),
                                                                           "biased")


def validation_set(ctx: Context) -> torch.Tensor:
    """Disks from the training distribution (hole excluded), with a seed of their own: (N, 1, m, m)."""
    return _hole(ctx, 0).data.make(ctx.pick(300, 1000, tiny=32), seed=VALIDATION_SEED)[0]


def select_lambda(lambdas, val_ratio, train_ratio, tolerance: float = TOLERANCE) -> tuple[float, bool]:
    """(the largest λ whose validation and training MSE ratios to the unregularised runs are ≤ tolerance, True),
    or (the smallest λ, False) if none is. Ratios: means over the search seeds."""
    ok = [lam for lam, v, t in zip(lambdas, val_ratio, train_ratio, strict=True) if v <= tolerance and t <= tolerance]
    return (float(max(ok)), True) if ok else (float(min(lambdas)), False)


def search_table(ctx: Context, done: dict) -> tuple[dict, dict, list]:
    """Chosen λ per regulariser, whether it fits, and one row per (regulariser, λ) with the seed-mean ratios."""
    val = validation_set(ctx)
    images, radii = disk_test_set(ctx)
    hole = torch.from_numpy(in_hole(radii.numpy()))
    seeds = search_seeds(ctx)
    refs = {s: done[f"none/s{s}"] for s in seeds}
    ref_val = {s: float(mse_per_image(r.model, val).mean()) for s, r in refs.items()}
    ref_train = {s: float(r.metrics["train_mse"]) for s, r in refs.items()}
    ref_hole = float(np.mean([mse_per_image(r.model, images[hole]).mean() for r in refs.values()]))
    chosen, fits = {"none": 0.0}, {"none": True}
    rows = [["none", 0.0, 1.0, 1.0, float(np.mean(list(ref_val.values()))), ref_hole, True]]
    for reg in regularisers(ctx)[1:]:
        lams = list(lambda_grid(ctx, reg))
        vr, tr, vm, hm = [], [], [], []
        for lam in lams:
            runs = {s: done[f"search/{reg}/{lam:g}/s{s}"] for s in seeds}
            v = {s: float(mse_per_image(r.model, val).mean()) for s, r in runs.items()}
            vr.append(float(np.mean([v[s] / ref_val[s] for s in seeds])))
            tr.append(float(np.mean([float(r.metrics["train_mse"]) / ref_train[s] for s, r in runs.items()])))
            vm.append(float(np.mean(list(v.values()))))
            hm.append(float(np.mean([mse_per_image(r.model, images[hole]).mean() for r in runs.values()])))  # figure
        chosen[reg], fits[reg] = select_lambda(lams, vr, tr)
        rows += [[reg, lam, v, t, m, h, lam == chosen[reg]]
                 for lam, v, t, m, h in zip(lams, vr, tr, vm, hm, strict=True)]
    return chosen, fits, rows


def main_runs(ctx: Context, done: dict) -> dict:
    """Stage 2: every seed at the chosen λ (the search seeds' runs are the same configs, trained once)."""
    chosen, _, _ = search_table(ctx, done)
    out = {}
    for reg in regularisers(ctx)[1:]:
        out |= per_seed(ctx, lambda s, r=reg: _hole(ctx, s, r, chosen[r]), reg)
    return out


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


def z_growth(run, early: int = EARLY) -> float:
    """max |z| of the batch at the end of training (mean of the last 3 log records) ÷ at iteration N/early (the
    nearest log record): the amplitude of the code over training, from the run's history. NaN without records."""
    recs = [r for r in run.history if "z_abs_max" in r]
    if len(recs) < 4:
        return float("nan")
    target = run.config.iterations / early
    start = min(recs, key=lambda r: abs(r["iteration"] - target))["z_abs_max"]
    end = float(np.mean([r["z_abs_max"] for r in recs[-3:]]))
    return end / start if start > 0 else float("nan")


def measure(run, images, radii) -> dict:
    r = radii.double().numpy()
    hole = in_hole(r)
    mse = mse_per_image(run.model, images).astype(np.float64)
    z = codes(run.model, images)[:, 0].double().numpy()
    return {"hole_mse": float(mse[hole].mean()), "outside_mse": float(mse[~hole].mean()),
            "train_mse": float(run.metrics["train_mse"]), "z_max": float(np.abs(z).max()),
            "z_range": float(np.ptp(z)), "monotone": abs(spearman(z, r)), "z_growth": z_growth(run), "z": z}


def gap_closed(h_reg: float, h_none: float, h_control: float) -> float:
    """Fraction of the hole's excess MSE (none over the all-radii control) that a regulariser removes: 1 when
    it matches the control, 0 when no better than no regulariser, < 0 when worse; NaN without a gap."""
    gap = h_none - h_control
    return (h_none - h_reg) / gap if gap > 0 else float("nan")


def combine(*outcomes: str) -> str:
    """All must hold: 'fails' if one fails, 'holds' if all hold, 'inconclusive' otherwise."""
    return "fails" if "fails" in outcomes else ("holds" if all(o == "holds" for o in outcomes) else "inconclusive")


def verdict_of(outcomes: list[str]) -> str:
    """confirmed (all hold), not reproduced (none holds, none inconclusive), partly (some hold), else inconclusive."""
    if all(o == "holds" for o in outcomes):
        return "confirmed"
    if any(o == "holds" for o in outcomes):
        return "partly"
    return "not reproduced" if all(o == "fails" for o in outcomes) else "inconclusive"


def analyse(ctx: Context, done: dict) -> Result:
    chosen, fits, search_rows = search_table(ctx, done)
    regs = regularisers(ctx)
    images, radii = disk_test_set(ctx)
    per = {reg: [measure(run, images, radii) for run in seed_runs(done, reg)] for reg in regs}
    control = [measure(run, images, radii) for run in seed_runs(done, "biased")]
    n = len(ctx.seeds)

    def col(reg, key):
        return np.array([m[key] for m in per[reg]], np.float64)

    def diff(reg, key, other="none"):  # paired per seed: same seed, same data
        return seed_interval(col(reg, key) - col(other, key))

    h_control = float(np.mean([m["hole_mse"] for m in control]))
    d_hole = {reg: diff(reg, "hole_mse") for reg in regs[1:]}
    d_train = diff("l2_all", "train_mse")
    growth = {reg: seed_interval(np.log(col(reg, "z_growth"))) for reg in ("none", "l2_all")}
    d_growth = seed_interval(np.log(col("l2_all", "z_growth")) - np.log(col("none", "z_growth")))
    # (1) locality fails with the hole: it does not lower the hole MSE (its paired difference is above 0)
    locality = side_of(d_hole["locality"], "above")
    # (2) l2_all: z grows during training (log growth > 0, and more than without regulariser), and it hurts (hole
    # MSE or training MSE above no regulariser's)
    hurts = "holds" if "holds" in (side_of(d_hole["l2_all"], "above"), side_of(d_train, "above")) else combine(
        side_of(d_hole["l2_all"], "above"), side_of(d_train, "above"))
    z_grows = combine(side_of(growth["l2_all"], "above"), side_of(d_growth, "above"))
    l2_all = combine(z_grows, hurts)
    # (3) l2_encoder generalises best: lower hole MSE than none, and than each other regulariser (paired)
    others = [r for r in PAPER_REGULARISERS[1:] if r != "l2_encoder"]
    encoder = combine(side_of(d_hole["l2_encoder"], "below"),
                      *[side_of(seed_interval(col("l2_encoder", "hole_mse") - col(o, "hole_mse")), "below")
                        for o in others])
    outcomes = [locality, l2_all, encoder]
    verdict = verdict_of(outcomes)
    resc = rescaling_check(seed_runs(done, "l2_encoder")[0].model, images)

    def ci(t):
        return f"{t[0]:.3g} [{t[1]:.3g}, {t[2]:.3g}]"

    numbers = {"subclaims_holding": Number(int(sum(o == "holds" for o in outcomes)), "how many of the three sub-claims "
                                           "hold (locality fails; l2_all lets z grow and hurts; l2_encoder generalises "
                                           f"best); inconclusive: {sum(o == 'inconclusive' for o in outcomes)}")}
    for reg in regs[1:]:
        numbers[f"{reg}_hole_diff"] = Number(
            d_hole[reg][0], f"{reg} (λ = {chosen[reg]:g}) minus none: hole MSE, paired per seed, mean and "
            f"95% bootstrap interval {ci(d_hole[reg])}")
    for reg in regs:
        sd = col(reg, "hole_mse").std(ddof=1) if n > 1 else 0.0
        numbers[f"{reg}_hole_mse"] = Number(
            float(col(reg, "hole_mse").mean()), f"{reg} (λ = {chosen[reg]:g}): test MSE inside the hole "
            f"{HOLE[0]:g} < r "
            f"< {HOLE[1]:g}, mean over {n} seeds (std {sd:.2g})")
    for reg in regs[1:]:
        numbers[f"{reg}_gap_closed"] = Number(gap_closed(float(col(reg, "hole_mse").mean()),
                                                         float(col("none", "hole_mse").mean()), h_control),
                                              f"{reg}: fraction of the hole's excess MSE over the all-radii control "
                                              f"removed (seed means; the gap none − control is "
                                              f"{float(col('none', 'hole_mse').mean()) - h_control:.3g})")
    numbers |= {
        "control_hole_mse": Number(h_control, "control: the all-radii network's test MSE on the hole radii"),
        "l2_all_log_z_growth": Number(growth["l2_all"][0], "l2_all: log(max |z| at the end ÷ at iteration N/8), "
                                      f"mean over seeds, interval {ci(growth['l2_all'])} (> 0: z grows)"),
        "none_log_z_growth": Number(growth["none"][0], f"the same without regulariser, interval {ci(growth['none'])}"),
        "l2_all_minus_none_log_z_growth": Number(d_growth[0], f"paired difference of the two, interval {ci(d_growth)}"),
        "l2_all_train_diff": Number(d_train[0], f"l2_all minus none: training MSE, paired, interval {ci(d_train)}"),
        "rescaling_output_change": Number(resc["output_change"], f"l2_encoder, first seed: largest output change when "
                                          f"the encoder is rescaled by s = {RESCALE:g} per layer and the decoder's "
                                          "first kernel by s^-L (float64 round-off: the outputs are unchanged)"),
        "rescaling_penalty_ratio": Number(resc["penalty_ratio"], "the encoder's Σ‖w‖² after / before the same "
                                          f"rescaling (s² = {RESCALE ** 2:g}): the penalty can be made as small as "
                                          "wanted at the same outputs"),
    }
    rule = (f"each regulariser at its chosen λ; per seed, paired differences with no regulariser (same seed and data), "
            "and a 95% bootstrap interval of their mean over seeds: a sub-claim holds when the interval lies "
            "on its side of 0, fails when it lies on the other, and is inconclusive when it contains 0. (1) locality "
            "fails: hole MSE(locality) − hole MSE(none) > 0; (2) l2_all lets z grow and hurts: log(|z| at the end ÷ "
            "at N/8) > 0 and larger than without regulariser, and its hole MSE or training MSE above none's; (3) "
            "l2_encoder generalises best: its hole MSE below none's and below each other regulariser's. Confirmed if "
            "all three hold, partly if one or two, not reproduced if none holds and none is inconclusive, "
            f"inconclusive at {n} seeds otherwise.")
    control_text = ("no regulariser on the same seed and data (the paired difference), and the same network trained on "
                    "all radii (D1's runs) on the hole radii: the gap a regulariser could close. λ is chosen against "
                    "the unregularised runs, on data from the training distribution only.")

    def pm(reg, key):
        v = col(reg, key)
        return f"{v.mean():.3g} ± {v.std(ddof=1) if n > 1 else 0:.2g}"

    tables = [
        {"title": f"Per regulariser at its chosen λ, mean ± std over {n} seed(s) (train MSE on the run's training set, "
                  "outside the hole; |z| growth from the training history)",
         "columns": ["regulariser", "λ", "fits", "hole MSE", "hole MSE − none (paired, interval)",
                     "outside-hole test MSE", "train MSE", "max |z|", "|z| growth (end ÷ N/8)", "|Spearman(z, r)|"],
         "rows": [[reg, chosen[reg], fits[reg], pm(reg, "hole_mse"), ci(d_hole[reg]) if reg != "none" else "",
                   pm(reg, "outside_mse"), pm(reg, "train_mse"), pm(reg, "z_max"), pm(reg, "z_growth"),
                   pm(reg, "monotone")] for reg in regs]},
        {"title": f"λ search (seeds {list(search_seeds(ctx))}, the main runs' budget; chosen: the largest λ whose "
                  f"validation and training MSE, as ratios to the unregularised run of the same seed averaged over "
                  f"the seeds, are ≤ {TOLERANCE:g}; validation disks from the training distribution; the hole MSE is "
                  "shown, never used)",
         "columns": ["regulariser", "λ", "validation ratio", "train ratio", "validation MSE", "hole MSE", "chosen"],
         "rows": search_rows},
        {"title": "Sub-claims", "columns": ["sub-claim", "outcome"],
         "rows": [["locality fails with the hole", locality], ["l2_all lets z grow during training", z_grows],
                  ["l2_all hurts (hole or training MSE)", hurts], ["l2_encoder generalises best", encoder]]},
    ]
    notes = "`none` are the D6 hole runs and the control the D1 runs (same recipe)."
    if EXTRA in regs:
        notes += f" `{EXTRA}` (released code) is reported but not part of the sub-claims."
    unfit = [reg for reg in regs[1:] if not fits[reg]]
    if unfit:
        notes += (f" No λ of the grid fits the data for {', '.join(unfit)}: they run at the smallest λ of their "
                  "grid.")
    figures = ["d7_codes.png", "d7_lambda_search.png", "d7_z_over_training.png"]
    _plot_codes(ctx.figure(figures[0]), radii.double().numpy(), per, chosen)
    _plot_search(ctx.figure(figures[1]), search_rows, h_control)
    _plot_trajectory(ctx.figure(figures[2]), {reg: seed_runs(done, reg) for reg in ("none", "l2_all")})
    values = {f"{reg}_hole_diff": (col(reg, "hole_mse") - col("none", "hole_mse")).tolist() for reg in regs[1:]}
    values |= {f"{reg}_hole_mse": col(reg, "hole_mse").tolist() for reg in regs}
    values["l2_all_log_z_growth"] = np.log(col("l2_all", "z_growth")).tolist()
    log_growth = {reg: np.log(col(reg, "z_growth")) for reg in ("none", "l2_all")}
    values["l2_all_minus_none_log_z_growth"] = (log_growth["l2_all"] - log_growth["none"]).tolist()
    headline = (f"locality fails: {locality}; l2_all lets z grow: {z_grows}, hurts: {hurts}; l2_encoder best: "
                f"{encoder} (paired intervals over {n} seeds)")
    return Result(numbers, verdict, rule, control_text, figures, tables, notes, per_seed=values, headline=headline)


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
    """Hole MSE and training MSE ratio against λ, one panel per regulariser; none and the control as lines."""
    regs = [reg for reg in dict.fromkeys(row[0] for row in rows) if reg != "none"]
    ref = next(row for row in rows if row[0] == "none")
    fig, axes = new_figure(len(regs), width=3.4, height=3.0)
    for ax, reg in zip(axes.flat, regs, strict=True):
        rr = [row for row in rows if row[0] == reg]
        lam = [row[1] for row in rr]
        ax.loglog(lam, [row[5] for row in rr], "o-", ms=3, label="hole MSE")
        ax.loglog(lam, [row[4] for row in rr], "s--", ms=3, label="validation MSE")
        ax.axhline(ref[5], color="tab:blue", lw=0.8, ls=":", label="hole MSE, none")
        ax.axhline(ref[4], color="tab:orange", lw=0.8, ls=":", label="validation MSE, none")
        ax.axhline(h_control, color="k", lw=0.8, ls="-.", label="hole radii, all-radii control")
        for row in rr:
            if row[6]:
                ax.axvline(row[1], color="0.4", lw=0.8)
        ax.set_title(reg, fontsize=9)
        ax.set_xlabel("λ")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("per-pixel MSE (search seeds' mean)")
    axes[0, 0].legend(fontsize=6)
    save_figure(fig, path)


def _plot_trajectory(path, runs: dict):
    """max |z| of the training batch against iteration, every seed, for none and l2_all (from the histories)."""
    fig, axes = new_figure(width=5.0, height=3.4)
    ax = axes[0, 0]
    for reg, color in zip(runs, ("tab:blue", "tab:red"), strict=False):
        for k, run in enumerate(runs[reg]):
            recs = [r for r in run.history if "z_abs_max" in r]
            ax.plot([r["iteration"] for r in recs], [r["z_abs_max"] for r in recs], "-", color=color, lw=0.8,
                    alpha=0.7, label=reg if k == 0 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("max |z| over the training batch")
    ax.set_yscale("log")
    ax.set_title("|z| over training (every seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
