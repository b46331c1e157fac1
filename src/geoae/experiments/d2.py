"""D2: the encoder integrates: z is a monotone function of the disk's area (ICLR 2018 §3.2.1, §3.3).

Uses the biased runs of D1 (same configs, trained once). On evenly spaced test disks we measure

- Spearman ρ(z, r): monotonicity of the code in the radius (hence in the area);
- what separates "integrates the image" from "some monotone code" (any monotone code passes the first test,
  and any convex one fits the area better than the radius):
  - the growth exponent k of the code, the slope of log(z(r) − z(0)) against log r over r ∈ [4, 28]: an
    integral of the disk grows like its area (k = 2), a code that reads the radius like k = 1;
  - the uniformity of the encoder's gradient ∂z/∂x (autograd) on the disk's own pixels: the cosine between
    ∂z/∂x restricted to ρ ≤ r and the constant image there, at r = 8, 16, 24 (1 for an integral with
    uniform weights; a code that reads the disk's edge gives about √(2/r));
- R² of the affine fits z ≈ a·A + b (A = area) and z ≈ a·r + b, reported (not in the rule).

Controls, measured by the same functions: the hand-crafted ``IntegratingEncoder`` (z = Σ x: k = 2, cosine 1)
and a code that reads the radius (z = r: k = 1). The authors' released model is measured the same way on its
own 63 × 63 rendering of the test radii (skipped when its weights or h5py are missing).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..models import IntegratingEncoder
from ..plots import image_row, new_figure, save_figure
from . import sources
from .common import Context, Number, Result, codes, disk_test_set, r_squared, seed_runs, spearman, verdict_from
from .d1 import official_inputs, official_model
from .d1 import runs as d1_runs

ID = "D2"
TITLE = "The encoder integrates: z is a monotone function of the area"
CLAIM = ("The trained encoder computes (a monotone function of) the area of the disk: the code z is a "
         "monotone function of the radius, close to an integral of the image.")
PAPER = sources.statement("D2")  # what the source says (sources.py)

RHO_MIN = 0.99
EXPONENT_RANGE = (1.5, 2.5)  # "grows like the area": k within this range (area: 2, radius: 1)
UNIFORM_MIN = 0.9  # cosine of ∂z/∂x with the constant image on the disk
FIT_RADII = (4.0, 28.0)
GRAD_RADII = (4.0, 12.0, 20.0, 28.0)
UNIFORM_RADII = (8.0, 16.0, 24.0)
STAGES = (d1_runs,)  # the biased baseline runs, identical to D1's (shared, trained once)


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


def growth_exponent(z, radii, r_range=FIT_RADII) -> float:
    """Slope k of log(z(r) − z(0)) against log r over r in ``r_range`` (z oriented to increase with r, z(0)
    the code of the smallest test radius); NaN with fewer than 3 usable points."""
    z, r = np.asarray(z, float), np.asarray(radii, float)
    z = z if z[-1] >= z[0] else -z
    rise = z - z[np.argmin(r)]
    use = (r >= r_range[0]) & (r <= r_range[1]) & (rise > 0)
    if use.sum() < 3:
        return float("nan")
    return float(np.polyfit(np.log(r[use]), np.log(rise[use]), 1)[0])


def disk_uniformity(grad: torch.Tensor, radius: float) -> float:
    """Cosine between ∂z/∂x (1, m, m) restricted to the disk ρ ≤ radius and the constant image there."""
    from ..theory import pixel_radii

    g = grad.detach().double().numpy().reshape(grad.shape[-2:])
    inside = pixel_radii(g.shape[-1]) <= radius
    v = g[inside]
    den = float(np.linalg.norm(v) * np.sqrt(v.size))
    return float(v.sum() / den) if den > 0 else float("nan")


def integration_measures(model, images, radii) -> dict:
    """Growth exponent of the code and mean disk uniformity of its gradient at ``UNIFORM_RADII``."""
    z = codes(model, images)[:, 0].double().numpy()
    r = radii.double().numpy()
    sign = 1.0 if z[-1] >= z[0] else -1.0
    idx = [int(torch.argmin((radii - w).abs())) for w in UNIFORM_RADII]
    grads = gradient_maps(model, images[idx]) * sign
    uniformity = [disk_uniformity(g, float(radii[i])) for g, i in zip(grads, idx, strict=True)]
    return {"exponent": growth_exponent(z, r), "uniformity": float(np.mean(uniformity))}


class _RadiusCode(torch.nn.Module):
    """Control: z = √(Σx/π) = r, a monotone code that reads the radius, not the area."""

    def encode(self, x):
        return (x.flatten(1).sum(1, keepdim=True) / math.pi).sqrt()


def analyse(ctx: Context, done: dict) -> Result:
    runs = seed_runs(done, "biased")
    images, radii = disk_test_set(ctx)
    r = radii.numpy().astype(float)
    area = images.double().sum((1, 2, 3)).numpy()
    zs = [codes(run.model, images)[:, 0].double().numpy() for run in runs]
    stats = [code_statistics(z, r, area) for z in zs]
    rho = np.array([s["spearman"] for s in stats])
    r2a = np.array([s["r2_area"] for s in stats])
    r2r = np.array([s["r2_radius"] for s in stats])
    integ = [integration_measures(run.model, images, radii) for run in runs]
    k = np.array([m["exponent"] for m in integ])
    uni = np.array([m["uniformity"] for m in integ])
    idx = [int(torch.argmin((radii - w).abs())) for w in GRAD_RADII]
    grads = [gradient_maps(run.model, images[idx]) for run in runs]
    ref = integration_measures(IntegratingEncoder(64), images, radii)
    ref_radius = growth_exponent(_RadiusCode().encode(images)[:, 0].double().numpy(), r)

    with np.errstate(invalid="ignore"):
        monotone_seeds = np.abs(rho) > RHO_MIN
        area_like = (k >= EXPONENT_RANGE[0]) & (k <= EXPONENT_RANGE[1])
        uniform = uni >= UNIFORM_MIN
    numbers = {
        "abs_spearman_min": Number(float(np.nanmin(np.abs(rho))) if np.isfinite(rho).any() else float("nan"),
                                   f"smallest |Spearman ρ(z, r)| over {len(runs)} seed(s), {len(r)} test radii in "
                                   "[0, 32]"),
        "growth_exponent_mean": Number(float(np.mean(k)), "slope k of log(z(r) − z(0)) against log r for r in "
                                       f"[{FIT_RADII[0]:g}, {FIT_RADII[1]:g}], mean over seeds (area: 2, radius: 1)"),
        "growth_exponent_min": Number(float(np.min(k)), "smallest growth exponent over seeds"),
        "growth_exponent_max": Number(float(np.max(k)), "largest growth exponent over seeds"),
        "disk_uniformity_mean": Number(float(np.mean(uni)), "cosine between ∂z/∂x on the disk's pixels (ρ ≤ r) and "
                                       "the constant image, mean over r = 8, 16, 24 and seeds (integral: 1)"),
        "disk_uniformity_min": Number(float(np.min(uni)), "smallest disk uniformity over seeds"),
        "r2_area_mean": Number(float(np.mean(r2a)), "R² of the affine fit z ≈ a·area + b, mean over seeds"),
        "r2_radius_mean": Number(float(np.mean(r2r)), "R² of the affine fit z ≈ a·r + b, mean over seeds"),
        "control_integrator_exponent": Number(ref["exponent"], "control: growth exponent of the hand-crafted "
                                              "integrating encoder z = Σx"),
        "control_integrator_uniformity": Number(ref["uniformity"], "control: disk uniformity of the integrating "
                                                "encoder"),
        "control_radius_code_exponent": Number(ref_radius, "control: growth exponent of the code z = r (monotone, "
                                               "not an integral)"),
    }
    authors, notes = {}, ""
    off_model, why = official_model()
    z_off = None
    if off_model is not None:
        x63 = official_inputs(radii)
        z_off = codes(off_model, x63)[:, 0].double().numpy()
        off = code_statistics(z_off, r, x63.double().sum((1, 2, 3)).numpy())
        authors = {
            "authors_abs_spearman": Number(abs(off["spearman"]), "|Spearman ρ(z, r)| of the authors' released "
                                           "model (63 × 63 Gaussian-edged disks of the same radii)"),
            "authors_growth_exponent": Number(growth_exponent(z_off, r), "growth exponent of the authors' code"),
            "authors_r2_area": Number(off["r2_area"], "R²(z ~ area) of the authors' model"),
        }
    else:
        notes = f"Authors' model not evaluated: {why}. "
    if np.isnan(rho).any() or np.isnan(k).any() or np.isnan(uni).any():
        notes += ("Some seeds give a constant code or a zero gradient on the test set (a collapsed encoder); "
                  "those statistics are NaN and count as failures.")

    figures = ["d2_code_vs_radius_and_area.png", "d2_gradient_maps.png"]
    _plot_codes(ctx.figure(figures[0]), runs, zs, r, area, z_off)
    image_row(ctx.figure(figures[1]), {f"∂z/∂x, r = {float(radii[i]):.1f} (seed {runs[0].config.seed})":
                                       grads[0][n, 0]
                                       for n, i in enumerate(idx)}, symmetric=True)

    tables = [{"title": "Per seed: monotonicity of the code, and whether it integrates the disk",
               "columns": ["seed", "Spearman ρ(z, r)", "growth exponent k", "disk uniformity", "R²(z ~ area)",
                           "R²(z ~ r)", "z(r=0)", "z(r=32)"],
               "rows": [[run.config.seed, float(rho[n]), float(k[n]), float(uni[n]), float(r2a[n]), float(r2r[n]),
                         float(zs[n][0]), float(zs[n][-1])] for n, run in enumerate(runs)]}]
    integrates = area_like & uniform
    rule = (f"confirmed if, for every seed, the code is monotone (|Spearman ρ(z, r)| > {RHO_MIN}) and integrates the "
            f"disk: growth exponent k in [{EXPONENT_RANGE[0]:g}, {EXPONENT_RANGE[1]:g}] (grows like the area) and "
            f"disk uniformity ≥ {UNIFORM_MIN:g} (the gradient weights the disk's pixels evenly); partly if every "
            "seed is monotone and at least one of the two integration tests holds for every seed; not reproduced "
            "otherwise (NaN counts as a failure).")
    control = ("the hand-crafted integrator z = Σx (k = 2, uniformity 1) and the radius code z = r (monotone, k = 1): "
               "the first passes the integration tests, the second fails them although it is monotone.")
    monotone = bool(np.all(monotone_seeds))
    verdict = verdict_from(monotone and bool(np.all(integrates)),
                           monotone and (bool(np.all(area_like)) or bool(np.all(uniform))))
    return Result(numbers, verdict, rule, control, figures, tables, notes, authors)


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
