"""P3: decoding Diracs works when the training positions are sampled appropriately.

The claim is about *decoders*, so the main protocol isolates decoding from encoding: the encoder is the
frozen hand-crafted position encoder of P1 (``ModelConfig(encoder='position')``: z = (1, p/n) exactly, no
trainable weight) and only the decoder (the paper's layer family, upsample ×2 + 3-tap conv + leaky ReLU,
every hidden layer 16 channels wide, biases) is trained, by Adam on the per-pixel MSE D(E(x)) ≈ x, on the
Diracs of one position-sampling scheme (``data.dirac_positions``): ``all``, ``random`` (a fraction),
``hole`` (the middle quarter removed), ``stride`` k, and in 2-D ``quadrant`` (bottom-right held out, the
CoordConv paper's split). 1-D signals have n = 64; 2-D images are 16 × 16 in the quick profile and 64 × 64
in the paper profile. Each decoder is tested on every position:

- position accuracy: argmax of the reconstruction equals the Dirac's position;
- MSE per pixel of the reconstruction;

separately on the seen (training) and unseen positions. Beyond the paper, the same schemes and seeds with
a coordinate-channel decoder (``coord=True``). For reference, the end-to-end autoencoders of P2 (scheme
``all``, shared runs) are scored the same way; they do not enter the verdict.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..plots import image_row, line_plot
from .common import Context, Result, mean_std, reconstructions, verdict_from
from .p2 import KINDS, all_diracs, dirac_config, dirac_size, size_text

ID = "P3"
TITLE = "Decoding Dirac position depends on the sampling of the training positions"
CLAIM = "Decoding the position of a Dirac can be achieved if the dataset is sampled in an appropriate manner."
PAPER = "Qualitative; no number given."

WORKS = 0.9  # decoding "works" for a scheme if the mean position accuracy over all positions is >= WORKS
PARTLY = 0.5

# (label, scheme arguments) per dimension
SCHEMES_1D = (("all", {}), ("random 50%", {"scheme": "random", "fraction": 0.5}),
              ("random 25%", {"scheme": "random", "fraction": 0.25}), ("hole", {"scheme": "hole"}),
              ("stride 2", {"scheme": "stride", "stride": 2}), ("stride 4", {"scheme": "stride", "stride": 4}))
SCHEMES_2D = (("all", {}), ("random 50%", {"scheme": "random", "fraction": 0.5}),
              ("stride 2", {"scheme": "stride", "stride": 2}), ("quadrant", {"scheme": "quadrant", "quadrant": 3}),
              ("hole", {"scheme": "hole"}))
QUICK_1D = ("all", "hole", "stride 2")  # the quick profile's schemes (its CPU budget: ~4 min for P1-P3)
QUICK_2D = ("all", "quadrant")


def _pick_schemes(schemes, labels):
    return tuple(s for s in schemes if s[0] in labels)


def plan(ctx: Context) -> list[tuple[int, str, dict, bool, str]]:
    """(ndim, label, scheme args, coord, encoder) per group of runs (one run per seed): the decoders behind
    the frozen position encoder for every scheme, then the end-to-end ``all`` autoencoders of P2. The quick
    profile keeps ``QUICK_1D`` and ``QUICK_2D``; the tiny smoke test keeps one scheme besides ``all``."""
    schemes_1d = ctx.pick(_pick_schemes(SCHEMES_1D, QUICK_1D), SCHEMES_1D,
                          _pick_schemes(SCHEMES_1D, ("all", "stride 2")))
    schemes_2d = ctx.pick(_pick_schemes(SCHEMES_2D, QUICK_2D), SCHEMES_2D,
                          _pick_schemes(SCHEMES_2D, ("all", "quadrant")))
    out = []
    for ndim, schemes in ((1, schemes_1d), (2, schemes_2d)):
        for label, args in schemes:
            for coord, _ in KINDS:
                out.append((ndim, label, args, coord, "position"))
    for ndim in (1, 2):
        for coord, _ in KINDS:
            out.append((ndim, "all", {}, coord, "learned"))
    return out


def configs(ctx: Context) -> list:
    return [dirac_config(ctx, ndim, seed, coord=coord, encoder=encoder, **args)
            for ndim, _, args, coord, encoder in plan(ctx) for seed in ctx.seeds]


def decode_scores(run) -> dict:
    """Accuracy and MSE of a trained run on every position, split into seen / unseen positions."""
    d = run.config.data
    x, pos = all_diracs(d.size, d.ndim)
    rec = reconstructions(run.model, x)
    flat_true = torch.arange(len(x))  # all_diracs lists positions in flat (row-major) order
    correct = (rec.flatten(1).argmax(1) == flat_true).numpy()
    mse = (rec - x).square().flatten(1).mean(1).numpy()
    _, train_pos = d.make(seed=run.config.seed if run.config.data_seed is None else run.config.data_seed)
    train_pos = train_pos.reshape(-1, d.ndim)
    flat_train = train_pos[:, 0] if d.ndim == 1 else train_pos[:, 0] * d.size + train_pos[:, 1]
    seen = np.zeros(len(x), bool)
    seen[flat_train.numpy()] = True

    def on(mask, v):
        return float(v[mask].mean()) if mask.any() else float("nan")

    return {"acc_all": float(correct.mean()), "acc_seen": on(seen, correct), "acc_unseen": on(~seen, correct),
            "mse_all": float(mse.mean()), "mse_seen": on(seen, mse), "mse_unseen": on(~seen, mse),
            "correct": correct, "seen": seen}


def _nanmean(values) -> float:
    v = np.asarray(values, float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _key(ndim: int, label: str, coord: bool) -> str:
    return f"acc_{ndim}d_{label.replace(' ', '').replace('%', 'pct')}_{'coord' if coord else 'plain'}"


def analyse(ctx: Context, runs) -> Result:
    per = len(ctx.seeds)
    groups = []  # (ndim, label, coord, encoder, scores per seed)
    for g, (ndim, label, _, coord, encoder) in enumerate(plan(ctx)):
        groups.append((ndim, label, coord, encoder, [decode_scores(r) for r in runs[g * per:(g + 1) * per]]))
    numbers, desc, rows, acc, seen_unseen = {}, {}, [], {}, {}
    for ndim, label, coord, encoder, sc in groups:
        m, s = mean_std([x["acc_all"] for x in sc])
        kind = "coord" if coord else "plain"
        seen_acc, unseen_acc = _nanmean([x["acc_seen"] for x in sc]), _nanmean([x["acc_unseen"] for x in sc])
        net = f"{kind} decoder" + (" behind the frozen position encoder" if encoder == "position"
                                   else ", end-to-end autoencoder (P2's run, reference)")
        seen = f"{int(sc[0]['seen'].sum())}/{len(sc[0]['seen'])}"
        rows.append([f"{ndim}-D ({size_text(ctx, ndim)})", label, net, seen,
                     m, s, seen_acc, unseen_acc, _nanmean([x["mse_seen"] for x in sc]),
                     _nanmean([x["mse_unseen"] for x in sc])])
        what = f"{ndim}-D ({size_text(ctx, ndim)}), scheme {label}, {net}, mean over {per} seeds"
        if encoder == "learned":
            key = f"acc_{ndim}d_autoencoder_{kind}"
            numbers[key] = m
            desc[key] = f"position accuracy (argmax = true position) over all positions, {what}"
            continue
        acc[(ndim, label, coord)] = m
        seen_unseen[(ndim, label, coord)] = (seen_acc, unseen_acc)
        numbers[_key(ndim, label, coord)] = m
        desc[_key(ndim, label, coord)] = f"position accuracy (argmax = true position) over all positions, {what}"
    works = {nd: [lab for (d, lab, c), a in acc.items() if d == nd and not c and a >= WORKS] for nd in (1, 2)}
    best = {nd: max(((a, lab) for (d, lab, c), a in acc.items() if d == nd and not c)) for nd in (1, 2)}
    best_coord = {nd: max(((a, lab) for (d, lab, c), a in acc.items() if d == nd and c)) for nd in (1, 2)}
    head = {}
    for nd in (1, 2):
        size = size_text(ctx, nd)
        head |= {f"best_acc_{nd}d_plain": best[nd][0], f"best_acc_{nd}d_coord": best_coord[nd][0]}
        desc |= {f"best_acc_{nd}d_plain": f"best mean position accuracy over the schemes, {nd}-D ({size}), plain "
                                          f"decoder behind the frozen position encoder (scheme {best[nd][1]})",
                 f"best_acc_{nd}d_coord": f"best mean position accuracy over the schemes, {nd}-D ({size}), "
                                          f"coordinate-channel decoder behind the frozen position encoder "
                                          f"(scheme {best_coord[nd][1]})"}
    for nd in (1, 2):
        for coord, kind in KINDS:
            su = {lab: v for (d, lab, c), v in seen_unseen.items() if d == nd and c == coord}
            lab = max(su, key=lambda k: su[k][0])
            unseen = [v[1] for v in su.values() if math.isfinite(v[1])]
            head |= {f"best_seen_acc_{nd}d_{kind}": su[lab][0],
                     f"mean_unseen_acc_{nd}d_{kind}": float(np.mean(unseen)) if unseen else float("nan")}
            desc |= {f"best_seen_acc_{nd}d_{kind}": f"best accuracy on the training positions over the schemes, "
                                                     f"{nd}-D ({size_text(ctx, nd)}), {kind} decoder behind the "
                                                     f"frozen position encoder (scheme {lab})",
                     f"mean_unseen_acc_{nd}d_{kind}": f"accuracy on the held-out positions, mean over the schemes "
                                                       f"that hold positions out, {nd}-D ({size_text(ctx, nd)}), "
                                                       f"{kind} decoder behind the frozen position encoder"}
    numbers = head | numbers
    verdict = verdict_from(all(works[nd] for nd in (1, 2)),
                           any(works[nd] for nd in (1, 2)) or all(best[nd][0] >= PARTLY for nd in (1, 2)))
    findings = "; ".join(
        f"{nd}-D ({size_text(ctx, nd)}): decoding works (accuracy ≥ {WORKS:g}) for "
        + (", ".join(works[nd]) if works[nd] else "no scheme")
        + f", best {best[nd][1]} ({best[nd][0]:.3f}; best on seen positions "
        f"{head[f'best_seen_acc_{nd}d_plain']:.3f}, on unseen positions {head[f'mean_unseen_acc_{nd}d_plain']:.3f} "
        f"on average); with coordinate channels best {best_coord[nd][1]} ({best_coord[nd][0]:.3f}; unseen "
        f"{head[f'mean_unseen_acc_{nd}d_coord']:.3f}); end-to-end autoencoder on all positions "
        f"{numbers[f'acc_{nd}d_autoencoder_plain']:.3f}" for nd in (1, 2))
    unseen_max = max((v[1] for (d, lab, c), v in seen_unseen.items() if not c and math.isfinite(v[1])),
                     default=float("nan"))
    findings += (f". Generalisation: the best accuracy on held-out positions over the plain decoders and schemes "
                 f"is {unseen_max:.3f}, so here 'sampled appropriately' means that every position is in the "
                 "training set" if unseen_max < 0.5 else
                 f". Generalisation: the best accuracy on held-out positions is {unseen_max:.3f}")
    cfg = {nd: next(r.config for r in runs if r.config.data.ndim == nd) for nd in (1, 2)}
    e2e = {nd: next(r.config for r in runs if r.config.data.ndim == nd and r.config.model.encoder == "learned")
           for nd in (1, 2)}
    notes = (f"Findings: {findings}. Training: {cfg[1].iterations} iterations (1-D), {cfg[2].iterations} (2-D) "
             f"for the decoders ({e2e[1].iterations} and {e2e[2].iterations} for the end-to-end autoencoders), "
             f"batch {cfg[1].batch_size} drawn with replacement from the scheme's positions, Adam lr {cfg[1].lr:g}, "
             "per-pixel MSE, decoder hidden layers 16 channels wide with biases; the frozen encoder gives the code "
             "(1, p/n) (2-D: (1, p_row/m, p_col/m)). 'unseen' is empty (nan) for 'all'. Chance accuracy is 1/n = "
             f"{1 / dirac_size(ctx, 1):.3g} (1-D) and 1/m² = {1 / dirac_size(ctx, 2) ** 2:.3g} (2-D). The verdict "
             "uses the plain decoders behind the frozen encoder; the coord rows are the CoordConv baseline on the "
             "same splits and seeds. " + EXPLORATION)
    return Result(
        numbers=numbers, descriptions=desc, verdict=verdict,
        rule=f"a scheme decodes if the plain decoder's mean position accuracy over all positions is ≥ {WORKS:g}; "
             f"confirmed if some scheme decodes in 1-D and in 2-D; partly if some scheme decodes in one of them, "
             f"or the best accuracy is ≥ {PARTLY:g} in both; otherwise not reproduced",
        figures=[_figure(ctx, groups), _figure_2d(ctx, groups)],
        tables=[{"title": "Position decoding per sampling scheme (means over seeds)",
                 "columns": ["dims", "scheme", "network", "seen positions", "acc all", "acc all std", "acc seen",
                             "acc unseen", "MSE seen", "MSE unseen"], "rows": rows}],
        notes=notes,
    )


# What was tried before fixing the protocol (typed here, not recomputed by this experiment).
EXPLORATION = (
    "Protocol search (2 seeds, all positions): end-to-end autoencoders decode poorly at affordable budgets "
    "(1-D n = 64, 3,000 iterations: accuracy 0.38/0.33 with the paper's channels 8-4-4-3-2, 0.53/0.95 with 16 "
    "channels; 2-D 16 × 16, 2,000 iterations, 16 channels: 0.47/0.59), so encoding and decoding were separated: "
    "behind the frozen position encoder the same decoder reaches 0.89/0.81 (paper channels, 3,000 iterations) "
    "and 1.00/1.00 (16 channels, 3,000 iterations; 0.97/0.97 at 1,000) in 1-D, and 0.99/0.97 in 2-D (16 × 16, "
    "2,000 iterations; 0.95/0.96 at 1,000; 32 × 32: 0.90/0.93). The quick profile's 2-D images are 16 × 16 "
    "because 32 × 32 and 64 × 64 steps cost 2× and more."
)


def _figure(ctx: Context, groups) -> str:
    """1-D: fraction of seeds decoding each position correctly, per scheme (plain and coord decoders)."""
    size = dirac_size(ctx, 1)
    curves, styles = {}, {}
    for ndim, label, coord, encoder, sc in groups:
        if ndim != 1 or encoder != "position":
            continue
        name = f"{label} ({'coord' if coord else 'plain'})"
        curves[name] = np.mean([x["correct"] for x in sc], 0) + (0.02 if coord else 0.0)
        styles[name] = "--" if coord else "-"
    line_plot(ctx.figure("p3_accuracy_1d.png"), np.arange(size), curves, xlabel="Dirac position p",
              ylabel="fraction of seeds decoding p correctly", styles=styles,
              title="1-D decoders (frozen position encoder) per scheme; coord offset +0.02")
    return "p3_accuracy_1d.png"


def _figure_2d(ctx: Context, groups) -> str:
    """2-D: per-position fraction of seeds decoding correctly, plain decoders, one map per scheme."""
    size = dirac_size(ctx, 2)
    panels = {f"{label} (plain)": np.mean([x["correct"] for x in sc], 0).reshape(size, size)
              for ndim, label, coord, encoder, sc in groups if ndim == 2 and encoder == "position" and not coord}
    image_row(ctx.figure("p3_accuracy_2d.png"), panels, cmap="viridis")
    return "p3_accuracy_2d.png"
