"""Recipes: the named training set-ups of the disk experiments, each as one of the sources gives it.

Two texts describe how the authors trained their disk autoencoder, and they differ (``shared/SOURCES.md``):

- ``iclr2018``: the set-up stated in the ICLR 2018 version of the paper (§3.1, Table 1): 64 × 64 binary
  centred disks with r uniform in (0, 32], 3 × 3 convolutions subsampled down to a scalar code, leaky ReLU
  α = 0.2, Adam with learning rate 0.001, batch 300. It does not state the training-set size, the number of
  iterations, the initialisation or which weights are kept: those are our readings (``choices``).
- ``released``: what the authors' Keras code does (and its example model): 63 × 63 disks blurred by 800
  Gaussian jitters of σ = 0.5 px and stored as 8-bit PNG files, 1,000 training images with r = 31.5·U[0, 1),
  ``keras63`` (valid 3 × 3 convolutions, transposed convolutions in the decoder, leaky ReLU 0.05 after every
  layer), Glorot-uniform kernels, Adam lr 0.01 with Keras's ε = 1e-7, batches of 64 distinct images,
  10,000 iterations, and the weights of the best-batch snapshot taken every 500 iterations.
- ``geoae``: the set-up this project used before recipes existed: a mix of the two plus choices of our own
  (listed in ``deviations``). It is kept for the experiments beyond the paper and for comparison.

A recipe turns into ``TrainConfig`` objects (``recipe.config(...)``) and test sets (``recipe.test_set``);
the experiments build every disk run through it, so a run's ``config.json`` says which recipe it follows
(``recipe_of(config)``). Where a source is silent on the budget, the recipes see the same number of images
(``PAPER_IMAGES``: the released code's 10,000 iterations of 64).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from .models import DEFAULT_ALPHA, DEFAULT_SIZE

__all__ = ["Recipe", "RECIPES", "NAMES", "get_recipe", "recipe_of", "PAPER_IMAGES", "QUICK_IMAGES", "DEFAULT"]

PAPER_IMAGES = 640_000  # images seen by a paper-profile run: the released code's 10,000 iterations × 64
QUICK_IMAGES = 192_000  # the quick profile's budget: 3,000 iterations × 64
TINY_ITERATIONS = 4


@dataclass(frozen=True)
class Recipe:
    """One training set-up of the disk experiments; ``source`` is SOURCES.md's tag for where it comes from."""

    name: str
    title: str
    source: str
    arch: str
    size: int
    alpha: float
    rendering: str  # binary | area | gaussian
    sigma: float = 0.5  # the gaussian rendering's σ (px)
    quantise: int = 0  # 255: stored as 8-bit images (floor(255·x)/255)
    n_train: int = 1000
    lr: float = 1e-3
    eps: float = 1e-8
    optimizer: str = "adam"  # adam (torch's ε) | adam_keras (Keras's ε̂)
    batch_size: int = 64
    batch_sampling: str = "replacement"
    keep: str = "last"
    test_count: int | None = None  # test radii over [0, r_max]; None: the profile's (129 quick, 257 paper)
    choices: dict[str, str] = field(default_factory=dict)  # item -> where its value comes from
    deviations: tuple[str, ...] = ()  # for a recipe of ours: how it differs from the sources' recipes

    @property
    def r_max(self) -> float:
        """The largest training radius: half the image side (32 on 64 × 64, 31.5 on 63 × 63)."""
        return self.size / 2

    def iterations(self, profile: str) -> int:
        """Training iterations of a run of this profile: the same number of images for every recipe."""
        if profile == "tiny":
            return TINY_ITERATIONS
        images = {"quick": QUICK_IMAGES, "paper": PAPER_IMAGES}[profile]
        return math.ceil(images / self.batch_size)

    def config(self, profile: str, *, seed: int = 0, bias: bool = True, exclude=(), r_max: float | None = None,
               regulariser: str = "none", reg_weight: float = 0.0, iterations: int | None = None,
               log_every: int | None = None, **overrides):
        """The ``TrainConfig`` of one disk run of this recipe (d = 1). ``overrides`` replace any recipe item
        (``alpha``, ``lr``, ``rendering``, ``arch``/``size``, ``batch_size``, ``keep`` …: the factor sweeps)."""
        from .data import DiskData
        from .models import ModelConfig
        from .training import TrainConfig

        unknown = set(overrides) - {f for f in self.__dataclass_fields__ if f not in ("name", "title", "source",
                                                                                    "choices", "deviations")}
        if unknown:
            raise ValueError(f"unknown recipe item(s) {sorted(unknown)}")
        r = self.with_items(**overrides) if overrides else self
        n_train = 64 if profile == "tiny" else r.n_train
        iters = iterations if iterations is not None else r.iterations(profile)
        alpha = None if r.alpha == DEFAULT_ALPHA.get(r.arch) else r.alpha  # arch default: the digests of old runs
        return TrainConfig(
            model=ModelConfig(arch=r.arch, size=r.size, latent_dim=1, bias=bias, alpha=alpha),
            data=DiskData(n=n_train, size=r.size, rendering=r.rendering, sigma=r.sigma, r_max=r_max,
                          exclude=tuple(exclude), quantise=r.quantise),
            iterations=iters, batch_size=r.batch_size, lr=r.lr, eps=r.eps, optimizer=r.optimizer,
            regulariser=regulariser, reg_weight=reg_weight, seed=seed, keep=r.keep,
            batch_sampling=r.batch_sampling if n_train >= r.batch_size else "replacement",
            log_every=log_every if log_every is not None else {"tiny": 1, "quick": 50}.get(profile, 100),
            checkpoint_every=500,
        )

    def with_items(self, **changes) -> Recipe:
        """This recipe with some items changed (the factor sweeps). A new ``arch`` brings its own image size
        (``models.DEFAULT_SIZE``) unless ``size`` is given, and the profile's test radii (the released code's 300
        test radii belong to its 63 × 63 set-up)."""
        if "arch" in changes:
            changes.setdefault("size", DEFAULT_SIZE[changes["arch"]])
            changes.setdefault("test_count", None)
        return dataclasses.replace(self, **changes)

    def test_radii(self, profile: str, r_max: float | None = None) -> torch.Tensor:
        """Evenly spaced test radii over [0, r_max] (r_max: the recipe's largest radius)."""
        from .data import test_radii

        count = self.test_count or {"quick": 129, "paper": 257, "tiny": 17}[profile]
        if profile == "tiny":
            count = 17
        return test_radii(count, size=self.size, r_max=self.r_max if r_max is None else r_max)

    def render(self, radii, rendering: str | None = None) -> torch.Tensor:
        """Images (N, 1, m, m) of the given radii, rendered as this recipe's data (or as ``rendering``)."""
        from .data import render_disks

        return render_disks(radii, size=self.size, rendering=rendering or self.rendering, sigma=self.sigma,
                            quantise=self.quantise if rendering in (None, self.rendering) else 0)

    def test_set(self, profile: str, r_max: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (N, 1, m, m), radii (N,)) of this recipe's test disks."""
        radii = self.test_radii(profile, r_max)
        return self.render(radii), radii

    def describe(self) -> dict:
        """The recipe as a JSON-friendly dict (for results files and the report)."""
        return {"name": self.name, "title": self.title, "source": self.source, "arch": self.arch,
                "size": self.size, "alpha": self.alpha, "rendering": self.rendering, "sigma": self.sigma,
                "quantise": self.quantise, "n_train": self.n_train, "lr": self.lr, "eps": self.eps,
                "optimizer": self.optimizer, "batch_size": self.batch_size, "batch_sampling": self.batch_sampling,
                "keep": self.keep, "paper_iterations": self.iterations("paper"),
                "quick_iterations": self.iterations("quick"), "choices": dict(self.choices),
                "deviations": list(self.deviations)}


ICLR2018 = Recipe(
    name="iclr2018", title="the set-up stated in the ICLR 2018 text", source="ICLR 2018 §3.1, Table 1",
    arch="paper64", size=64, alpha=0.2, rendering="binary", lr=1e-3, batch_size=300,
    choices={
        "images": "ICLR 2018 §3.1: 64 × 64 binary centred disks, r uniform in (0, 32]",
        "network": "ICLR 2018 §3.1, Table 1: 3 × 3 convolutions subsampled until z is a scalar, depths 8, 4, 4, 3, 2, "
                   "1 (our reading: six stride-2 layers; the decoder mirrors them with zero-insertion upsampling)",
        "alpha": "ICLR 2018 Table 1: 0.2",
        "optimiser": "ICLR 2018 §3.1: Adam, learning rate 0.001 (ε not stated: torch's 1e-8, our reading)",
        "batch": "ICLR 2018 Table 1: 300 (drawn with replacement from the training set: our reading)",
        "training set": "not stated: 1,000 images, as the released code (our reading)",
        "iterations": f"not stated: {PAPER_IMAGES // 300 + 1:,} iterations, so that a run sees the released "
                      f"code's {PAPER_IMAGES:,} images (our reading)",
        "init": "not stated: Glorot-uniform kernels, zero biases, as the released code (our reading)",
        "kept weights": "not stated: the last iterate (our reading)",
        "test disks": "not stated: evenly spaced radii over [0, 32], binary (our reading)",
    },
)

RELEASED = Recipe(
    name="released", title="the authors' released Keras code", source="released code",
    arch="keras63", size=63, alpha=0.05, rendering="gaussian", sigma=0.5, quantise=255, lr=1e-2, eps=1e-7,
    optimizer="adam_keras", batch_size=64, batch_sampling="subset", keep="best_batch", test_count=300,
    choices={
        "images": "released code: 63 × 63, centre pixel 31, the indicator averaged over 800 Gaussian jitters of "
                  "σ = 0.5 px, written as 8-bit PNG (uint8(255·x): truncated) and read back; here the jitter "
                  "average is computed exactly (its expectation, the 'gaussian' rendering) and truncated to 8 bits "
                  "the same way (tests/test_recipes.py shows the two agree within the Monte Carlo noise)",
        "training set": "released code: 1,000 images, r = 31.5·U[0, 1)",
        "network": "released code: keras63, five valid 3 × 3 stride-2 convolutions 8, 4, 3, 2, 1 and five "
                   "transposed convolutions 2, 3, 4, 8, 1, leaky ReLU after every layer (z and output included)",
        "alpha": "released code: 0.05",
        "optimiser": "released code: Keras Adam, lr 0.01, β = (0.9, 0.999), ε = 1e-7 added to √v (Keras's ε̂)",
        "batch": "released code: 64 distinct images per iteration (shuffle the indices, take the first 64)",
        "iterations": "released code: 10,000 (called epochs)",
        "init": "released code: Glorot-uniform kernels, zero biases (Keras's defaults)",
        "kept weights": "released code: every 500 iterations, the weights after the step are saved if that batch's "
                        "loss is the lowest so far; the run ends with that snapshot",
        "test disks": "released code: 300 radii linspace(0, 31.5), the same rendering",
        "ambiguous": "the Monte Carlo noise of the authors' 800 jitters is not reproduced (we use its expectation)",
    },
)

GEOAE = Recipe(
    name="geoae", title="geoae's own set-up (a mix of the two sources, and ours)", source="our reading",
    arch="paper64", size=64, alpha=0.2, rendering="area", lr=1e-3, batch_size=64,
    deviations=(
        "architecture, α = 0.2 and lr 0.001 from ICLR 2018; batch 64 and 1,000 training images from the released "
        "code",
        "disks rendered by exact pixel coverage ('area'): neither source's data (ICLR 2018: binary; released: "
        "blurred 63 × 63, 8-bit)",
        "batches drawn with replacement; torch's Adam (ε = 1e-8); the last iterate kept (the released code keeps "
        "its best-batch snapshot)",
        "3,000 iterations in the quick profile and 10,000 in the paper profile",
    ),
)

RECIPES = {r.name: r for r in (ICLR2018, RELEASED, GEOAE)}
NAMES = tuple(RECIPES)
DEFAULT = "geoae"  # what `geoae train` uses without --recipe, and the experiments beyond the paper


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError naming the allowed ones otherwise."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(NAMES)}, got {name!r}")
    return RECIPES[name]


def recipe_of(config) -> str | None:
    """The name of the recipe a disk ``TrainConfig`` follows (its data rendering, network, optimiser, batch and
    kept weights; regulariser, seed, radius range, training-set size and budget may be anything), or None."""
    for recipe in RECIPES.values():
        ref = recipe.config("paper", seed=config.seed)
        same = (config.model.arch == ref.model.arch and config.model.negative_slope == ref.model.negative_slope
                and type(config.data) is type(ref.data)
                and (config.data.rendering, config.data.size, config.data.quantise)
                == (ref.data.rendering, ref.data.size, ref.data.quantise)
                and (config.lr, config.eps, config.optimizer, config.batch_size, config.batch_sampling, config.keep)
                == (ref.lr, ref.eps, ref.optimizer, ref.batch_size, ref.batch_sampling, ref.keep))
        if same:
            return recipe.name
    return None
