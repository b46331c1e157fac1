"""What the experiments beyond the paper (X1–X4) share: their runs, their measures and their verdict rule.

ICLR 2018 Prop. 2 characterises the optimal bias-free decoder for centred disks with uniform radii in 2-D;
its closed form, the Airy profile, is our derivation (D4). ``theory.eigen_profile`` generalises the derivation
to balls in dimension k and any radius density p(r); X1–X3 test those predictions against trained bias-free
networks (d = 1), X4 checks the k = 3 theory on paper. Every X experiment compares a learned decoder output D(±1) with

- the **discrete optimum** of its own training set (rank-1 SVD, ``theory.discrete_optimum``): the exact lower
  bound of the loss, so loss ÷ optimum and the profile against it measure training alone;
- the **continuous prediction** (cosine arch, ``eigen_profile`` of the density, Airy of the shape's gauge);
- an **alternative** that the prediction must be told apart from (the Airy profile of D4, a radially
  symmetric image): the distance between prediction and alternative is the scale of the test.

Distances are ``dist(a, b) = min_s ‖s·a − b‖ / ‖b‖ = sin ∠(a, b)``: symmetric, free of the scale and sign that
a separable output h(r)·f(t) leaves undetermined. All of them are computed over the m × m pixels (or n samples).

The verdict rule (``verdict_of``), written before any X run was trained: **confirmed** if, for every seed,
loss ÷ discrete optimum ≤ ``LOSS_OK`` and every clause ``distance < bound`` holds (a bound is half the
distance between the prediction and its alternative); **partly** if the means over seeds satisfy the same
inequalities; **not reproduced** otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import theory
from ..train import BatchSource
from .common import Context, codes, disk_config, disk_iterations, pearson

LOSS_OK = 1.05  # loss ÷ discrete optimum, every seed
R_TRAIN = 32.0  # the largest training radius (m/2 = 32 for the 64-sample signals and 64 × 64 images)
PAPER_DOES_NOT = "Beyond the paper: "


def beyond_config(ctx: Context, seed: int, *, density: str = "uniform", shape: str = "disk", ndim: int = 2):
    """A bias-free d = 1 run on centred balls: ``disk_config(bias=False)`` (the runs of D3/D4 when density and
    shape are the defaults, so those are shared) with the radius density and shape replaced; ``ndim=1``: the
    ``paper1d`` network of the same family on 64-sample signals of centred intervals, same training set-up."""
    from ..models import ModelConfig

    cfg = disk_config(ctx, seed=seed, bias=False)
    data = dataclasses.replace(cfg.data, density=density, shape=shape, ndim=ndim)
    if ndim == 1:
        model = ModelConfig(arch="paper1d", size=cfg.data.size, latent_dim=1, bias=False)
        return dataclasses.replace(cfg, model=model, data=data, iterations=interval_iterations(ctx))
    return dataclasses.replace(cfg, data=data)


def interval_iterations(ctx: Context) -> int:
    """Iterations of the 1-D interval runs (X1): 10,000 in the quick and paper profiles (a 1-D step costs
    ~0.5 ms, 1/7 of a 2-D one, so the paper's budget fits the quick profile), 4 in the tiny one."""
    return ctx.pick(10000, 10000, tiny=disk_iterations(ctx))


def dist(a, b) -> float:
    """min_s ‖s·a − b‖ / ‖b‖ = sin ∠(a, b) (symmetric; 1.0 when a is zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 1.0
    c = float(a @ b) / (na * nb)
    return float(np.sqrt(max(0.0, 1.0 - c * c)))


def radial_fit(image) -> np.ndarray:
    """The best radially symmetric approximation of an image (m, m): least squares over the piecewise-linear
    functions of the pixel radius ρ with knots at 0, 1, 2, … (a smooth radial profile is fitted to ~1e-3)."""
    img = np.asarray(image, dtype=np.float64)
    rho = theory.pixel_radii(img.shape).ravel()
    knots = np.arange(0.0, np.ceil(rho.max()) + 1.0)
    j = np.minimum(np.floor(rho).astype(np.int64), len(knots) - 2)
    w = rho - knots[j]
    A = np.zeros((rho.size, len(knots)))
    A[np.arange(rho.size), j] = 1.0 - w
    A[np.arange(rho.size), j + 1] = w
    coef, *_ = np.linalg.lstsq(A, img.ravel(), rcond=None)
    return (A @ coef).reshape(img.shape)


@torch.no_grad()
def learned_output(model, z_sign: float) -> np.ndarray:
    """D(±1): the decoder's output for the code of the majority sign, (n,) or (m, m) float64."""
    model.eval()
    return model.decode(torch.tensor([[z_sign]], dtype=torch.float32))[0, 0].double().numpy()


def code_sign(z: np.ndarray) -> float:
    """+1 or −1: the sign most codes take (a bias-free d = 1 decoder draws |z|·D(sign z), Prop. 1)."""
    return 1.0 if float(np.sum(np.sign(z))) >= 0 else -1.0


def measure(run, test_images: torch.Tensor, prediction: np.ndarray, alternative: np.ndarray) -> dict:
    """One bias-free run against its discrete optimum, the continuous ``prediction`` and the ``alternative``
    (both sampled like the output: (n,) or (m, m)). The code is compared with the prediction's optimal code
    ⟨f̂, x⟩ on the test images."""
    train = BatchSource(run.config).images  # exactly the run's training set
    flat = train if train.dim() == 4 else train[:, :, None, :]  # 1-D signals as 1 × n images
    opt = theory.discrete_optimum(flat)
    svd = opt.profile.reshape(prediction.shape)
    z = codes(run.model, test_images)[:, 0].double().numpy()
    s = code_sign(z)
    out = learned_output(run.model, s)
    x = test_images[:, 0].double().flatten(1).numpy()
    h_pred = x @ prediction.ravel()
    return {
        "seed": run.config.seed,
        "train_mse": run.metrics["train_mse"], "optimum_mse": opt.mse,
        "loss_ratio": run.metrics["train_mse"] / opt.mse,
        "learned_vs_prediction": dist(out, prediction),
        "learned_vs_optimum": dist(out, svd),
        "optimum_vs_prediction": dist(svd, prediction),
        "learned_vs_alternative": dist(out, alternative),
        "corr_z_h": pearson(s * z, h_pred),
        "same_sign": float(np.mean(s * z >= 0)),
        "output": out, "svd": svd, "z": s * z, "h": h_pred,
    }


def verdict_of(loss_ratios, clauses, loss_ok: float = LOSS_OK) -> str:
    """The X experiments' rule (module docstring). ``clauses``: (values per seed, bound) pairs, each to satisfy
    value < bound (a bound is one number, or one per seed: then the mean check compares the means);
    ``loss_ratios``: loss ÷ discrete optimum per seed (≤ loss_ok)."""
    loss = np.asarray(loss_ratios, dtype=np.float64).ravel()
    checks = [(np.asarray(v, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()) for v, b in clauses]
    if loss.size == 0 or any(v.size != loss.size or b.size not in (1, loss.size) for v, b in checks):
        raise ValueError("verdict_of needs one value per seed in every clause (bounds: one, or one per seed), and "
                         "at least one seed")
    if np.all(loss <= loss_ok) and all(np.all(v < b) for v, b in checks):
        return "confirmed"
    if loss.mean() <= loss_ok and all(v.mean() < b.mean() for v, b in checks):
        return "partly"
    return "not reproduced"


def worst(verdicts) -> str:
    """The weakest of several verdicts (not reproduced < partly < confirmed)."""
    order = ("not reproduced", "partly", "confirmed")
    return min(verdicts, key=order.index)


def rule_text(clauses: list[str]) -> str:
    """The rule in words, with its clauses (written before the results)."""
    return (f"confirmed if, for every seed, loss ÷ discrete optimum ≤ {LOSS_OK} and " + "; and ".join(clauses)
            + "; partly if the means over seeds satisfy the same inequalities; not reproduced otherwise.")


def seed_table(title: str, ms: list[dict], label: str = "") -> dict:
    """The per-seed table of ``measure`` results."""
    cols = ["seed", "train MSE", "optimum MSE", "loss ÷ optimum", "learned vs prediction", "learned vs optimum",
            "optimum vs prediction", "learned vs alternative", "Pearson z–ĥ"]
    rows = [[m["seed"], m["train_mse"], m["optimum_mse"], m["loss_ratio"], m["learned_vs_prediction"],
             m["learned_vs_optimum"], m["optimum_vs_prediction"], m["learned_vs_alternative"], m["corr_z_h"]]
            for m in ms]
    if label:
        cols, rows = ["case", *cols], [[label, *r] for r in rows]
    return {"title": title, "columns": cols, "rows": rows}


def plot_codes(path, groups: dict[str, list[dict]], xlabel: str = "ĥ = ⟨f̂, x⟩ (the prediction's optimal code)"):
    """Codes s·z of the test shapes against the prediction's optimal code, one panel per group of runs."""
    from ..plots import new_figure, save_figure

    fig, axes = new_figure(len(groups), width=4.4, height=3.4)
    for ax, (title, ms) in zip(axes.flat, groups.items(), strict=True):
        for m in ms:
            h, z = m["h"], m["z"]
            a = float(h @ z / (h @ h)) if h @ h > 0 else 0.0
            (line,) = ax.plot(h, z, ".", ms=3.5, label=f"seed {m['seed']} (Pearson {m['corr_z_h']:.4f})")
            ax.plot(h, a * h, "-", color=line.get_color(), lw=0.8, alpha=0.7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("learned code z (sign-fixed)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
