"""P2: does an encoder trained on Diracs find the hand-crafted position filter of P1?

**Primary result (the verdict).** Autoencoders are trained end to end on every Dirac position (1-D:
``paper1d``, n = 64, d = 1; 2-D: ``paper64``, d = 2, on 16 × 16 images in the quick profile and 32 × 32 in the
paper profile). For a trained encoder the response z(δ_p) to the Dirac at p, as a function of p, *is* its
effective filter (the hand-crafted encoder's is the ramp p / n, P1). We measure how close it is to a ramp:

- linearity: R² of the least-squares affine fit z ≈ W p + c (2-D: pooled over the code entries);
- monotonicity: |Spearman ρ(p, z)| in 1-D; in 2-D the worst axis a of |ρ(p_a, p̂_a)| where p̂_a is the
  affine least-squares read-out of p_a from z (a ramp code gives 1 whatever the rotation of the code);
- the gradient filter: the cosine between the encoder's gradient ∂z_k/∂x averaged over the Diracs and the
  centred ramp p − p̄ (best code entry; 1 for the hand-crafted encoder);
- the position accuracy of the reconstruction (argmax of D(E(δ_p)) = p), to tell "learned another code" from
  "did not learn".

**Diagnostics (1-D, n = 64): under which conditions does a ramp-like code emerge, if any?** One-hot MSE is
blind to distance, so Gaussian-blurred Diracs (σ ∈ {0, 0.5, 1, 2}) are tried; d ∈ {1, 2}; biased or bias-free
networks; the paper's widths (8, 4, 4, 3, 2), 16 and 32 channels; and an encoder *initialised* at the
hand-crafted ramp filter (``ramp_init``: does training keep it?). The full grid is in the paper profile, a
small subset in quick. The diagnostics do not enter the verdict.

Set-up shared with P3 (``dirac_config``): biases, leaky output, Adam lr 3e-3, batches of 64 drawn from the
training positions, per-pixel MSE. Beyond the paper, the primary runs are repeated with coordinate channels
(``ModelConfig(coord=True)``, CoordConv).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import DiracData, all_dirac_positions, render_diracs
from ..models import ModelConfig, PositionEncoder
from ..plots import image_row, line_plot
from ..train import TrainConfig
from . import sources
from .common import (
    Context,
    Initialised,
    Number,
    Result,
    codes,
    mean_std,
    pearson,
    per_seed,
    reconstructions,
    spearman,
    verdict_from,
)

ID = "P2"
TITLE = "A trained encoder finds the position filter"
CLAIM = "An encoder trained on Diracs naturally finds the (ramp) position filter: z is a linear, monotone " \
        "function of the position."
PAPER = sources.statement("P2")  # what the source says (sources.py)

R2_MIN = 0.9  # a seed "finds the ramp" if R² >= R2_MIN and monotonicity >= RHO_MIN
RHO_MIN = 0.95
WIDTH = 16  # channels of every hidden layer of the Dirac networks
PAPER_WIDTH = "paper"  # the paper's disk channels (8, 4, 4, 3, 2) for n = 64


# ------------------------------------------------------------------- run configs (shared with P3)


def dirac_size(ctx: Context, ndim: int) -> int:
    """Signal length n (1-D) or image side m (2-D): 1-D 64; 2-D 16 (quick), 32 (paper); tiny 16 and 8."""
    return ctx.pick(64, 64, 16) if ndim == 1 else ctx.pick(16, 32, 8)


def size_text(ctx: Context, ndim: int) -> str:
    """``n = 64`` (1-D) or ``16 × 16`` (2-D): the size a number is measured on."""
    n = dirac_size(ctx, ndim)
    return f"n = {n}" if ndim == 1 else f"{n} × {n}"


def dirac_config(ctx: Context, ndim: int, seed: int, *, coord: bool = False, encoder: str = "learned",
                 blur: float = 0.0, bias: bool = True, width=WIDTH, latent_dim: int | None = None,
                 iterations: int | None = None, scheme: str = "all", **scheme_args) -> TrainConfig:
    """A Dirac run with this profile's budget: an end-to-end autoencoder (``encoder='learned'``, d = ndim by
    default) or a decoder behind the frozen hand-crafted position encoder (``encoder='position'``,
    z = (1, p/n)). ``width``: channels of every hidden layer, or ``'paper'`` for the paper's disk channels."""
    size = dirac_size(ctx, ndim)
    n_layers = size.bit_length() - 1
    if iterations is not None:
        pass
    elif encoder == "learned":
        iterations = ctx.pick(2000, 10000, 10) if ndim == 1 else ctx.pick(1500, 5000, 5)
    else:  # a decoder behind the exact code learns fast (> 0.9 accuracy in 1,000 iterations)
        iterations = ctx.pick(1000, 5000, 10 if ndim == 1 else 5)
    d = (ndim if encoder == "learned" else 1 + ndim) if latent_dim is None else latent_dim
    channels = None if width == PAPER_WIDTH else (width,) * (n_layers - 1)
    model = ModelConfig(arch="paper1d" if ndim == 1 else "paper64", size=size, latent_dim=d, channels=channels,
                        coord=coord, encoder=encoder, bias=bias)
    return TrainConfig(
        model=model, data=DiracData(size=size, ndim=ndim, scheme=scheme, blur=blur, **scheme_args),
        iterations=iterations, batch_size=ctx.pick(64, 64, 8), lr=3e-3, seed=seed,
        log_every=max(1, iterations // 50), checkpoint_every=max(1, iterations // 4),
    )


KINDS = ((False, "plain"), (True, "coord"))


def ramp_init(model) -> None:
    """Set a learned 1-D encoder to the hand-crafted position encoder of P1 (in place): its 2-tap kernels in
    taps 1, 2 of the 3-tap stride-2 convolutions (padding 1: output j reads inputs 2j − 1, 2j, 2j + 1), every
    other weight and every bias 0; the last layer keeps (s, q) for d = 2 and q alone for d = 1. The decoder
    keeps its random initialisation."""
    cfg = model.config
    hand = [m.weight for m in PositionEncoder(cfg.size, ndim=1).encoder if hasattr(m, "weight")]
    convs = [m for m in model.encoder if hasattr(m, "weight")]
    with torch.no_grad():
        for layer, k in zip(convs, hand, strict=True):
            rows = [1] if layer is convs[-1] and cfg.latent_dim == 1 else [0, 1]
            if layer.weight.shape[0] < len(rows) or layer.weight.shape[1] < k.shape[1]:
                raise ValueError(f"ramp_init needs >= 2 channels per hidden layer, got {cfg.layer_channels}")
            layer.weight.zero_()
            layer.weight[: len(rows), : k.shape[1], 1:3] = k[rows]
            if layer.bias is not None:
                layer.bias.zero_()


def kinds(ctx: Context) -> tuple:
    """The networks of the primary runs: plain, and with coordinate channels (CoordConv) except in quick."""
    return ctx.pick(KINDS[:1], KINDS, KINDS)


def primary_runs(ctx: Context, done=None) -> dict:
    """End-to-end autoencoders on every position, 1-D and 2-D (plain; coordinate channels beyond quick)."""
    return {name: cfg for ndim in (1, 2) for coord, kind in kinds(ctx)
            for name, cfg in per_seed(ctx, lambda s, n=ndim, c=coord: dirac_config(ctx, n, s, coord=c),
                                      f"{ndim}d/{kind}").items()}


# (blur σ, d, bias, width, init) of the 1-D diagnostics: one factor at a time around the primary network
# (σ = 0, d = 1, biases, width 16, random initialisation), and σ = 2 with each other factor (blur is the factor
# that orders the code, if any does)
BASE = (0.0, 1, True, 16, "random")
FULL_GRID = [BASE, (0.5, 1, True, 16, "random"), (1.0, 1, True, 16, "random"), (2.0, 1, True, 16, "random"),
             (0.0, 2, True, 16, "random"), (2.0, 2, True, 16, "random"),
             (0.0, 1, False, 16, "random"), (2.0, 1, False, 16, "random"),
             (0.0, 1, True, PAPER_WIDTH, "random"), (0.0, 1, True, 32, "random"), (2.0, 1, True, 32, "random"),
             (0.0, 1, True, 16, "ramp"), (0.0, 2, True, 16, "ramp"), (2.0, 1, True, 16, "ramp")]
QUICK_GRID = [BASE, (2.0, 1, True, 16, "random"), (0.0, 2, True, 16, "random"),
              (2.0, 1, False, 16, "random"), (0.0, 1, True, 16, "ramp"), (0.0, 2, True, 16, "ramp")]
TINY_GRID = [(2.0, 1, True, 16, "random"), (0.0, 2, True, 16, "ramp")]


def diagnostic_grid(ctx: Context) -> list[tuple]:
    return ctx.pick(QUICK_GRID, FULL_GRID, TINY_GRID)


def diagnostic_name(blur, d, bias, width, init) -> str:
    return f"diag/blur{blur:g}/d{d}/{'bias' if bias else 'nobias'}/w{width}/{init}"


def diagnostic_runs(ctx: Context, done=None) -> dict:
    """The 1-D diagnostics, 3 seeds at most (the paper profile: the first 3 of its seeds, 5,000 iterations)."""
    out = {}
    iterations = ctx.pick(None, 5000, None)
    for blur, d, bias, width, init in diagnostic_grid(ctx):
        for s in ctx.seeds[:3]:
            cfg = dirac_config(ctx, 1, s, blur=blur, bias=bias, width=width, latent_dim=d, iterations=iterations)
            out[f"{diagnostic_name(blur, d, bias, width, init)}/s{s}"] = (
                cfg if init == "random" else Initialised(cfg, "ramp", ramp_init))
    return out


def runs(ctx: Context, done=None) -> dict:
    return primary_runs(ctx) | diagnostic_runs(ctx)


STAGES = (runs,)


# ----------------------------------------------------------------------------------- measures


def all_diracs(size: int, ndim: int, blur: float = 0.0):
    """Every (blurred) Dirac (N, 1, *S) and its position (N, ndim) as float64 numpy, in flat position order."""
    pos = all_dirac_positions(size, ndim)
    return render_diracs(pos, size=size, ndim=ndim, blur=blur), pos.reshape(-1, ndim).double().numpy()


def _affine_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares fitted values of y (N, k) from x (N, j) with an intercept."""
    A = np.concatenate([x, np.ones((len(x), 1))], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return A @ coef


def linearity(pos: np.ndarray, z: np.ndarray) -> float:
    """Pooled R² of the affine fit z ≈ W p + c (0 for a constant code)."""
    ss_res = float(((z - _affine_fit(pos, z)) ** 2).sum())
    ss_tot = float(((z - z.mean(0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 1e-12 * len(z) else 0.0


def monotonicity(pos: np.ndarray, z: np.ndarray) -> float:
    """|Spearman ρ| of p against z (1-D) or of each p_a against its affine read-out from z (worst axis)."""
    if float(z.std()) == 0.0:
        return 0.0
    if pos.shape[1] == 1 and z.shape[1] == 1:
        return float(abs(np.nan_to_num(spearman(pos[:, 0], z[:, 0]))))
    readout = np.round(_affine_fit(z, pos), 9)  # round-off must not break the ties of p_a
    return min(float(abs(np.nan_to_num(spearman(pos[:, a], readout[:, a])))) for a in range(pos.shape[1]))


def position_accuracy(model, x: torch.Tensor) -> np.ndarray:
    """Whether argmax D(E(δ_p)) = p, per Dirac of ``x`` listed in flat (row-major) position order: (N,) bool."""
    rec = reconstructions(model, x)
    return (rec.flatten(1).argmax(1) == x.flatten(1).argmax(1)).numpy()


def gradient_ramp_cosine(model, x: torch.Tensor, pos: np.ndarray) -> float:
    """|Pearson correlation| (the cosine of the centred maps) between the encoder's gradient ∂z_k/∂x at the
    mean input x̄ (its linear filter around the data; a Dirac itself sits on the leaky ReLUs' kinks) and the ramp
    p_a, best code entry k, worst axis a (1 for the hand-crafted encoder's q channels: an affine filter)."""
    model.eval()
    xg = x.detach().mean(0, keepdim=True).requires_grad_(True)
    z = model.encode(xg)
    best = np.zeros(pos.shape[1])
    grid = all_dirac_positions(x.shape[-1], pos.shape[1]).reshape(-1, pos.shape[1]).double().numpy()
    for k in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, k].sum(), xg, retain_graph=k + 1 < z.shape[1])
        g = g[0].double().flatten().numpy()
        for a in range(pos.shape[1]):
            best[a] = max(best[a], abs(float(np.nan_to_num(pearson(g, grid[:, a])))))
    return float(best.min())


def ramp_scores(run) -> dict:
    """z(δ_p) for every p of a trained run, its linearity and monotonicity, the gradient filter's cosine with
    the ramp, and the position accuracy (on the run's own kind of input: blurred if it was trained so)."""
    d = run.config.data
    x, pos = all_diracs(d.size, d.ndim, d.blur)
    z = codes(run.model, x).double().numpy()
    return {"z": z, "pos": pos, "r2": linearity(pos, z), "rho": monotonicity(pos, z),
            "grad_cos": gradient_ramp_cosine(run.model, x, pos), "acc": float(position_accuracy(run.model, x).mean()),
            "finds": linearity(pos, z) >= R2_MIN and monotonicity(pos, z) >= RHO_MIN}


def _normalised(z: np.ndarray, p: np.ndarray) -> np.ndarray:
    """z rescaled to [0, 1] and oriented to increase with p (to compare shapes with the ramp)."""
    span = z.max() - z.min()
    zn = (z - z.min()) / span if span > 0 else np.zeros_like(z)
    return zn if np.corrcoef(zn, p)[0, 1] >= 0 or span == 0 else 1 - zn


# ----------------------------------------------------------------------------------- analysis


def _figures(ctx: Context, scores: dict) -> list[str]:
    size = dirac_size(ctx, 1)
    p = np.arange(size, dtype=float)
    curves = {"hand-crafted q(p) (ramp)": p / (size - 1)}
    styles = {"hand-crafted q(p) (ramp)": "k:"}
    for coord, kind in kinds(ctx):
        for s, sc in zip(ctx.seeds, scores[f"1d/{kind}"], strict=True):
            label = f"{kind} seed {s} (R²={sc['r2']:.2f})"
            curves[label] = _normalised(sc["z"][:, 0], p)
            styles[label] = "-" if not coord else "--"
    line_plot(ctx.figure("p2_z_of_p_1d.png"), p, curves, xlabel="Dirac position p",
              ylabel="z(δ_p), rescaled to [0, 1]", title="1-D effective filters: trained vs hand-crafted")
    size = dirac_size(ctx, 2)
    hand = PositionEncoder(size, ndim=2).effective_filter().numpy()
    panels = {"hand-crafted q_row": hand[..., 1], "hand-crafted q_col": hand[..., 2]}
    for _, kind in kinds(ctx):
        z = scores[f"2d/{kind}"][0]["z"].reshape(size, size, 2)
        panels |= {f"{kind} seed {ctx.seeds[0]}: z_1(p)": z[..., 0], f"{kind} seed {ctx.seeds[0]}: z_2(p)": z[..., 1]}
    image_row(ctx.figure("p2_filters_2d.png"), panels, cmap="viridis")
    return ["p2_z_of_p_1d.png", "p2_filters_2d.png"]


def _group(done: dict, prefix: str) -> list:
    return [r for k, r in sorted(done.items()) if k.rsplit("/s", 1)[0] == prefix]


def analyse(ctx: Context, done: dict) -> Result:
    scores = {f"{nd}d/{kind}": [ramp_scores(r) for r in _group(done, f"{nd}d/{kind}")] for nd in (1, 2)
              for _, kind in kinds(ctx)}
    numbers, rows = {}, []
    per_key = len(ctx.seeds)
    for nd in (1, 2):
        for _, kind in kinds(ctx):
            sc = scores[f"{nd}d/{kind}"]
            base = f"{nd}d_{kind}"
            net = "coordinate-channel" if kind == "coord" else "plain (paper family)"
            what = f"{nd}-D ({size_text(ctx, nd)}), {net} autoencoder, d = {nd}, mean over {per_key} seeds"
            numbers |= {
                f"ramp_seeds_{base}": Number(int(sum(x["finds"] for x in sc)), f"seeds (of {per_key}) whose code is "
                                             f"a ramp (R² ≥ {R2_MIN}, monotonicity ≥ {RHO_MIN}); {what}"),
                f"r2_{base}": Number(mean_std([x["r2"] for x in sc])[0], f"R² of the affine fit z ≈ W p + c; {what}"),
                f"monotonicity_{base}": Number(mean_std([x["rho"] for x in sc])[0], "|Spearman ρ| of position vs "
                                               f"code (2-D: worst axis of the affine read-out); {what}"),
                f"gradient_ramp_cosine_{base}": Number(mean_std([x["grad_cos"] for x in sc])[0], "cosine of the "
                                                       "gradient ∂z/∂x at the mean input with the centred ramp (best "
                                                       f"entry); {what}"),
                f"accuracy_{base}": Number(float(np.mean([x["acc"] for x in sc])), "position accuracy of the "
                                           f"reconstruction (argmax D(E(δ_p)) = p); {what}"),
            }
            rows.append([f"{nd}-D ({size_text(ctx, nd)})", kind, *mean_std([x["r2"] for x in sc]),
                         mean_std([x["rho"] for x in sc])[0], mean_std([x["grad_cos"] for x in sc])[0],
                         f"{sum(x['finds'] for x in sc)}/{per_key}", float(np.mean([x["acc"] for x in sc]))])
    diag_rows, emerges = [], []
    for blur, d, bias, width, init in diagnostic_grid(ctx):
        name = diagnostic_name(blur, d, bias, width, init)
        sc = [ramp_scores(r) for r in _group(done, name)]
        n_found = sum(x["finds"] for x in sc)
        diag_rows.append([blur, d, bias, width, init, float(np.mean([x["r2"] for x in sc])),
                          float(np.mean([x["rho"] for x in sc])), float(np.mean([x["grad_cos"] for x in sc])),
                          f"{n_found}/{len(sc)}", float(np.mean([x["acc"] for x in sc]))])
        if init == "random" and n_found == len(sc):
            emerges.append(f"σ={blur:g}, d={d}, {'biased' if bias else 'bias-free'}, width {width}")
    ramp_kept = [r for r in diag_rows if r[4] == "ramp"]
    numbers |= {
        "diagnostics_ramp_emerges": Number(len(emerges), "1-D diagnostics with a random initialisation in which "
                                           "every seed's code is a ramp (of "
                                           f"{sum(1 for r in diag_rows if r[4] == 'random')} conditions)"),
        "diagnostics_ramp_init_r2": Number(float(np.mean([r[5] for r in ramp_kept])) if ramp_kept else float("nan"),
                                           "mean R² of z(p) after training from the hand-crafted ramp "
                                           "initialisation (1 at the start: does training keep it?)"),
    }
    plain = [numbers[f"ramp_seeds_{nd}d_plain"].value for nd in (1, 2)]
    verdict = verdict_from(all(n == per_key for n in plain), any(n > 0 for n in plain) or bool(emerges))
    cfg = {nd: _group(done, f"{nd}d/plain")[0].config for nd in (1, 2)}
    notes = (f"Primary runs: {cfg[1].iterations} iterations (1-D, n = {cfg[1].data.size}) and {cfg[2].iterations} "
             f"(2-D, {cfg[2].data.size} × {cfg[2].data.size}), batch {cfg[1].batch_size}, Adam lr {cfg[1].lr:g}, "
             f"every hidden layer {WIDTH} channels wide, biases, leaky output, every position in the training set. "
             "The hand-crafted encoder of P1 scores R² = 1, monotonicity = 1, gradient cosine = 1. The coordinate-"
             "channel rows are the CoordConv baseline on the same data and seeds. Conditions in which a ramp emerges "
             f"(every seed, random initialisation): {', '.join(emerges) if emerges else 'none'}.")
    rule = (f"a seed finds the ramp if R² of z(p) ≥ {R2_MIN} and monotonicity ≥ {RHO_MIN}. Confirmed if every seed "
            "of the primary set-up (plain network, one-hot Diracs, every position) does in 1-D and in 2-D; partly if "
            "at least one primary seed does, or if in some 1-D diagnostic condition with a random initialisation "
            "every seed does; not reproduced otherwise. Runs initialised at the ramp do not count (they show "
            "whether training keeps it).")
    control = ("the hand-crafted position encoder of P1 (R² = 1, monotonicity 1, gradient cosine 1) and, for "
               "'does training keep it', the runs initialised at that encoder.")
    return Result(
        numbers=numbers, verdict=verdict, rule=rule, control=control, figures=_figures(ctx, scores),
        tables=[{"title": "Primary: linearity and monotonicity of the learned code z(p), every position in training",
                 "columns": ["dims", "network", "R² mean", "R² std", "monotonicity", "gradient cosine",
                             "ramp found (seeds)", "position accuracy"], "rows": rows},
                {"title": f"1-D diagnostics ({size_text(ctx, 1)}): under which conditions is the learned code a ramp? "
                          "(means over seeds)",
                 "columns": ["blur σ", "d", "biases", "width", "initialisation", "R²", "monotonicity",
                             "gradient cosine", "ramp found (seeds)", "position accuracy"], "rows": diag_rows}],
        notes=notes,
    )
