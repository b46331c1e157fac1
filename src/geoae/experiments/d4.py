"""D4: a trained bias-free autoencoder finds the optimum of ICLR 2018 Prop. 2: f ≈ Airy f̂ and z ∝ ĥ(r).

Uses the bias-free runs (``disk_config(..., bias=False)``, shared with D3 and D5), trained on radii
U(0, R), R the recipe's largest radius (32 on 64 × 64, 31.5 on 63 × 63). For each run we compare

- the learned profile f = D(s) (s = ±1, the sign the codes take: a bias-free d = 1 decoder draws
  |z|·D(sign z), Prop. 1) with the Airy profile f̂ of that R sampled at the pixel centres:
  ``theory.profile_distance`` = min_a ‖a·f − f̂‖/‖f̂‖ (relative L2, invariant to the free scale);
- the learned training loss (``metrics['train_mse']``, on the run's own 1,000 training images) with the
  exact lower bound for any bias-free d = 1 network on those images: the rank-1 truncated SVD of the
  training matrix (``theory.discrete_optimum``), ratio loss / optimum ≥ 1;
- the codes s·z of the evenly spaced test disks with ĥ(r) (Pearson), and with the discrete optimum's
  coefficient ⟨x, f̂_svd⟩ of the same test images.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import theory
from ..plots import label_axes, new_figure, save_figure
from ..train import BatchSource
from . import sources
from .common import Context, Number, Result, codes, disk_test_set, pearson, r_train, seed_runs, verdict_from
from .d3 import bias_free_runs

ID = "D4"
TITLE = "A trained bias-free network finds the optimum: f ≈ Airy f̂, z ∝ ĥ(r)"
CLAIM = ("A bias-free autoencoder (d = 1) trained on disks of radii up to R converges to the optimum of the "
         "decoding energy (Prop. 2): its decoder draws the Airy profile f̂(ρ) ∝ √3·Ai(−x₁ρ/R) + Bi(−x₁ρ/R) "
         "and its code is proportional to the weighted area ĥ(r).")
PAPER = sources.statement("D4")  # what the source says (sources.py)

# confirmed: the network reaches the discrete optimum of its own data (loss, profile), and that optimum and the
# learned profile are the Airy f̂ (the continuous theory on the pixel grid)
LOSS_OK, OPTIMUM_OK, AIRY_OK, CORR_OK = 1.02, 0.03, 0.05, 0.99
LOSS_PARTLY, PROFILE_PARTLY, CORR_PARTLY = 1.10, 0.15, 0.95  # partly
STAGES = (bias_free_runs,)  # one bias-free run per seed (shared with D3, D5)


def scale_to(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """a·image with a = argmin ‖a·image − target‖ (the free scale of a separable output h·f)."""
    sq = float(np.sum(image * image))
    return image * (float(np.sum(image * target)) / sq if sq > 0 else 0.0)


def relative_distance(image: np.ndarray, target: np.ndarray) -> float:
    """min_a ‖a·image − target‖ / ‖target‖."""
    return float(np.linalg.norm(scale_to(image, target) - target) / np.linalg.norm(target))


def code_sign(z: np.ndarray) -> float:
    """+1 or −1: the sign most codes take (the learned profile is D(sign))."""
    return 1.0 if float(np.sum(np.sign(z))) >= 0 else -1.0


@torch.no_grad()
def measure(run, images: torch.Tensor, radii: torch.Tensor, R: float) -> dict:
    """Profile distance, loss ratio and code correlations of one bias-free run."""
    train_images = BatchSource(run.config).images  # exactly the run's training set
    opt = theory.discrete_optimum(train_images)
    z = codes(run.model, images)[:, 0].double().numpy()
    s = code_sign(z)
    run.model.eval()
    profile = run.model.decode(torch.tensor([[s]], dtype=torch.float32))[0, 0].double().numpy()
    airy = theory.f_hat_image(profile.shape[-1], R)
    svd_coef = images[:, 0].double().flatten(1).numpy() @ opt.profile.ravel()
    h = theory.h_hat(radii.double().numpy(), R)
    return {
        "seed": run.config.seed, "R": R,
        "loss_ratio": run.metrics["train_mse"] / opt.mse,
        "train_mse": run.metrics["train_mse"],
        "optimum_mse": opt.mse,
        "profile_vs_airy": theory.profile_distance(profile, R),
        "profile_vs_svd": relative_distance(profile, opt.profile),
        "svd_vs_airy": theory.profile_distance(opt.profile, R),
        "corr_z_h": pearson(s * z, h),
        "corr_z_svd": pearson(s * z, svd_coef),
        "same_sign": float(np.mean(s * z >= 0)),
        "z": s * z, "h": h, "profile": profile, "svd_profile": opt.profile, "airy": airy,
    }


def analyse(ctx: Context, done: dict) -> Result:
    runs = seed_runs(done, "bias_free")
    images, radii = disk_test_set(ctx)
    R = r_train(ctx)
    ms = [measure(run, images, radii, R) for run in runs]

    def col(key):
        return np.array([m[key] for m in ms], dtype=np.float64)

    loss, prof, opt, corr = col("loss_ratio"), col("profile_vs_airy"), col("profile_vs_svd"), col("corr_z_h")
    grid_gap = float(col("svd_vs_airy").max())
    numbers = {
        "loss_over_optimum_max": Number(float(loss.max()), "worst seed: final training MSE / the discrete optimum's "
                                        "MSE (rank-1 SVD of the run's own training images; ≥ 1)"),
        "profile_vs_optimum_max": Number(float(opt.max()), "worst seed: min_a ‖a·D(±1) − f̂_svd‖/‖f̂_svd‖, the learned "
                                         "profile against the discrete optimum's (top singular vector of the "
                                         "training images)"),
        "profile_vs_airy_max": Number(float(prof.max()), "worst seed: min_a ‖a·D(±1) − f̂‖/‖f̂‖ over the image's "
                                      f"pixels, f̂ the Airy profile of R = {R:g}"),
        "optimum_vs_airy": Number(grid_gap, "the discrete optimum's profile against Airy f̂ (theory vs the pixel grid "
                                  "and the finite training set; worst seed)"),
        "corr_z_h_min": Number(float(corr.min()), "worst seed: Pearson correlation of the code (sign-fixed) with ĥ(r) "
                               "on the test disks"),
        "corr_z_svd_coefficient_min": Number(float(col("corr_z_svd").min()), "worst seed: Pearson correlation of the "
                                             "code with the discrete optimum's coefficient ⟨x, f̂_svd⟩"),
        "loss_over_optimum_median": Number(float(np.median(loss)), "median over seeds of the loss ratio"),
        "profile_vs_airy_median": Number(float(np.median(prof)), "median over seeds of the profile distance to Airy"),
        "iterations": Number(int(runs[0].config.iterations), "training iterations of each run"),
    }
    confirmed = bool(np.all(loss < LOSS_OK) and np.all(opt < OPTIMUM_OK) and np.all(prof < AIRY_OK)
                     and grid_gap < AIRY_OK and np.all(corr > CORR_OK))
    partly = bool(np.median(loss) < LOSS_PARTLY and np.median(prof) < PROFILE_PARTLY
                  and np.median(corr) > CORR_PARTLY)
    rule = (f"confirmed if, for every seed, the network reaches the optimum of its data (loss / discrete optimum < "
            f"{LOSS_OK}, profile vs the discrete optimum's < {OPTIMUM_OK}) and the theory describes it (profile vs "
            f"Airy f̂ < {AIRY_OK}, the discrete optimum vs Airy < {AIRY_OK}, Pearson(z, ĥ) > {CORR_OK}); partly if "
            f"the medians over seeds of the loss ratio, the profile vs Airy and Pearson(z, ĥ) are < {LOSS_PARTLY}, "
            f"< {PROFILE_PARTLY} and > {CORR_PARTLY}; not reproduced otherwise.")
    control = ("the discrete optimum (rank-1 SVD of each run's own 1,000 training images) is the exact lower bound "
               "of any bias-free d = 1 network's loss, and its own distance to Airy (optimum_vs_airy) is the part of "
               "the profile error due to the pixel grid and the finite sample, not to training.")
    tables = [{"title": "Per seed (bias-free runs)",
               "columns": ["seed", "train MSE", "optimum MSE", "loss / optimum", "profile vs optimum",
                           "profile vs Airy", "optimum vs Airy", "Pearson z–ĥ", "codes of majority sign"],
               "rows": [[m["seed"], m["train_mse"], m["optimum_mse"], m["loss_ratio"], m["profile_vs_svd"],
                         m["profile_vs_airy"], m["svd_vs_airy"], m["corr_z_h"], m["same_sign"]] for m in ms]}]
    notes = ("The discrete optimum is the exact lower bound of the training loss of any bias-free d = 1 "
             "autoencoder on the same images (Eckart–Young), so the loss ratio and the profile against the "
             "optimum measure training alone; the profile against Airy adds the gap between the pixel grid with a "
             "finite sample of radii and the continuous solution (`optimum_vs_airy`).")
    figures = ["d4_profiles.png", "d4_codes.png"]
    _plot_profiles(ctx.figure(figures[0]), ms)
    _plot_codes(ctx.figure(figures[1]), ms)
    headline = (f"loss ÷ optimum ≤ {loss.max():.4g} (needs < {LOSS_OK:g}); profile vs optimum ≤ {opt.max():.3g} (needs "
                f"< {OPTIMUM_OK:g}), vs Airy ≤ {prof.max():.3g} (needs < {AIRY_OK:g}); Pearson(z, ĥ) ≥ "
                f"{corr.min():.5g}")
    return Result(numbers, verdict_from(confirmed, partly), rule, control, figures, tables, notes,
                  headline=headline)


def _plot_profiles(path, ms: list[dict]):
    """Radial profiles (azimuthal means) of the learned D(±1) and the SVD profile, scaled onto f̂."""
    fig, axes = new_figure(width=5.6, height=3.8)
    ax = axes[0, 0]
    airy, R = ms[0]["airy"], ms[0]["R"]
    rho_max = float(theory.pixel_radii(airy.shape).max())
    rho, f = theory.airy_curve(R, 400, rho_max=rho_max)
    ax.plot(rho, f, "k-", lw=2.2, label=f"Airy f̂ (R = {R:g})")
    rr, fs = theory.radial_profile(scale_to(ms[0]["svd_profile"], airy))
    ax.plot(rr, fs, "--", color="tab:orange", lw=1.6, label="discrete optimum (SVD)")
    for m in ms:
        rr, fl = theory.radial_profile(scale_to(m["profile"], airy))
        ax.plot(rr, fl, ".", ms=3.5, alpha=0.8, label=f"learned D(±1), seed {m['seed']}")
    ax.axvline(R, color="0.5", lw=0.8, ls=":")
    label_axes(ax, "radius ρ (px)", "profile (scaled onto f̂)", "Bias-free decoder profile vs Airy optimum")
    save_figure(fig, path)


def _plot_codes(path, ms: list[dict]):
    """Codes s·z against ĥ(r), with the least-squares line through the origin."""
    fig, axes = new_figure(width=5.0, height=3.8)
    ax = axes[0, 0]
    for m in ms:
        h, z = m["h"], m["z"]
        a = float(h @ z / (h @ h)) if h @ h > 0 else 0.0
        (line,) = ax.plot(h, z, ".", ms=4, label=f"seed {m['seed']} (ρ = {m['corr_z_h']:.4f})")
        ax.plot(h, a * h, "-", color=line.get_color(), lw=0.8, alpha=0.7)
    label_axes(ax, "ĥ(r) (optimal code, weighted area)", "learned code z (sign-fixed)",
               "Learned code vs ĥ(r); lines: z = a·ĥ")
    save_figure(fig, path)
