"""P1: a hand-crafted filter encodes the position of a Dirac exactly (SPEC 2.3, claim P1).

``models.PositionEncoder`` is a bias-free chain of stride-2 convolutions with non-negative 2-tap kernels
(channels: mass s and position q_a per axis): s' = Σ_children s, q_a' = ½ Σ_children q_a + ½ Σ_{upper
children along a} s. After log2(n) layers a unit Dirac at p gives z = (s, q) = (1, p / n), so z is an exact
affine (here linear) function of p, and the effective filter of q_a (its response z(δ_p) as a function of
p) is the ramp p_a / n. Nothing is trained: we feed every position, 1-D (n = 64) and 2-D (64 × 64), and
measure the largest error.
"""

from __future__ import annotations

import torch

from ..data import all_dirac_positions, render_diracs
from ..models import PositionEncoder
from ..plots import image_row, line_plot
from . import sources
from .common import Context, Number, Result, codes, r_squared, verdict_from

ID = "P1"
TITLE = "A hand-crafted filter encodes Dirac position exactly"
CLAIM = "A hand-crafted (bias-free, non-negative) convolutional encoder encodes the position of a Dirac perfectly."
PAPER = sources.statement("P1")  # what the source says (sources.py)

SIZE = 64
EXACT = 1e-6  # largest relative error allowed for "exact" (float32 rounding is ~6e-8)
CLOSE = 1e-3


STAGES = ()  # nothing to train


def measure(ndim: int, size: int = SIZE) -> dict:
    """z(δ_p) of the position encoder for every position p and its error against (1, p / n)."""
    enc = PositionEncoder(size, ndim=ndim)
    pos = all_dirac_positions(size, ndim).reshape(-1, ndim).double()
    z = codes(enc, render_diracs(all_dirac_positions(size, ndim), size=size, ndim=ndim)).double()
    expected = torch.cat([torch.ones(len(pos), 1, dtype=torch.float64), pos / size], 1)
    decoded = enc.position_from_code(z)
    return {
        "z": z.numpy(),
        "positions": pos.numpy(),
        "max_rel_error": float((z - expected).abs().max() / expected.abs().max()),
        "max_position_error": float((decoded - pos).abs().max()),
        "r2": min(r_squared(pos[:, a].numpy(), z[:, 1 + a].numpy()) for a in range(ndim)),
        "n_positions": len(pos),
    }


def _filters_figure(ctx: Context) -> str:
    panels = {}
    for ndim in (1, 2):
        enc = PositionEncoder(SIZE, ndim=ndim)
        convs = [m for m in enc.encoder if hasattr(m, "weight")]
        for label, layer in (("layer 1", convs[0]), ("layers 2..L", convs[1])):
            k = layer.weight.detach()
            panels[f"{ndim}-D {label}\nrows: s, q; cols: in×taps"] = k.reshape(k.shape[0], -1).numpy()
    image_row(ctx.figure("p1_filters.png"), panels, cmap="viridis")
    return "p1_filters.png"


def _effective_figures(ctx: Context, m1: dict, m2: dict) -> list[str]:
    p = m1["positions"][:, 0]
    line_plot(ctx.figure("p1_effective_1d.png"), p, {"s(p) (mass)": m1["z"][:, 0],
                                                     "q(p) (position)": m1["z"][:, 1], "p / n": p / SIZE},
              xlabel="Dirac position p", ylabel="code z(δ_p)",
              title="Hand-crafted encoder, 1-D: effective filter = ramp", styles={"p / n": ":"})
    z2 = m2["z"].reshape(SIZE, SIZE, 3)
    image_row(ctx.figure("p1_effective_2d.png"),
              {"s(p)": z2[..., 0], "q_row(p)": z2[..., 1], "q_col(p)": z2[..., 2]}, cmap="viridis")
    return ["p1_effective_1d.png", "p1_effective_2d.png"]


def analyse(ctx: Context, runs) -> Result:
    m = {ndim: measure(ndim) for ndim in (1, 2)}
    numbers = {}
    for ndim in (1, 2):
        k = f"{ndim}d"
        numbers |= {
            f"max_rel_error_{k}": Number(m[ndim]["max_rel_error"], f"max over all {m[ndim]['n_positions']} positions "
                                         f"({ndim}-D, n = {SIZE}) of |z(δ_p) − (1, p/n)| / max|(1, p/n)|"),
            f"max_position_error_{k}": Number(m[ndim]["max_position_error"], f"max |n·q/s − p| in pixels, {ndim}-D "
                                              "(position read back from z)"),
            f"r2_{k}": Number(m[ndim]["r2"], f"R² of the affine fit of q_a against p_a ({ndim}-D, worst axis)")}
    errors = [m[nd]["max_rel_error"] for nd in (1, 2)]
    verdict = verdict_from(max(errors) < EXACT, max(errors) < CLOSE)
    table = {"title": "Hand-crafted position encoder on every position",
             "columns": ["dims", "positions", "max relative error", "max position error (px)", "R² of q vs p"],
             "rows": [[f"{nd}-D", m[nd]["n_positions"], m[nd]["max_rel_error"], m[nd]["max_position_error"],
                       m[nd]["r2"]] for nd in (1, 2)]}
    figures = [_filters_figure(ctx), *_effective_figures(ctx, m[1], m[2])]
    return Result(
        numbers=numbers, verdict=verdict, control="none needed: a construction, checked on every position",
        rule=f"confirmed if the max relative error is < {EXACT:g} for every position in 1-D and in 2-D; "
             f"partly if < {CLOSE:g}; otherwise not reproduced",
        figures=figures, tables=[table],
        notes="No training. The 2-tap kernels are non-negative, so the leaky ReLUs act as the identity and the "
              "code is an exact dyadic fraction (exact in float32). The effective filter of q is the ramp p/n "
              "(1-D) and the two ramps p_row/n, p_col/n (2-D); the mass channel s is constant 1.",
    )
