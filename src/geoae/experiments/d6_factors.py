"""D6F: which item of the recipe decides whether the hole is interpolated (a diagnostic of D6, not a claim).

D6's verdict on the hole may differ between the two sources' recipes (``geoae.recipes``: ``released`` and
``iclr2018``; a review found so at 3,000 iterations). Starting from the ``released`` recipe, one item at a time
is set to its ``iclr2018`` value:

    architecture  keras63 (63 × 63, valid convolutions)  → paper64 (64 × 64, zero-insertion upsampling)
    alpha         0.05                                    → 0.2
    lr            0.01                                    → 0.001
    batch         64                                      → 300 (same number of images seen)
    rendering     blurred, 8-bit                          → binary
    kept weights  best-batch snapshot every 500 steps     → last iterate

Each variant is trained on the hole data (radii without (11, 18)) and on all radii (its control), for the
first three seeds of the profile (the first only in the quick profile), and scored as D6 scores its runs
(``d6.unseen_scores``) on the variant's own test disks. A factor *decides* if changing it alone flips the
outcome of the base recipe: most seeds fail in the hole with one value and none with the other.
"""

from __future__ import annotations

import numpy as np

from ..plots import new_figure, save_figure
from ..recipes import get_recipe
from . import sources
from .common import Context, Number, Result, mean_std
from .d6 import HOLE, MSE_FAIL, RADIUS_FAIL, in_hole, unseen_scores

ID = "D6F"
TITLE = "What decides the hole: one recipe item at a time, from the released recipe to the ICLR 2018 one"
CLAIM = ("Not a claim of the paper: a diagnostic. A review found D6's hole interpolated under one recipe and not "
         "under the other (at 3,000 iterations); changing one item of the released recipe at a time shows which "
         "item decides the outcome, if one does.")
PAPER = sources.statement("D6F")

BASE, OTHER = "released", "iclr2018"
FACTORS = {  # factor -> the recipe items set to the other recipe's value
    "architecture": {"arch": "paper64"},
    "alpha": {"alpha": 0.2},
    "lr": {"lr": 1e-3},
    "batch": {"batch_size": 300},
    "rendering": {"rendering": "binary", "quantise": 0},
    "kept weights": {"keep": "last"},
}
N_SEEDS = 3  # in the paper profile; one in the quick profile (a first look: 12 more runs)


def seeds(ctx: Context) -> tuple[int, ...]:
    return ctx.seeds[:ctx.pick(1, N_SEEDS, tiny=1)]


def variants() -> dict[str, dict]:
    """{name: overrides} of the base recipe: the base itself ("released") and one variant per factor."""
    return {BASE: {}} | FACTORS


def runs(ctx: Context, done=None) -> dict:
    """Per variant and seed: a hole run and an all-radii control."""
    base = get_recipe(BASE)
    out = {}
    for name, change in variants().items():
        for s in seeds(ctx):
            out[f"{name}/hole/s{s}"] = base.config(ctx.profile, seed=s, exclude=(HOLE,), **change)
            out[f"{name}/control/s{s}"] = base.config(ctx.profile, seed=s, **change)
    return out


STAGES = (runs,)


def _test_set(ctx: Context, change: dict):
    return get_recipe(BASE).with_items(**change).test_set(ctx.profile)


def analyse(ctx: Context, done: dict) -> Result:
    rows, per = [], {}
    for name, change in variants().items():
        images, radii = _test_set(ctx, change)
        mask = in_hole(radii.double().numpy())
        sc = [unseen_scores(done[f"{name}/hole/s{s}"].model, done[f"{name}/control/s{s}"].model, images, mask)
              for s in seeds(ctx)]
        per[name] = sc
        ratio, err = mean_std([x["mse_ratio"] for x in sc]), mean_std([x["radius_error_model"] for x in sc])
        failing = int(sum(x["fails"] for x in sc))
        rows.append([name, _describe(change), failing, len(sc), ratio[0], ratio[1], err[0], err[1]])
    n = len(seeds(ctx))
    base_fails = sum(x["fails"] for x in per[BASE])
    deciding = deciding_factors({name: [x["fails"] for x in sc] for name, sc in per.items()})
    numbers = {
        "deciding_factors": Number(len(deciding), "recipe items that flip the hole's outcome alone: "
                                   + (", ".join(deciding) if deciding else "none")),
        "base_seeds_failing": Number(int(base_fails), f"released recipe: seeds (of {n}) that fail in the hole"),
    }
    for name in FACTORS:
        numbers[f"{name.replace(' ', '_')}_seeds_failing"] = Number(
            int(sum(x["fails"] for x in per[name])), f"released recipe with {name} = {OTHER}'s: seeds (of {n}) that "
            "fail in the hole")
    for name in variants():
        numbers[f"{name.replace(' ', '_')}_mse_ratio"] = Number(
            float(np.mean([x["mse_ratio"] for x in per[name]])), f"{name}: hole MSE / its all-radii control's on the "
            "same radii, mean over seeds")
    rule = (f"a seed fails in the hole as in D6 (MSE ≥ {MSE_FAIL:g}× its control's and radius error ≥ "
            f"{RADIUS_FAIL:g} px). The outcome of a variant is 'fails' if most seeds fail, 'interpolates' if none "
            "does, 'mixed' otherwise; a factor decides if its variant's outcome is the opposite of the base "
            "recipe's. No verdict on the paper: this explains D6's recipes.")
    tables = [{"title": f"One item at a time from `{BASE}` to `{OTHER}`: the hole, {n} seed(s) each",
               "columns": ["variant", "item changed", "seeds failing", "of", "MSE ÷ control (mean)", "(std)",
                           "radius error px (mean)", "(std)"], "rows": rows}]
    notes = (f"Base outcome: {outcome([x['fails'] for x in per[BASE]])} ({base_fails} of {n} seeds fail). "
             "Deciding item(s): "
             f"{', '.join(deciding) if deciding else 'none alone'}.")
    figures = ["d6f_factors.png"]
    _plot(ctx.figure(figures[0]), per)
    return Result(numbers, "measured", rule, "each variant's own all-radii run (same seed, same items): the "
                  "denominator of its hole MSE ratio", figures, tables, notes,
                  headline=f"released recipe: {outcome([x['fails'] for x in per[BASE]])} in the hole; deciding "
                           f"item(s): {', '.join(deciding) if deciding else 'none alone'}")


def outcome(fails: list[bool]) -> str:
    """'fails' if most seeds fail in the hole, 'interpolates' if none does, 'mixed' otherwise."""
    k = sum(bool(f) for f in fails)
    return "fails" if k > len(fails) / 2 else ("interpolates" if k == 0 else "mixed")


def deciding_factors(fails: dict[str, list[bool]]) -> list[str]:
    """The factors whose variant has the opposite outcome of the base recipe's (``fails[BASE]``); none when the
    base is mixed."""
    base = outcome(fails[BASE])
    return [name for name in FACTORS if name in fails and base != "mixed"
            and {base, outcome(fails[name])} == {"fails", "interpolates"}]


def _describe(change: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in change.items()) or "(the released recipe)"


def _plot(path, per: dict):
    """Hole MSE ÷ control and radius error per variant; dots are seeds, lines the failure thresholds."""
    names = list(per)
    fig, axes = new_figure(2, width=5.2, height=3.4)
    for ax, key, thr, label in ((axes[0, 0], "mse_ratio", MSE_FAIL, "hole MSE ÷ control"),
                                (axes[0, 1], "radius_error_model", RADIUS_FAIL, "radius error (px)")):
        for k, name in enumerate(names):
            vals = [x[key] for x in per[name]]
            ax.plot([k] * len(vals), vals, "o", ms=4, color="tab:red" if name == BASE else "tab:blue", alpha=0.7)
            ax.plot([k - 0.25, k + 0.25], [np.mean(vals)] * 2, "k-", lw=1.5)
        ax.axhline(thr, color="0.4", ls="--", lw=0.8, label="failure threshold")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
