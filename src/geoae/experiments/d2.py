"""D2: the encoder integrates: z is a monotone function of the disk's area (Newson et al., Sec. 4.1).

Uses the biased runs of D1 (same configs, trained once). On evenly spaced test disks we measure

- Spearman ρ(z, r): monotonicity of the code in the radius (hence in the area);
- R² of the affine fits z ≈ a·A + b (A = area = Σ pixels, exact for the ``area`` rendering) and
  z ≈ a·r + b: an encoder that *integrates* is closer to linear in the area than in the radius;
- the encoder's gradient maps ∂z/∂x (autograd) at a few radii: an integrator weights the whole disk.

The hand-crafted ``IntegratingEncoder`` (z = Σ x exactly, SPEC 2.3) is the reference: R²(area) = 1. The
authors' released model is measured the same way on its own 63 × 63 rendering of the test radii (skipped
when its weights or h5py are missing).
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import IntegratingEncoder
from ..plots import image_row, new_figure, save_figure
from .common import Context, Result, codes, disk_config, disk_test_set, r_squared, spearman, verdict_from
from .d1 import official_inputs, official_model

ID = "D2"
TITLE = "The encoder integrates: z is a monotone function of the area"
CLAIM = ("The trained encoder computes (a monotone function of) the area of the disk: the code z is a "
         "monotone function of the radius, close to an integral of the image.")
PAPER = ("The paper plots z against r for a trained encoder: a monotone curve that follows the area of the "
         "disk (a weighted sum of its pixels); the authors' released model gives z ≈ 0.049, 0.066, 0.139 at "
         "r = 0, 12, 30.")

RHO_MIN = 0.99
GRAD_RADII = (4.0, 12.0, 20.0, 28.0)


def configs(ctx: Context):
    """The biased baseline runs, identical to D1's (shared, trained once)."""
    return [disk_config(ctx, seed=s) for s in ctx.seeds]


def code_statistics(z, radii, area) -> dict[str, float]:
    """Spearman ρ(z, r), R²(z ~ area), R²(z ~ r) for codes z (N,); NaN when z is constant."""
    z = np.asarray(z, float)
    if np.ptp(z) == 0 or not np.all(np.isfinite(z)):
        return {"spearman": float("nan"), "r2_area": float("nan"), "r2_radius": float("nan")}
    return {"spearman": spearman(z, radii), "r2_area": r_squared(area, z), "r2_radius": r_squared(radii, z)}


def gradient_maps(model, images: torch.Tensor) -> torch.Tensor:
    """∂z/∂x for each image (N, 1, m, m) of a d = 1 encoder, same shape as ``images``."""
    model.eval()
    x = images.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.encode(x)[:, 0].sum(), x)  # images are independent in the batch
    return grad


def gradient_statistics(grads: torch.Tensor) -> dict[str, float]:
    """For gradient maps (K, 1, m, m) at K radii: the positive fraction Σ g⁺ / Σ |g| (mean over maps; 1 for
    a pure integrator) and the smallest cosine between two maps (1: the encoder is one linear functional
    z = ⟨w, x⟩ + b over these radii). NaN when a map is zero."""
    g = grads.detach().double().flatten(1)
    norms = g.norm(dim=1)
    if len(g) == 0 or bool((norms == 0).any()):
        return {"positive_fraction": float("nan"), "min_cosine": float("nan")}
    positive = (g.clamp_min(0).sum(1) / g.abs().sum(1)).mean()
    cos = (g @ g.T) / (norms[:, None] * norms[None, :])
    return {"positive_fraction": float(positive), "min_cosine": float(cos.min())}


def analyse(ctx: Context, runs) -> Result:
    images, radii = disk_test_set(ctx)
    r = radii.numpy().astype(float)
    area = images.double().sum((1, 2, 3)).numpy()
    zs = [codes(run.model, images)[:, 0].double().numpy() for run in runs]
    stats = [code_statistics(z, r, area) for z in zs]
    rho = np.array([s["spearman"] for s in stats])
    r2a = np.array([s["r2_area"] for s in stats])
    r2r = np.array([s["r2_radius"] for s in stats])
    idx = [int(torch.argmin((radii - w).abs())) for w in GRAD_RADII]
    grads = [gradient_maps(run.model, images[idx]) for run in runs]
    # oriented so that z increases with r (a code may as well decrease: the sign of z is arbitrary)
    gstats = [gradient_statistics(g * (1.0 if z[-1] >= z[0] else -1.0)) for g, z in zip(grads, zs, strict=True)]
    ref = code_statistics(IntegratingEncoder(64).encode(images)[:, 0].double().numpy(), r, area)

    numbers = {
        "abs_spearman_min": float(np.min(np.abs(rho))),
        "r2_area_mean": float(np.mean(r2a)),
        "r2_radius_mean": float(np.mean(r2r)),
        "seeds_area_beats_radius": int(np.sum(r2a > r2r)),
        "gradient_positive_fraction": float(np.mean([g["positive_fraction"] for g in gstats])),
        "gradient_min_cosine": float(np.mean([g["min_cosine"] for g in gstats])),
        "integrating_encoder_r2_area": ref["r2_area"],
        "integrating_encoder_r2_radius": ref["r2_radius"],
    }
    descriptions = {
        "abs_spearman_min": f"smallest absolute Spearman ρ(z, r) over {len(runs)} seed(s), {len(r)} test radii "
                            "in [0, 32]",
        "r2_area_mean": "R² of the affine fit z ≈ a·area + b, mean over seeds",
        "r2_radius_mean": "R² of the affine fit z ≈ a·r + b, mean over seeds",
        "seeds_area_beats_radius": "number of seeds whose z is better explained by the area than by the radius",
        "gradient_positive_fraction": "Σ max(∂z/∂x, 0) / Σ abs(∂z/∂x) at r = 4, 12, 20, 28, mean over radii and "
                                      "seeds, gradients signed so that z increases with r (1 for an "
                                      "integrator with non-negative weights)",
        "gradient_min_cosine": "smallest cosine between the gradient maps at r = 4, 12, 20, 28, mean over seeds "
                               "(1: z is one linear functional ⟨w, x⟩ + b over the whole range)",
        "integrating_encoder_r2_area": "R²(area) of the hand-crafted integrating encoder z = Σx (reference)",
        "integrating_encoder_r2_radius": "R²(radius) of the same hand-crafted encoder (a quadratic, fitted "
                                         "by a line)",
    }
    notes = ""
    off_model, why = official_model()
    z_off = None
    if off_model is not None:
        x63 = official_inputs(radii)
        z_off = codes(off_model, x63)[:, 0].double().numpy()
        off = code_statistics(z_off, r, x63.double().sum((1, 2, 3)).numpy())
        numbers |= {"official_abs_spearman": abs(off["spearman"]), "official_r2_area": off["r2_area"],
                    "official_r2_radius": off["r2_radius"]}
        descriptions |= {
            "official_abs_spearman": "absolute Spearman ρ(z, r) of the authors' released model (63 × 63 Gaussian-edged "
                                     "disks of the same radii)",
            "official_r2_area": "R²(z ~ area) of the authors' model (area = Σ pixels of its input)",
            "official_r2_radius": "R²(z ~ r) of the authors' model",
        }
    else:
        notes = f"Authors' model not evaluated: {why}. "
    if np.isnan(rho).any() or any(np.isnan(v) for g in gstats for v in g.values()):
        notes += ("Some seeds give a constant code or a zero gradient on the test set (a collapsed encoder); "
                  "those statistics are NaN and count as failures.")

    figures = ["d2_code_vs_radius_and_area.png", "d2_gradient_maps.png"]
    _plot_codes(ctx.figure(figures[0]), runs, zs, r, area, z_off)
    image_row(ctx.figure(figures[1]), {f"∂z/∂x, r = {float(radii[i]):.1f} (seed {runs[0].config.seed})":
                                       grads[0][k, 0]
                                       for k, i in enumerate(idx)}, symmetric=True)

    tables = [{"title": "Per seed: monotonicity and linearity of the code",
               "columns": ["seed", "Spearman ρ(z, r)", "R²(z ~ area)", "R²(z ~ r)", "z(r=0)", "z(r=32)"],
               "rows": [[run.config.seed, float(rho[k]), float(r2a[k]), float(r2r[k]), float(zs[k][0]),
                         float(zs[k][-1])] for k, run in enumerate(runs)]}]
    monotone = bool(np.all(np.abs(rho) > RHO_MIN))
    area_wins = bool(np.all(r2a > r2r))
    rule = (f"confirmed if |Spearman ρ(z, r)| > {RHO_MIN} for every seed (monotone code) and, for every seed, "
            "z is better fitted by an affine function of the area than of the radius (R²(area) > R²(radius)); "
            "partly if only the monotonicity holds for every seed, or both hold for at least one seed; "
            "not reproduced otherwise (NaN counts as a failure).")
    partly = monotone or bool(np.any((np.abs(rho) > RHO_MIN) & (r2a > r2r)))
    return Result(numbers, descriptions, verdict_from(monotone and area_wins, partly), rule, figures, tables,
                  notes)


def _plot_codes(path, runs, zs, r, area, z_official=None):
    """z against r and against the area, each seed rescaled to [0, 1] (z(0) → 0, z(32) → 1) to compare shapes."""
    fig, axes = new_figure(2, width=4.4, height=3.4)
    a_norm = area / area.max()
    curves = {f"seed {run.config.seed}": (zs[k], "-") for k, run in enumerate(runs)}
    if z_official is not None:
        curves["authors' model"] = (z_official, ":")
    for label, (z, style) in curves.items():
        span = z[-1] - z[0]
        zn = (z - z[0]) / span if span != 0 else np.zeros_like(z)
        axes[0, 0].plot(r, zn, style, lw=1.3, label=label)
        axes[0, 1].plot(a_norm, zn, style, lw=1.3, label=label)
    axes[0, 0].plot(r, a_norm, "k--", lw=1, label="area (integrating encoder)")
    axes[0, 1].plot(a_norm, a_norm, "k--", lw=1, label="area (integrating encoder)")
    axes[0, 0].set_xlabel("radius r (px)")
    axes[0, 1].set_xlabel("area / max area")
    for ax in axes.flat:
        ax.set_ylabel("(z − z(0)) / (z(32) − z(0))")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].set_title("code against radius", fontsize=10)
    axes[0, 1].set_title("code against area", fontsize=10)
    return save_figure(fig, path)
