"""D7: which regulariser lets the autoencoder fill the hole in its training radii (paper Sec. 4.3).

All runs use the hole data of D6 (radii U(0, 32) without (11, 18)) and the paper's biased network. The
regularisers are the paper's ``locality`` (type 1), ``l2_all`` (type 2), ``l2_encoder`` (type 3), the
released code's ``contractive`` (an extra) and ``none`` (the D6 hole runs, shared).

**Choosing λ (no peeking at the hole).** The weight of each regulariser is chosen by a small search
before the main runs, on a separate seed (``SEARCH_SEED``, data and initialisation) and a shorter budget:

1. a reference run without regulariser gives the training MSE m₀ and, on its training images (batches
   of 64), the size ψ₀ of every penalty;
2. the grid is λ = c·m₀/ψ₀ for c ∈ ``GRID_FACTORS`` (the penalty starts at 0.1×, 1× and 10× the
   reconstruction loss), rounded to one significant digit;
3. each candidate is trained and scored by its MSE on a validation set drawn from the *training*
   distribution (hole excluded, its own seed); the chosen λ is the **largest** whose validation MSE stays
   within ``TOLERANCE``× the reference run's (the strongest regularisation that still fits the data), or
   the smallest λ of the grid if none does.

The hole's test radii enter nothing of this. The main runs then use the chosen λ for every seed.
"""

from __future__ import annotations

import math

import numpy as np

from ..plots import new_figure, save_figure
from ..train import BatchSource, compute_loss, train_many
from .common import Context, Result, codes, disk_config, disk_test_set, mean_std, mse_per_image, spearman, verdict_from

ID = "D7"
TITLE = "Regularisation: locality fails with holes, l2_all lets z grow, l2_encoder generalises best"
CLAIM = ("With a hole in the training radii: the locality-preserving regulariser (type 1) fails, since no "
         "training pair straddles the hole; weight decay on all weights (type 2) lets the decoder's weights "
         "shrink while the code z grows, and hurts; weight decay on the encoder only (type 3) gives the best "
         "interpolation inside the hole.")
PAPER = ("The paper shows the reconstructions and the code z(r) per regulariser on the hole data: only the "
         "encoder-only weight decay (type 3) reconstructs the disks of the hole and keeps z(r) monotone; no "
         "table of numbers is given.")

HOLE = (11.0, 18.0)
PAPER_REGULARISERS = ("none", "locality", "l2_all", "l2_encoder")  # the claim is about these
EXTRA = "contractive"  # the released code's penalty: paper and tiny profiles (costly double backward)
GRID_FACTORS = (0.1, 1.0, 10.0)
TOLERANCE = 1.5
SEARCH_SEED, VALIDATION_SEED = 100, 1_000_001
HOLE_FAIL, Z_GROWTH, TRAIN_HURT, BEST_GAIN = 3.0, 1.5, 1.2, 0.5


# ------------------------------------------------------------------------------------------ λ search


def regularisers(ctx: Context) -> tuple[str, ...]:
    """The regularisers compared (``none`` first); the quick profile leaves out the costly ``contractive``."""
    return ctx.pick(PAPER_REGULARISERS, (*PAPER_REGULARISERS, EXTRA), tiny=(*PAPER_REGULARISERS, EXTRA))


def _search_iterations(ctx: Context) -> int:
    return ctx.pick(600, 2000, tiny=4)


def _hole_config(ctx: Context, **kw):
    return disk_config(ctx, exclude=(HOLE,), **kw)


def reference_config(ctx: Context):
    """The unregularised run of the search (its own seed, the search budget)."""
    return _hole_config(ctx, seed=SEARCH_SEED, iterations=_search_iterations(ctx))


def round_sig(x: float) -> float:
    """x rounded to one significant digit (readable, reproducible λ)."""
    return float(f"{x:.0e}") if x > 0 and math.isfinite(x) else 0.0


def penalty_scales(run, regs, n_images: int = 512, batch: int = 64) -> dict[str, float]:
    """Mean penalty ψ of each regulariser in ``regs`` on the run's training images (batches of ``batch``)."""
    images = BatchSource(run.config).images[:n_images]
    model = run.model.eval()
    out = {}
    for reg in regs:
        vals = [float(compute_loss(model, x, reg, 1.0).penalty.detach()) for x in images.split(batch)
                if len(x) > 1]
        out[reg] = float(np.mean(vals))
    return out


def lambda_grid(train_mse: float, scales: dict[str, float]) -> dict[str, list[float]]:
    """λ = c·m₀/ψ₀ for c in GRID_FACTORS, per regulariser (ψ₀ = 0 gives the factors themselves)."""
    return {reg: [round_sig(c * train_mse / psi) if psi > 0 else c for c in GRID_FACTORS]
            for reg, psi in scales.items()}


def search_configs(ctx: Context, reference) -> list:
    """The candidate runs of the λ search, given the finished reference run."""
    regs = regularisers(ctx)[1:]
    grid = lambda_grid(reference.metrics["train_mse"], penalty_scales(reference, regs))
    return [_hole_config(ctx, seed=SEARCH_SEED, iterations=_search_iterations(ctx), regulariser=reg,
                         reg_weight=lam) for reg in regs for lam in grid[reg]]


def select_lambda(lambdas, val_mse, reference_mse: float, tolerance: float = TOLERANCE) -> float:
    """The largest λ whose validation MSE is ≤ tolerance × reference_mse; the smallest λ if none is."""
    ok = [lam for lam, v in zip(lambdas, val_mse, strict=True) if v <= tolerance * reference_mse]
    return float(max(ok)) if ok else float(min(lambdas))


def validation_set(ctx: Context):
    """Disks from the training distribution (hole excluded), with a seed of their own."""
    return _hole_config(ctx, seed=0).data.make(ctx.pick(300, 1000, tiny=32), seed=VALIDATION_SEED)[0]


def select(ctx: Context, reference, search_runs) -> tuple[dict[str, float], list[list]]:
    """Chosen λ per regulariser and the search table rows (regulariser, λ, val MSE, ratio, chosen)."""
    val = validation_set(ctx)
    ref_mse = float(mse_per_image(reference.model, val).mean())
    chosen, rows = {"none": 0.0}, [["none", 0.0, ref_mse, 1.0, True]]
    for reg in regularisers(ctx)[1:]:
        runs = [r for r in search_runs if r.config.regulariser == reg]
        lams = [r.config.reg_weight for r in runs]
        mses = [float(mse_per_image(r.model, val).mean()) for r in runs]
        chosen[reg] = select_lambda(lams, mses, ref_mse)
        rows += [[reg, lam, v, v / ref_mse, lam == chosen[reg]] for lam, v in zip(lams, mses, strict=True)]
    return chosen, rows


def main_configs(ctx: Context, chosen: dict[str, float]) -> list:
    """One run per regulariser and seed with the chosen λ (``none`` = D6's hole runs)."""
    return [_hole_config(ctx, seed=s, regulariser=reg, reg_weight=chosen[reg])
            for reg in regularisers(ctx) for s in ctx.seeds]


def configs(ctx: Context):
    """Reference run, λ-search candidates (both trained here, to choose λ), then the main runs."""
    ref_config = reference_config(ctx)
    (reference,) = train_many([ref_config], ctx.runs, progress=False)
    candidates = search_configs(ctx, reference)
    search_runs = train_many(candidates, ctx.runs, progress=False)
    chosen, _ = select(ctx, reference, search_runs)
    return [ref_config, *candidates, *main_configs(ctx, chosen)]


# -------------------------------------------------------------------------------------------- analysis


def measure(run, images, radii) -> dict:
    r = radii.double().numpy()
    hole = (r > HOLE[0]) & (r < HOLE[1])
    mse = mse_per_image(run.model, images).astype(np.float64)
    z = codes(run.model, images)[:, 0].double().numpy()
    return {"hole_mse": float(mse[hole].mean()), "outside_mse": float(mse[~hole].mean()),
            "train_mse": float(run.metrics["train_mse"]), "z_max": float(np.abs(z).max()),
            "z_range": float(np.ptp(z)), "monotone": abs(spearman(z, r)), "z": z}


def analyse(ctx: Context, runs) -> Result:
    reference = runs[0]
    regs = regularisers(ctx)
    k = (len(regs) - 1) * len(GRID_FACTORS)
    search_runs, main_runs = runs[1:1 + k], runs[1 + k:]
    chosen, search_rows = select(ctx, reference, search_runs)
    n = len(ctx.seeds)
    if len(main_runs) != len(regs) * n:
        raise ValueError(f"expected {len(regs) * n} main runs, got {len(main_runs)}")
    images, radii = disk_test_set(ctx)
    per = {reg: [measure(run, images, radii) for run in main_runs[i * n:(i + 1) * n]]
           for i, reg in enumerate(regs)}
    stats = {reg: {key: mean_std([m[key] for m in ms]) for key in
                   ("hole_mse", "outside_mse", "train_mse", "z_max", "z_range", "monotone")}
             for reg, ms in per.items()}

    def mean(reg, key):
        return stats[reg][key][0]

    locality_fails = mean("locality", "hole_mse") > HOLE_FAIL * mean("locality", "outside_mse")
    z_grows = mean("l2_all", "z_max") > Z_GROWTH * mean("none", "z_max")
    hurts = (mean("l2_all", "hole_mse") > mean("none", "hole_mse")
             or mean("l2_all", "train_mse") > TRAIN_HURT * mean("none", "train_mse"))
    l2_all_bad = z_grows and hurts
    best = min(PAPER_REGULARISERS, key=lambda reg: mean(reg, "hole_mse"))
    encoder_best = best == "l2_encoder" and mean("l2_encoder", "hole_mse") < BEST_GAIN * mean("none", "hole_mse")
    held = [locality_fails, l2_all_bad, encoder_best]

    numbers = {"subclaims_holding": int(sum(held))}
    descriptions = {"subclaims_holding": "how many of the three sub-claims hold (locality fails; l2_all lets "
                                         "z grow and hurts; l2_encoder generalises best)"}
    for reg in regs:
        numbers[f"{reg}_hole_mse"] = mean(reg, "hole_mse")
        descriptions[f"{reg}_hole_mse"] = (f"{reg} (λ = {chosen[reg]:g}): mean over seeds of the test MSE inside "
                                           f"the hole {HOLE[0]:g} < r < {HOLE[1]:g}")
    numbers |= {
        "locality_hole_over_outside": mean("locality", "hole_mse") / mean("locality", "outside_mse"),
        "l2_all_zmax_over_none": mean("l2_all", "z_max") / mean("none", "z_max"),
        "l2_encoder_hole_over_none": mean("l2_encoder", "hole_mse") / mean("none", "hole_mse"),
    }
    descriptions |= {
        "locality_hole_over_outside": "locality: hole MSE / outside-hole test MSE (seed means)",
        "l2_all_zmax_over_none": "l2_all: max |z| over the test disks / the same without regulariser (seed means)",
        "l2_encoder_hole_over_none": "l2_encoder: hole MSE / hole MSE without regulariser (seed means)",
    }
    rule = (f"three sub-claims, judged on the means over seeds: (1) locality fails if its hole MSE is > "
            f"{HOLE_FAIL:g}× its outside-hole test MSE; (2) l2_all lets z grow and hurts if its max |z| over the "
            f"test disks is > {Z_GROWTH:g}× that of no regulariser and either its hole MSE exceeds that of no "
            f"regulariser or its training MSE is > {TRAIN_HURT:g}× it; (3) l2_encoder generalises best if it has "
            f"the lowest hole MSE among none/locality/l2_all/l2_encoder and < {BEST_GAIN:g}× the hole MSE of no "
            "regulariser. confirmed if all three hold, partly if one or two, not reproduced if none. λ chosen "
            "beforehand by the search below (no test radius involved).")

    def pm(reg, key):
        return f"{stats[reg][key][0]:.3g} ± {stats[reg][key][1]:.2g}"

    tables = [
        {"title": f"Per regulariser, mean ± std over {n} seed(s) (test disks over [0, 32]; train MSE on the "
                  "run's training set, i.e. outside the hole)",
         "columns": ["regulariser", "λ", "hole MSE", "outside-hole test MSE", "train MSE", "max |z|",
                     "z range", "|Spearman(z, r)|"],
         "rows": [[reg, chosen[reg], pm(reg, "hole_mse"), pm(reg, "outside_mse"), pm(reg, "train_mse"),
                   pm(reg, "z_max"), pm(reg, "z_range"), pm(reg, "monotone")] for reg in regs]},
        {"title": f"λ search (seed {SEARCH_SEED}, {_search_iterations(ctx)} iterations; grid λ = c·m₀/ψ₀, "
                  f"c ∈ {list(GRID_FACTORS)}; chosen: the largest λ with validation MSE ≤ {TOLERANCE:g}× the "
                  "unregularised one; validation disks drawn from the training distribution)",
         "columns": ["regulariser", "λ", "validation MSE", "/ unregularised", "chosen"],
         "rows": search_rows},
        {"title": "Sub-claims", "columns": ["sub-claim", "holds"],
         "rows": [["locality fails with the hole", locality_fails], ["l2_all lets z grow", z_grows],
                  ["l2_all hurts", hurts], [f"l2_encoder generalises best (best: {best})", encoder_best]]},
    ]
    notes = ("`none` are the D6 hole runs. `contractive` (released code; paper profile only, as its double "
             "backward pass is costly) is reported but not part of the sub-claims. A regulariser whose λ search "
             "finds no λ within the tolerance gets the smallest λ of "
             "its grid (the search table shows it).")
    off = [f"{reg} {mean(reg, 'train_mse') / mean('none', 'train_mse'):.2g}×" for reg in regs[1:]
           if mean(reg, "train_mse") > TOLERANCE * mean("none", "train_mse")]
    if off:
        notes += (f" The search's tolerance did not carry over to the full budget: main-run training MSE relative "
                  f"to no regulariser is {', '.join(off)} (> {TOLERANCE:g}×), so the short search "
                  f"({_search_iterations(ctx)} iterations) over-estimated the λ these runs tolerate.")
    figures = ["d7_codes.png"]
    _plot_codes(ctx.figure(figures[0]), radii.double().numpy(), per, chosen)
    verdict = verdict_from(all(held), any(held))
    return Result(numbers, descriptions, verdict, rule, figures, tables, notes)


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
