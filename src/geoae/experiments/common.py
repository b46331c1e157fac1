"""What every experiment shares: the context it runs in, its result record, and evaluation helpers.

An experiment module (one per claim of the paper, ``d1.py`` … ``p3.py``) defines

    ID, TITLE, CLAIM, PAPER                  the claim id, a title, the paper's statement, the paper's number
    configs(ctx) -> list[TrainConfig]        the independent training runs it needs (may be empty)
    analyse(ctx, runs) -> Result             numbers, tables, figures, from the finished runs
    (runs: list[TrainResult] in the order of configs(ctx))

and the runner (``runner.py``) trains the configs with ``geoae.train.train_many`` (finished runs are
never redone, identical configs are shared between experiments), calls ``analyse`` and writes
``<out>/<ID>/results.json``. The report is built from those files alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILES = ("quick", "paper", "tiny")
VERDICTS = ("confirmed", "partly", "not reproduced")


@dataclass(frozen=True)
class Context:
    """Where and at which scale an experiment runs.

    ``profile``: ``quick`` (minutes on 2 CPU cores), ``paper`` (the paper's scale) or ``tiny`` (seconds;
    the smoke-test budget used by the test suite: numbers are meaningless, the pipeline is exercised).
    """

    profile: str
    seeds: tuple[int, ...]
    out: Path  # results/<ID>/: results.json and figures
    runs: Path  # shared run directories, keyed by config digest

    def pick(self, quick, paper, tiny=None):
        """The value for this profile (``tiny`` falls back to ``quick`` when not given)."""
        return {"quick": quick, "paper": paper, "tiny": quick if tiny is None else tiny}[self.profile]

    def figure(self, name: str) -> Path:
        return self.out / name


@dataclass
class Result:
    """What an experiment measured, with the verdict and the rule that gave it."""

    numbers: dict[str, float]  # name -> value, shown in the report with `descriptions`
    descriptions: dict[str, str]  # name -> what it is (units, on what data)
    verdict: str  # one of VERDICTS
    rule: str  # the verdict rule, in words, with its thresholds
    figures: list[str] = field(default_factory=list)  # file names inside ctx.out
    tables: list[dict] = field(default_factory=list)  # {"title", "columns", "rows"}
    notes: str = ""  # anything a reader should know (deviations from the paper's protocol)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} is not one of {VERDICTS}")
        missing = set(self.numbers) - set(self.descriptions)
        if missing:
            raise ValueError(f"numbers without a description: {sorted(missing)}")


def verdict_from(confirmed: bool, partly: bool) -> str:
    return "confirmed" if confirmed else ("partly" if partly else "not reproduced")


# ------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def codes(model, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Latent codes z (N, d) of images (N, 1, H, W) or signals (N, 1, n)."""
    model.eval()
    return torch.cat([model.encode(c) for c in images.split(chunk)])


@torch.no_grad()
def reconstructions(model, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """D(E(x)) for every image, same shape as ``images``."""
    model.eval()
    return torch.cat([model.decode(model.encode(c)) for c in images.split(chunk)])


@torch.no_grad()
def mse_per_image(model, images: torch.Tensor) -> np.ndarray:
    """Per-pixel MSE of each image's reconstruction, (N,)."""
    rec = reconstructions(model, images)
    return (rec - images).square().flatten(1).mean(1).numpy()


def pearson(a, b) -> float:
    """Pearson correlation; NaN (no warning) when either input is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(a, b) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either input is constant."""
    from scipy.stats import rankdata

    return pearson(rankdata(np.asarray(a, np.float64)), rankdata(np.asarray(b, np.float64)))


def r_squared(x, y) -> float:
    """R² of the least-squares affine fit y ≈ a·x + b."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    ss_res = float(((A @ coef - y) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


# ------------------------------------------------------------------------------ shared disk runs


def disk_config(ctx: Context, *, seed: int = 0, bias: bool = True, exclude=(), r_max: float | None = None,
                regulariser: str = "none", reg_weight: float = 0.0, iterations: int | None = None):
    """The paper's disk autoencoder run (paper64, d = 1, 64 × 64 ``area`` disks, Adam 1e-3, batch 64).

    Every disk experiment builds its runs here, so identical runs (e.g. the biased baseline used by D1,
    D2 and D5) have identical configs and are trained once. Scale per profile: ``quick`` 1,000 fixed
    images and 3,000 iterations for bias-free runs (the budget of D4's claim) but 2,000 for biased runs
    (they are most of the runs, and the quick profile must finish in minutes on 2 cores); ``paper``
    10,000 iterations; ``tiny`` 4 iterations on 64 images.
    """
    from ..data import DiskData
    from ..models import ModelConfig
    from ..train import TrainConfig

    n_train = ctx.pick(1000, 1000, tiny=64)
    iters = iterations if iterations is not None else ctx.pick(2000 if bias else 3000, 10000, tiny=4)
    return TrainConfig(
        model=ModelConfig(arch="paper64", size=64, latent_dim=1, bias=bias),
        data=DiskData(n=n_train, size=64, rendering="area", r_max=r_max, exclude=tuple(exclude)),
        iterations=iters, batch_size=64, lr=1e-3, regulariser=regulariser, reg_weight=reg_weight,
        seed=seed, log_every=ctx.pick(50, 100, tiny=1), checkpoint_every=500,
    )


def disk_test_set(ctx: Context, *, r_max: float = 32.0):
    """Evenly spaced test radii over [0, r_max] and their ``area`` images: (N, 1, 64, 64), (N,)."""
    from ..data import render_disks, test_radii

    radii = test_radii(ctx.pick(129, 257, tiny=17), size=64, r_max=r_max)
    return render_disks(radii, size=64, rendering="area"), radii
