"""What every experiment shares: the context it runs in, its result record, and evaluation helpers.

An experiment module (one per claim of the paper, ``d1.py`` … ``p3.py``, listed in ``registry.py``) defines

    ID, TITLE, CLAIM, PAPER            the claim id, a title, the claim as we test it, and what the source
                                       states: ``PAPER = sources.statement(ID)`` (``sources.py`` holds the
                                       sources' statements, our readings and each rule's history)
    STAGES                             a tuple of functions stage(ctx, done) -> {name: TrainConfig}: the
                                       training runs it needs, keyed by name; ``done`` holds the finished
                                       runs of the earlier stages (D7: a λ search, then the main runs)
    analyse(ctx, runs) -> Result       numbers, tables, figures, from the finished runs {name: TrainResult}

The runner (``runner.py``) trains stage k of every selected experiment in one ``train_many`` call (finished
runs are never redone, identical configs are shared between experiments), then stage k + 1, calls
``analyse`` and writes ``<out>/<ID>/results.json``. The report is built from those files alone.

A measured number is declared once, with what it is: ``Number(value, description)``. Numbers measured on
the authors' released model go in ``Result.authors`` (the report gives them their own column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILES = ("quick", "paper", "tiny")
VERDICTS = ("confirmed", "partly", "not reproduced", "inconclusive", "measured")  # measured: a diagnostic, no claim


@dataclass(frozen=True)
class Context:
    """Where and at which scale an experiment runs.

    ``profile``: ``quick`` (a first look in minutes on 2 CPU cores), ``paper`` (the reference result: the
    paper's scale, full grids and diagnostics) or ``tiny`` (seconds; the smoke-test budget of the test suite:
    numbers are meaningless, the pipeline and the measures are exercised).
    """

    profile: str
    seeds: tuple[int, ...]
    out: Path  # results/<ID>/ (results/<ID>/<recipe>/ for the disk claims): results.json and figures
    runs: Path  # shared run directories, keyed by config digest
    recipe: str | None = None  # the recipe of the disk runs (``geoae.recipes``); None: recipes.DEFAULT

    @property
    def disk_recipe(self):
        """The ``recipes.Recipe`` every disk run and test set of this context follows."""
        from ..recipes import DEFAULT, get_recipe

        return get_recipe(self.recipe or DEFAULT)

    def pick(self, quick, paper, tiny=None):
        """The value for this profile (``tiny`` falls back to ``quick`` when not given)."""
        return {"quick": quick, "paper": paper, "tiny": quick if tiny is None else tiny}[self.profile]

    def figure(self, name: str) -> Path:
        return self.out / name


@dataclass(frozen=True)
class Number:
    """One measured number and what it is (units, data, seeds): the report prints both."""

    value: float
    description: str


@dataclass
class Result:
    """What an experiment measured, with the verdict, the rule that gave it and the rule's control."""

    numbers: dict[str, Number]  # name -> number; the first is the headline
    verdict: str  # one of VERDICTS
    rule: str  # the verdict rule, in words, with its thresholds (its history: ``sources.RULES``)
    control: str = ""  # what the rule compares against, so that a pass is not a property of the set-up
    figures: list[str] = field(default_factory=list)  # file names inside ctx.out
    tables: list[dict] = field(default_factory=list)  # {"title", "columns", "rows"}
    notes: str = ""  # anything a reader should know (deviations from the paper's protocol)
    authors: dict[str, Number] = field(default_factory=dict)  # measured on the authors' released model
    # per-seed values of numbers that are means over seeds: the record gives each its bootstrap interval and
    # standard deviation over seeds ({name: [lo, hi, sd]})
    per_seed: dict[str, list] = field(default_factory=dict)
    headline: str = ""  # the result in plain words with the rule's comparison ("hole MSE 5.3× control, needs ≥ 3×")

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} is not one of {VERDICTS}")
        for name, n in (self.numbers | self.authors).items():
            if not isinstance(n, Number):
                raise ValueError(f"number {name!r} must be a Number(value, description), got {n!r}")

    def record(self) -> dict:
        """The results-file fields: numbers and their descriptions (in the experiment's order), the rest."""
        return {"numbers": {k: n.value for k, n in self.numbers.items()},
                "descriptions": {k: n.description for k, n in self.numbers.items()},
                "number_order": list(self.numbers),
                "authors": {k: {"value": n.value, "description": n.description} for k, n in self.authors.items()},
                "verdict": self.verdict, "rule": self.rule, "control": self.control, "figures": self.figures,
                "tables": self.tables, "notes": self.notes, "intervals": self.intervals(), "headline": self.headline}

    def intervals(self) -> dict[str, list[float]]:
        """{name: [lo, hi, sd]} for the numbers given per seed (95% bootstrap interval of their mean)."""
        out = {}
        for name, values in self.per_seed.items():
            v = np.asarray(values, np.float64)
            m, lo, hi = seed_interval(v)
            if np.isfinite(m) and np.isfinite(lo) and np.isfinite(hi):
                out[name] = [lo, hi, float(v.std(ddof=1))]
        return out


@dataclass(frozen=True)
class Initialised:
    """A run that starts from chosen weights instead of its config's random initialisation.

    ``apply(model)`` sets the starting weights in place; ``name`` names the initialisation. The runner
    trains these runs under ``<runs>/init-<name>/`` (the config alone does not say how the run starts, so
    the run must not share a directory with the randomly initialised run of the same config): ``prepare``
    writes the iteration-0 checkpoint there, from which ``train`` resumes.
    """

    config: object  # TrainConfig
    name: str
    apply: object  # callable(model) -> None

    def prepare(self, root: Path) -> None:
        from ..models import build_model
        from ..training import BatchSource, is_finished, make_optimizer, run_name
        from ..training.rundir import RunDirectory

        out = Path(root) / run_name(self.config)
        if is_finished(out) or (out / "checkpoint.safetensors").exists():
            return
        model = build_model(self.config.model, seed=self.config.seed)
        self.apply(model)
        with RunDirectory(out) as rundir:  # any executor may resume it: the checkpoint names none
            rundir.save_checkpoint(self.config, model, make_optimizer(model, self.config),
                                   BatchSource(self.config).generator, 0, [], {})


def bootstrap_interval(values, stat=np.mean, level: float = 0.95, n_boot: int = 2000, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over per-seed values: (lo, hi), deterministic for a ``seed``.

    The n values (one per training seed, or paired per-seed differences) are resampled with replacement
    ``n_boot`` times; lo and hi are the (1 − level)/2 and (1 + level)/2 quantiles of ``stat`` over the resamples.
    With fewer than two values nothing is known of the spread: (−inf, inf). With few seeds the interval is
    narrow for what it claims (it never leaves [min, max] for the mean): read it as the seeds' spread, not as a
    calibrated confidence interval. NaN values are refused (decide first what a NaN means for the rule).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("bootstrap_interval: no values")
    if np.isnan(v).any():
        raise ValueError(f"bootstrap_interval: NaN among the values {v.tolist()}")
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_interval: level={level!r} must lie in (0, 1)")
    if v.size < 2:
        return float("-inf"), float("inf")
    rng = np.random.default_rng(seed)
    samples = v[rng.integers(0, v.size, size=(int(n_boot), v.size))]
    stats = np.array([stat(row) for row in samples], dtype=np.float64)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


_HOLDS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}


@dataclass(frozen=True)
class Decision:
    """A thresholded claim on per-seed values: the verdict, the estimate, its bootstrap interval, the rule."""

    verdict: str  # "confirmed", "not reproduced" or "inconclusive"
    estimate: float  # stat of the values
    lo: float
    hi: float
    n: int  # number of values (seeds)
    threshold: float
    direction: str

    def __str__(self) -> str:
        verdict = f"inconclusive at {self.n} seed{'s' * (self.n != 1)}" if self.verdict == "inconclusive" else \
            self.verdict
        return (f"{self.estimate:.4g} [{self.lo:.4g}, {self.hi:.4g}] over {self.n} seed{'s' * (self.n != 1)}, "
                f"needs {self.direction} {self.threshold:g}: {verdict}")


def decide(values, threshold: float, direction: str, *, stat=np.mean, level: float = 0.95, n_boot: int = 2000,
           seed: int = 0) -> Decision:
    """Judge "stat(values) ``direction`` threshold" (direction one of >=, >, <=, <) with its uncertainty.

    ``confirmed`` if every point of the bootstrap interval (``bootstrap_interval``) satisfies the comparison,
    ``not reproduced`` if none does, ``inconclusive`` if the interval straddles the threshold (with one seed
    always: its interval is unbounded). Its ``str`` is the headline, e.g. "0.35 [0.05, 0.65] over 2 seeds,
    needs >= 0.5: inconclusive at 2 seeds".
    """
    if direction not in _HOLDS:
        raise ValueError(f"decide: direction={direction!r} is not one of {', '.join(_HOLDS)}")
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = bootstrap_interval(v, stat=stat, level=level, n_boot=n_boot, seed=seed)
    holds = _HOLDS[direction]
    ends = [bool(holds(lo, threshold)), bool(holds(hi, threshold))]
    verdict = "confirmed" if all(ends) else ("not reproduced" if not any(ends) else "inconclusive")
    return Decision(verdict, float(stat(v)), lo, hi, int(v.size), float(threshold), direction)


def seed_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of per-seed values and its ``bootstrap_interval``; NaN throughout when a value is
    NaN (a collapsed run), (mean, −inf, inf) with one seed (nothing is known of the spread)."""
    v = np.asarray(values, np.float64)
    if len(v) == 0 or not np.all(np.isfinite(v)):
        return float("nan"), float("nan"), float("nan")
    return (float(v.mean()), *bootstrap_interval(v, level=level))


def side_of(interval: tuple[float, float, float], claimed: str, threshold: float = 0.0) -> str:
    """'holds' if the interval lies on the ``claimed`` side (``above`` or ``below``) of ``threshold``, 'fails' if
    on the other, 'inconclusive' if it contains the threshold (or is NaN, or unbounded: one seed)."""
    _, lo, hi = interval
    if np.isnan(lo) or np.isnan(hi):
        return "inconclusive"
    above, below = lo > threshold, hi < threshold
    if claimed == "above":
        return "holds" if above else ("fails" if below else "inconclusive")
    return "holds" if below else ("fails" if above else "inconclusive")


def interval_text(interval: tuple[float, float, float], digits: int = 3) -> str:
    """'m [lo, hi]' for the report."""
    m, lo, hi = interval
    return f"{m:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def verdict_from(confirmed: bool, partly: bool) -> str:
    return "confirmed" if confirmed else ("partly" if partly else "not reproduced")


def per_seed(ctx: Context, make, prefix: str) -> dict:
    """{f"{prefix}/s{seed}": make(seed)} for every seed of the context: runs keyed by name."""
    return {f"{prefix}/s{s}": make(s) for s in ctx.seeds}


def seed_runs(runs: dict, prefix: str) -> list:
    """The runs named ``prefix/s<seed>``, in seed order (as ``per_seed`` made them)."""
    found = [(int(k.rsplit("/s", 1)[1]), r) for k, r in runs.items() if k.rsplit("/s", 1)[0] == prefix]
    if not found:
        raise KeyError(f"no runs named {prefix}/s<seed>; have {sorted(runs)}")
    return [r for _, r in sorted(found, key=lambda t: t[0])]


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
                regulariser: str = "none", reg_weight: float = 0.0, iterations: int | None = None,
                rendering: str | None = None, **overrides):
    """The disk autoencoder run (d = 1) of the context's recipe (``ctx.disk_recipe``, ``geoae.recipes``).

    Every disk experiment builds its runs here, so identical runs (e.g. the biased baseline used by D1,
    D2, D5, D6 and D7) have identical configs and are trained once. The budget is the recipe's for the
    profile (``Recipe.iterations``: every recipe sees the same number of images; ``tiny``: 4 iterations on
    64 images). ``rendering`` and ``overrides`` replace recipe items (factor sweeps).
    """
    if rendering is not None:
        overrides["rendering"] = rendering
    return ctx.disk_recipe.config(ctx.profile, seed=seed, bias=bias, exclude=exclude, r_max=r_max,
                                  regulariser=regulariser, reg_weight=reg_weight, iterations=iterations,
                                  **overrides)


def disk_iterations(ctx: Context) -> int:
    """Training iterations of every disk run of this profile and recipe."""
    return ctx.disk_recipe.iterations(ctx.profile)


def disk_test_set(ctx: Context, *, r_max: float | None = None, rendering: str | None = None):
    """Evenly spaced test radii over [0, r_max] (default: the recipe's largest radius) and their images, rendered
    as the recipe's data (or as ``rendering``): (N, 1, m, m), (N,)."""
    recipe = ctx.disk_recipe
    radii = recipe.test_radii(ctx.profile, r_max)
    return recipe.render(radii, rendering), radii


def disk_size(ctx: Context) -> int:
    """The image side m of the context's disk runs."""
    return ctx.disk_recipe.size


def r_train(ctx: Context) -> float:
    """The largest training radius R of the context's disk runs (the image's half side)."""
    return ctx.disk_recipe.r_max


def area_radius(images: torch.Tensor) -> np.ndarray:
    """r̂ = √(Σx / π) per image (N, 1, m, m), negative pixel values clipped: the radius of the disk whose
    area the image holds (exact for ``area`` disks inside the image)."""
    mass = images.detach().double().clamp_min(0).flatten(1).sum(1).numpy()
    return np.sqrt(mass / np.pi)
