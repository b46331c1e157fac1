"""D3: a bias-free decoder is homogeneous, D(λz) = λD(z), so its outputs are h(r)·f(t) (ICLR 2018 Prop. 1).

Uses the bias-free runs (``disk_config(..., bias=False)``, shared with D4 and D5) and, for contrast, the
biased runs of D1. On the codes z of the test disks we measure

- the homogeneity error  max_{λ, z} ‖D(λz) − λD(z)‖ / ‖λD(z)‖  over λ ∈ {0.5, 2, 10};
- the rank-1 residual of the output matrix Y (one decoded test image per row): the energy fraction
  1 − σ₁²/Σσ² and the relative Frobenius residual ‖Y − Y₁‖_F / ‖Y‖_F = √(1 − σ₁²/Σσ²) of its best
  rank-1 approximation Y₁. With d = 1 the outputs are h(r)·f(t) when all codes share a sign (codes of both
  signs give the two images of Prop. 1, i.e. rank 2).

Homogeneity is a theorem (it holds by construction of a bias-free leaky-ReLU decoder), so measuring it is an
**implementation check** of our networks, not a finding. The empirical part of the claim is whether the
trained bias-free encoder gives every disk a code of one sign: only then are all outputs multiples of one
image, h(r)·f(t) (codes of both signs give two images). The verdict is that part; the rank-1 residual
confirms it.

Both are computed on a float64 copy of the decoder, so the bias-free numbers sit at float64 round-off and a
float32 accident cannot be mistaken for a violation (or vice versa).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..plots import image_rows, label_axes, new_figure, save_figure
from . import sources
from .common import Context, Number, Result, codes, disk_config, disk_test_set, per_seed, seed_runs, verdict_from

ID = "D3"
TITLE = "A bias-free decoder is homogeneous: outputs are h(r)·f(t)"
CLAIM = ("Without biases, a decoder of convolutions, zero-insertion upsampling and leaky ReLUs satisfies "
         "D(λz) = λD(z) for λ > 0 (Prop. 1); with d = 1 every output is one fixed image scaled by the code: "
         "y(t, r) = h(r) f(t).")
PAPER = sources.statement("D3")  # what the source says (sources.py)

LAMBDAS = (0.5, 2.0, 10.0)
HOMOGENEITY_TOL, RANK1_TOL, BROKEN = 1e-5, 1e-6, 1e-3
ONE_SIGN_PARTLY = 0.95  # partly: at least this fraction of the codes share one sign, for every seed
SHOW_RADII = (4.0, 10.0, 16.0, 22.0, 28.0)


def bias_free_runs(ctx: Context, done=None) -> dict:
    """One bias-free run per seed (shared with D4, D5)."""
    return per_seed(ctx, lambda s: disk_config(ctx, seed=s, bias=False), "bias_free")


def runs(ctx: Context, done=None) -> dict:
    """The bias-free runs and, for contrast, the biased ones (D1's), one per seed; both shared."""
    return bias_free_runs(ctx) | per_seed(ctx, lambda s: disk_config(ctx, seed=s), "biased")


STAGES = (runs,)


@torch.no_grad()
def homogeneity_error(decode, z: torch.Tensor, lambdas=LAMBDAS) -> float:
    """max over λ and codes of ‖D(λz) − λD(z)‖ / ‖λD(z)‖ (0/0 counts as 0, x/0 as inf).

    ``decode`` maps codes (N, d) to outputs (e.g. ``model.decode``); ``z`` (N, d) has the dtype it expects.
    """
    y = decode(z).flatten(1)
    worst = 0.0
    for lam in lambdas:
        num = (decode(lam * z).flatten(1) - lam * y).norm(dim=1)
        den = (lam * y).norm(dim=1)
        ratio = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny),
                            torch.where(num > 0, torch.inf, 0.0))
        worst = max(worst, float(ratio.max()))
    return worst


def rank1_residual(outputs) -> tuple[float, float, np.ndarray]:
    """(1 − σ₁²/Σσ², ‖Y − Y₁‖_F/‖Y‖_F, σ (descending)) for the matrix Y with one output per row (float64).

    NaN for an all-zero Y.
    """
    Y = outputs.detach().double().flatten(1).numpy() if hasattr(outputs, "detach") else np.asarray(
        outputs, dtype=np.float64).reshape(len(outputs), -1)
    s = np.linalg.svd(Y, compute_uv=False)
    total = float(np.sum(s * s))
    if total == 0:
        return float("nan"), float("nan"), s
    tail = float(np.sum(s[1:] ** 2)) / total  # accurate even when σ₁² ≈ Σσ²
    return tail, float(np.sqrt(tail)), s


def float64_decoder(model):
    """A float64 copy of the model's decoder, as a function z (N, d) → outputs."""
    m = copy.deepcopy(model).double().eval()
    return m.decode


def analyse(ctx: Context, done: dict) -> Result:
    images, radii = disk_test_set(ctx)
    free, biased = seed_runs(done, "bias_free"), seed_runs(done, "biased")

    def measure(run):
        z = codes(run.model, images).double()
        decoder = float64_decoder(run.model)
        with torch.no_grad():
            y = decoder(z)
        tail, frob, s = rank1_residual(y)
        signs = torch.sign(z[:, 0])
        same_sign = float(max((signs >= 0).double().mean(), (signs <= 0).double().mean()))
        return {"homogeneity": homogeneity_error(decoder, z), "rank1_energy": tail,
                "rank1_frob": frob, "sv": s, "same_sign": same_sign, "y": y}

    mf = [measure(run) for run in free]
    mb = [measure(run) for run in biased]
    hf = np.array([m["homogeneity"] for m in mf])
    rf = np.array([m["rank1_frob"] for m in mf])
    sign = np.array([m["same_sign"] for m in mf])
    numbers = {
        "codes_same_sign_min": Number(float(sign.min()), "smallest fraction, over bias-free seeds, of the test codes "
                                      "sharing the majority sign (1: every output is a multiple of one image)"),
        "bias_free_rank1_residual": Number(float(rf.max()), "max over seeds of ‖Y − Y₁‖_F/‖Y‖_F, Y = decoded test "
                                           "disks (rows), Y₁ its best rank-1 approximation, bias-free (float64)"),
        "bias_free_rank1_energy": Number(float(max(m["rank1_energy"] for m in mf)), "max over seeds of 1 − σ₁²/Σσ² "
                                         "for the same Y, bias-free"),
        "implementation_check_homogeneity": Number(float(hf.max()), "implementation check (a theorem): max over "
                                                   "seeds, λ ∈ {0.5, 2, 10} and test codes of ‖D(λz) − λD(z)‖/"
                                                   "‖λD(z)‖, bias-free decoder (float64)"),
        "biased_homogeneity_error": Number(float(min(m["homogeneity"] for m in mb)), "control: min over seeds of the "
                                           "homogeneity error of the biased decoder"),
        "biased_rank1_residual": Number(float(min(m["rank1_frob"] for m in mb)), "control: min over seeds of the "
                                        "rank-1 residual, biased"),
    }
    notes = ("Homogeneity holds by construction: a failure of the implementation check would be a bug in the "
             "network code, not a result about the paper. ")
    if not bool(np.all(hf < HOMOGENEITY_TOL)):
        notes += f"IMPLEMENTATION CHECK FAILED: homogeneity error {float(hf.max()):.3g} ≥ {HOMOGENEITY_TOL:g}. "
    if sign.min() < 1:
        notes += ("Some bias-free codes have both signs: Prop. 1 then gives two images (one per sign), so the "
                  "output matrix can be rank 2 although D stays homogeneous.")

    figures = ["d3_normalised_outputs.png", "d3_normalised_profiles.png", "d3_singular_values.png"]
    idx = [int(torch.argmin((radii - w).abs())) for w in SHOW_RADII]
    titles = [f"r={float(radii[i]):.0f}" for i in idx]
    normalised = {"bias-free / max": normalise_max(mf[0]["y"][idx]),
                  "biased / max": normalise_max(mb[0]["y"][idx])}
    image_rows(ctx.figure(figures[0]), normalised, titles)
    _plot_profiles(ctx.figure(figures[1]), normalised, titles)
    _plot_singular_values(ctx.figure(figures[2]), free, biased, mf, mb)

    tables = [{"title": "Per run: code signs, rank-1 residual of the decoded test disks, homogeneity error",
               "columns": ["seed", "biases", "codes of majority sign", "rank-1 residual (Frobenius)",
                           "1 − σ₁²/Σσ²", "homogeneity error"],
               "rows": [[run.config.seed, run.config.model.bias, m["same_sign"], m["rank1_frob"], m["rank1_energy"],
                         m["homogeneity"]] for run, m in zip(free + biased, mf + mb, strict=True)]}]
    one_sign = bool(np.all(sign == 1.0)) and bool(np.all(rf < RANK1_TOL))
    rule = ("the empirical part of the claim decides: confirmed if, for every bias-free seed, all test codes share "
            f"one sign and the rank-1 residual is < {RANK1_TOL:g} (every output is h(r)·f(t)); partly if at least "
            f"{ONE_SIGN_PARTLY:g} of the codes share one sign for every seed; not reproduced otherwise. The "
            f"homogeneity error (< {HOMOGENEITY_TOL:g} expected by construction) is an implementation check.")
    control = (f"the biased decoders of D1: they break homogeneity and rank 1 (errors > {BROKEN:g} expected), so the "
               "measures can fail.")
    verdict = verdict_from(one_sign, bool(np.all(sign >= ONE_SIGN_PARTLY)))
    return Result(numbers, verdict, rule, control, figures, tables, notes)


def normalise_max(y: torch.Tensor) -> torch.Tensor:
    """Each image (N, 1, m, m) divided by its largest absolute value (all-zero images stay zero)."""
    return y.double() / y.flatten(1).abs().amax(1).clamp_min(1e-300)[:, None, None, None]


def _plot_profiles(path, normalised: dict[str, torch.Tensor], titles):
    """Radial profiles of max-normalised outputs, one panel per model: one curve if outputs are h(r)·f."""
    from ..theory import radial_profile

    fig, axes = new_figure(len(normalised), width=3.6, height=2.8)
    for ax, (label, y) in zip(axes.flat, normalised.items(), strict=True):
        for img, title in zip(y[:, 0].numpy(), titles, strict=True):
            rho, prof = radial_profile(img)
            ax.plot(rho, prof, lw=1.1, label=title)
        ax.set_title(f"{label}: radial profiles of D(z)/max", fontsize=9)
        ax.set_xlabel("distance to centre ρ (px)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)


def _plot_singular_values(path, free, biased, mf, mb, k: int = 12):
    fig, axes = new_figure(width=5.2, height=3.6)
    ax = axes[0, 0]
    for runs, ms, style in ((free, mf, "o-"), (biased, mb, "s--")):
        for run, m in zip(runs, ms, strict=True):
            s = m["sv"][:k]
            lab = f"{'bias-free' if not run.config.model.bias else 'biased'}, seed {run.config.seed}"
            ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s / s[0], 1e-17), style, ms=3, lw=1, label=lab)
    label_axes(ax, "index k", "σ_k / σ_1 of the decoded test disks", "singular values of the output matrix")
    return save_figure(fig, path)
