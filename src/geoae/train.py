"""Training: Adam on the per-pixel MSE plus a regulariser, reproducible and resumable.

The objective of Newson et al. (JMIV 2020, Sec. 3 and 4.3) is

    L(θ) = 1/(B·#pix) Σ_b ‖D(E(x_b)) − x_b‖²  +  λ · ψ(θ, x)

with ψ one of the paper's regularisers (``locality`` = "type 1", ``l2_all`` = "type 2", ``l2_encoder`` =
"type 3") or the released code's ``contractive`` penalty (SPEC §3).

A run is a directory::

    config.json         the full TrainConfig, the seed, the git commit
    history.json        loss / mse / penalty at every logged iteration
    metrics.json        final numbers (written last: its presence marks a finished run)
    model.safetensors   the final weights
    checkpoint.safetensors  weights + Adam state + RNG state + iteration (no pickle)

A run killed at any point resumes from its last checkpoint and ends with the same weights as an
uninterrupted run of the same config (the batch sampler's RNG state is part of the checkpoint).

Speed (docs/performance.md, ``geoae bench``): the training step of ``paper64`` / ``paper1d`` runs on the fused
C kernels of ``geoae.fused`` (the same mathematics, summed in another order; ``BACKENDS``, env
``GEOAE_BACKEND``): ``auto`` uses them wherever they apply and falls back to the torch path otherwise (no C
compiler, coordinate channels, a frozen encoder). The kernels split a batch over ``kernel_threads()``
threads with results that do not depend on the thread count; the remaining torch ops run with
``TRAIN_THREADS`` (1) torch threads. ``train_many`` runs one worker per core, one kernel thread each. The
backend a run used is recorded in its metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .data import DiracData, DiskData, render_disks, sample_radii
from .models import Autoencoder, ModelConfig, build_model

REGULARISERS = ("none", "locality", "l2_all", "l2_encoder", "contractive")
CHECKPOINT_FORMAT = "geoae-checkpoint-1"
# torch threads while training (env GEOAE_TORCH_THREADS; 0: leave torch's setting). The paper's network has
# 1 to 8 channels: torch's kernels are too small to share between cores, and intra-op threads cost more than
# they save (catastrophically so when other processes compete for the cores).
TRAIN_THREADS = int(os.environ.get("GEOAE_TORCH_THREADS", "1"))
BACKENDS = ("auto", "fused", "torch")


def backend_setting() -> str:
    """The training backend asked for: ``GEOAE_BACKEND`` (``auto`` by default), validated."""
    value = os.environ.get("GEOAE_BACKEND", "auto")
    if value not in BACKENDS:
        raise ValueError(f"GEOAE_BACKEND must be one of {BACKENDS}, got {value!r}")
    return value


def kernel_threads() -> int:
    """Threads of the fused kernels: ``GEOAE_THREADS`` if set, else one per available core."""
    return _count_from_env("GEOAE_THREADS")


def _count_from_env(name: str) -> int:
    """A positive integer from the environment variable ``name``, else the number of available cores."""
    value = os.environ.get(name)
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        return int(value)
    return _cores()


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def training_threads():
    """Run the enclosed training with ``TRAIN_THREADS`` torch threads, then restore the previous count."""
    old = torch.get_num_threads()
    if TRAIN_THREADS > 0 and TRAIN_THREADS != old:
        torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept on disk."""


class CheckpointError(ValueError):
    """A checkpoint is corrupted or belongs to another configuration."""


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the code version, recorded separately)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DiskData | DiracData = field(default_factory=lambda: DiskData(n=1000))
    iterations: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    regulariser: str = "none"
    reg_weight: float = 0.0
    seed: int = 0
    data_seed: int | None = None  # None: the same as `seed`
    log_every: int = 50
    checkpoint_every: int = 500

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        _check_int("iterations", self.iterations, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("log_every", self.log_every, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        _check_int("seed", self.seed, 0)
        if self.data_seed is not None:
            _check_int("data_seed", self.data_seed, 0)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.regulariser not in REGULARISERS:
            raise ValueError(
                f"regulariser={self.regulariser!r} is not one of {', '.join(map(repr, REGULARISERS))}"
            )
        if not (math.isfinite(self.reg_weight) and self.reg_weight >= 0):
            raise ValueError(f"reg_weight must be a finite number >= 0, got {self.reg_weight!r}")
        is_dirac = isinstance(self.data, DiracData)
        want_1d = is_dirac and self.data.ndim == 1
        if want_1d != (self.model.arch == "paper1d"):
            raise ValueError(
                f"model.arch={self.model.arch!r} does not fit the data ({type(self.data).__name__}"
                f"{', ndim=1' if want_1d else ''}): use arch 'paper1d' for 1-D Dirac signals and a 2-D arch "
                "otherwise"
            )
        if self.model.size != self.data.size:
            raise ValueError(f"model.size={self.model.size} differs from data.size={self.data.size}")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (f.name for f in dataclasses.fields(self))}
        d["model"] = self.model.to_dict()
        d["data"] = {"kind": "diracs" if isinstance(self.data, DiracData) else "disks"} | _plain(self.data)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)}; allowed: {sorted(known)}")
        if "model" in d:
            d["model"] = ModelConfig.from_dict(d["model"])
        if "data" in d:
            d["data"] = _data_from_dict(d["data"])
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def digest(self) -> str:
        """A short hash of the config: names run directories and ties checkpoints to their config."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _check_int(name: str, value, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")


def _plain(obj) -> dict:
    def conv(v):
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v

    return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _data_from_dict(d: dict) -> DiskData | DiracData:
    d = dict(d)
    kind = d.pop("kind", "disks")
    classes = {"disks": DiskData, "diracs": DiracData}
    if kind not in classes:
        raise ValueError(f"data.kind={kind!r} is not one of 'disks', 'diracs'")
    cls = classes[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    if set(d) - known:
        raise ValueError(f"unknown data keys {sorted(set(d) - known)} for kind {kind!r}; allowed: {sorted(known)}")
    for key in ("exclude", "hole"):
        if d.get(key) is not None:
            v = d[key]
            d[key] = tuple(tuple(x) for x in v) if key == "exclude" else tuple(v)
    return cls(**d)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The code version recorded with every result (``unknown`` outside a git checkout); asked once per process."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
            timeout=5, cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------------------- atomic I/O


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file + rename): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- losses


class Loss(NamedTuple):
    total: torch.Tensor
    mse: torch.Tensor
    penalty: torch.Tensor


def mse_per_pixel(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over batch and pixels of (x̂ − x)²: the paper's reconstruction loss."""
    return F.mse_loss(x_hat, x)


def locality_penalty(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Paper's "type 1": mean over the batch of (‖x − x′‖² − ‖E(x) − E(x′)‖²)², x′ the nearest other image."""
    flat = x.flatten(1)
    dist = torch.cdist(flat, flat).square()
    dist.fill_diagonal_(float("inf"))
    nn_index = dist.argmin(dim=1)
    dx = (flat - flat[nn_index]).square().sum(1)
    dz = (z - z[nn_index]).square().sum(1)
    return (dx - dz).square().mean()


def weight_penalty(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ‖w‖² over convolution kernels (paper's "type 2" with all kernels, "type 3" with the encoder's)."""
    return torch.stack([w.square().sum() for w in weights]).sum()


def contractive_penalty(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Released code's penalty: mean over batch, pixels and code dimensions of (∂z_k/∂x)²."""
    x = x.detach().requires_grad_(True)
    z = model.encode(x)
    total = x.new_zeros(())
    for k in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, k].sum(), x, create_graph=True)
        total = total + g.square().mean()
    return total / z.shape[1]


def compute_loss(model: Autoencoder, x: torch.Tensor, regulariser: str, weight: float, engine=None) -> Loss:
    """Loss of one batch x (B, 1, H, W) or (B, 1, n); ``engine`` (a ``fused.FusedAutoencoder`` of ``model``)
    computes z and the MSE in one fused pass, else the model's torch modules do."""
    if engine is not None:
        z, mse, contractive = engine.loss(x, contractive=regulariser == "contractive" and weight != 0)
        if regulariser == "contractive":
            return Loss(mse + weight * contractive, mse, contractive)
    else:
        z = model.encode(x)
        mse = mse_per_pixel(model.decode(z), x)
    if regulariser == "none" or weight == 0:
        penalty = mse.new_zeros(())
    elif regulariser == "locality":
        penalty = locality_penalty(x, z)
    elif regulariser == "l2_all":
        penalty = weight_penalty(model.encoder_weights() + model.decoder_weights())
    elif regulariser == "l2_encoder":
        penalty = weight_penalty(model.encoder_weights())
    elif regulariser == "contractive":
        penalty = contractive_penalty(model, x)
    else:  # validated before; kept for direct callers
        raise ValueError(f"regulariser={regulariser!r} is not one of {', '.join(map(repr, REGULARISERS))}")
    return Loss(mse + weight * penalty, mse, penalty)


# -------------------------------------------------------------------------------------------- batches


@functools.lru_cache(maxsize=4)
def _training_set(data: DiskData | DiracData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A run's fixed training set, kept for the next runs of the same process (seeds × regularisers share
    data sets; rendering 1000 disks costs as much as 50 training steps)."""
    if isinstance(data, DiskData):
        return data.make(data.n, seed=seed)
    return data.make(seed=seed)


class BatchSource:
    """Yields training batches: indices into a fixed training set, or fresh disks every batch."""

    def __init__(self, config: TrainConfig):
        data_seed = config.seed if config.data_seed is None else config.data_seed
        self.config = config
        self.fresh = isinstance(config.data, DiskData) and config.data.fresh
        self.generator = torch.Generator().manual_seed(data_seed + 1_000_003)
        images, params = _training_set(config.data, data_seed)
        self.images, self.params = images.clone(), params.clone()  # the cache keeps its own copy

    def next(self) -> torch.Tensor:
        b = self.config.batch_size
        if self.fresh:
            d = self.config.data
            radii = sample_radii(
                b, size=d.size, r_min=d.r_min, r_max=d.r_max, exclude=d.exclude, seed=self.generator
            )
            return render_disks(radii, size=d.size, rendering=d.rendering, sigma=d.sigma)
        idx = torch.randint(len(self.images), (b,), generator=self.generator)
        return torch.index_select(self.images, 0, idx)


# ---------------------------------------------------------------------------------------------- runs


@dataclass
class TrainResult:
    """A finished run: the trained model, its logged history and final metrics."""

    config: TrainConfig
    model: Autoencoder
    history: list[dict]
    metrics: dict
    out_dir: Path | None = None


def run_name(config: TrainConfig) -> str:
    return f"{config.model.arch}-{config.regulariser}-s{config.seed}-{config.digest()}"


def is_finished(out_dir: Path) -> bool:
    return (Path(out_dir) / "metrics.json").exists() and (Path(out_dir) / "model.safetensors").exists()


def load_run(out_dir: Path) -> TrainResult:
    """Load a finished run directory (config, final model, history, metrics)."""
    out_dir = Path(out_dir)
    config = TrainConfig.from_dict(json.loads((out_dir / "config.json").read_text())["config"])
    model = build_model(config.model, seed=config.seed)
    try:
        state = load_file(str(out_dir / "model.safetensors"))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{out_dir / 'model.safetensors'} cannot be loaded: {err}") from err
    history = json.loads((out_dir / "history.json").read_text())
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return TrainResult(config, model, history, metrics, out_dir)


def save_checkpoint(path: Path, config: TrainConfig, model, optimizer, batches: BatchSource,
                    iteration: int, history: list[dict]) -> None:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        state = optimizer.state.get(p, {})
        for key, value in state.items():
            tensors[f"adam.{i}.{key}"] = torch.as_tensor(value).detach().clone().reshape(-1) \
                if key == "step" else value.detach().clone()
    tensors["rng.batches"] = batches.generator.get_state()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config_digest": config.digest(),
        "iteration": str(iteration),
        "history": json.dumps(history),
    }
    _save_tensors(Path(path), tensors, metadata)


def load_checkpoint(path: Path, config: TrainConfig, model, optimizer, batches: BatchSource) -> tuple[int, list]:
    """Restore model, Adam and RNG state; refuses a corrupted checkpoint or one of another config."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted or unreadable ({err}); delete it to restart") from err
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file")
    if metadata.get("config_digest") != config.digest():
        raise CheckpointError(
            f"checkpoint {path} belongs to another configuration (digest {metadata.get('config_digest')}, "
            f"expected {config.digest()}); use another output directory or delete it"
        )
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for i, p in enumerate(model.parameters()):
            keys = [k for k in tensors if k.startswith(f"adam.{i}.")]
            if keys:
                state = {k.split(".", 2)[2]: tensors[k] for k in keys}
                state["step"] = state["step"].reshape(())
                optimizer.state[p] = state
        batches.generator.set_state(tensors["rng.batches"])
        iteration = int(metadata["iteration"])
        history = json.loads(metadata["history"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not match the model: {err}") from err
    return iteration, history


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam over the model's parameters; torch's fused CPU implementation (one kernel per parameter)."""
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas, fused=True)


def make_engine(model: Autoencoder, config: TrainConfig, threads: int | None = None):
    """The fused kernels for this run (``fused.FusedAutoencoder``), or None for the torch path, and why.

    ``GEOAE_BACKEND=torch`` always gives None; ``fused`` raises ValueError where the kernels do not apply;
    ``auto`` (default) uses them where they apply.
    """
    from . import fused

    reason = _why_not_fused(model)
    if reason is not None:
        if backend_setting() == "fused":
            raise ValueError(f"GEOAE_BACKEND=fused cannot train this run: {reason}")
        return None, reason
    return fused.FusedAutoencoder(model, threads=kernel_threads() if threads is None else threads), None


def _why_not_fused(model: Autoencoder) -> str | None:
    """None if ``train`` runs ``model`` on the fused kernels, else why it does not."""
    from . import fused

    if backend_setting() == "torch":
        return "GEOAE_BACKEND=torch"
    reason = fused.supports(model)
    if reason is None and not fused.available():
        reason = f"the fused kernel is unavailable: {fused.unavailable_reason()}"
    return reason


def train(config: TrainConfig, out_dir: str | Path | None = None, *, progress: bool = False,
          resume: bool = True, threads: int | None = None) -> TrainResult:
    """Train an autoencoder; with ``out_dir`` the run is recorded there and can resume.

    A finished run in ``out_dir`` (with the same config) is loaded, not retrained. ``threads``: threads of
    the fused kernels (default ``kernel_threads()``); the trained weights do not depend on it.
    Raises ``TrainingDiverged`` if the loss stops being finite (the last good checkpoint stays).
    """
    config.validate()
    backend_setting()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None and resume and is_finished(out_dir):
        done = load_run(out_dir)
        if done.config.digest() != config.digest():
            raise CheckpointError(f"{out_dir} holds a finished run of another configuration")
        return done
    model = build_model(config.model, seed=config.seed)
    optimizer = make_optimizer(model, config)
    batches = BatchSource(config)
    start, history = 0, []
    ckpt = out_dir / "checkpoint.safetensors" if out_dir is not None else None
    if out_dir is not None:
        write_config(out_dir, config)
        if resume and ckpt.exists():
            start, history = load_checkpoint(ckpt, config, model, optimizer, batches)

    engine, why_not = make_engine(model, config, threads)
    with training_threads():
        return _train_loop(config, model, optimizer, batches, start, history, ckpt, out_dir, progress, engine,
                           why_not)


def _train_loop(config: TrainConfig, model: Autoencoder, optimizer, batches: BatchSource, start: int,
                history: list[dict], ckpt: Path | None, out_dir: Path | None, progress: bool, engine=None,
                why_not: str | None = None) -> TrainResult:
    bar = _progress(config.iterations, start, progress, run_name(config))
    t0 = time.perf_counter()
    for it in range(start, config.iterations):
        x = batches.next()
        loss = compute_loss(model, x, config.regulariser, config.reg_weight, engine)
        if not torch.isfinite(loss.total):
            bar.close()
            kept = f"; the last good checkpoint is {ckpt}" if ckpt is not None and ckpt.exists() else ""
            raise TrainingDiverged(
                f"loss became {loss.total.item()} at iteration {it + 1} (lr={config.lr}); "
                f"try a lower learning rate, e.g. --lr {config.lr / 10:g}{kept}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        step = it + 1
        if step % config.log_every == 0 or step == config.iterations:
            history.append({"iteration": step, "loss": loss.total.item(), "mse": loss.mse.item(),
                            "penalty": loss.penalty.item()})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3e}")
        bar.update(1)
        if ckpt is not None and (step % config.checkpoint_every == 0) and step < config.iterations:
            save_checkpoint(ckpt, config, model, optimizer, batches, step, history)
    bar.close()
    elapsed = time.perf_counter() - t0
    extra = {"train_seconds": elapsed,
             "images_per_second": (config.iterations - start) * config.batch_size / max(elapsed, 1e-9),
             "backend": "torch" if engine is None else "fused"}
    if engine is not None:
        extra["kernel_threads"] = engine.threads
    else:
        extra["torch_backend_reason"] = why_not
    return finish_run(config, model, batches, history, extra, out_dir, engine)


def write_config(out_dir: Path, config: TrainConfig) -> None:
    """Create the run directory and record the full config, the git commit and torch's version."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", {"config": config.to_dict(), "git_commit": git_commit(),
                                         "torch": torch.__version__})


def finish_run(config: TrainConfig, model: Autoencoder, batches: BatchSource, history: list[dict],
               extra: dict, out_dir: Path | None, engine=None) -> TrainResult:
    """Final metrics (+ ``extra``), then model, history and metrics written (metrics last: the run is done)."""
    metrics = final_metrics(model, batches, config, engine) | {"iterations": config.iterations} | extra
    if out_dir is not None:
        out_dir = Path(out_dir)
        if not (out_dir / "config.json").exists():
            write_config(out_dir, config)
        _save_tensors(out_dir / "model.safetensors", dict(model.state_dict()), {"config_digest": config.digest()})
        write_json(out_dir / "history.json", history)
        write_json(out_dir / "metrics.json", metrics)
        (out_dir / "checkpoint.safetensors").unlink(missing_ok=True)
    return TrainResult(config, model, history, metrics, out_dir)


@torch.no_grad()
def final_metrics(model: Autoencoder, batches: BatchSource, config: TrainConfig, engine=None) -> dict:
    """MSE of the final model on the whole training set (a fixed set, or 1000 samples of the fresh stream)."""
    if batches.fresh:
        d = config.data
        images, _ = d.make(1000, seed=(config.seed if config.data_seed is None else config.data_seed) + 7)
    else:
        images = batches.images
    if engine is not None:  # the fused kernels' forward (the same function, ~10x faster than torch's)
        mse = sum(engine.loss(chunk)[1].item() * len(chunk) for chunk in images.split(256))
    else:
        mse = sum(mse_per_pixel(model(chunk).x_hat, chunk).item() * len(chunk) for chunk in images.split(1024))
    return {"train_mse": mse / len(images)}


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, leave=False,
                mininterval=0.5, dynamic_ncols=True)


def default_workers() -> int:
    """Parallel workers for independent runs: ``GEOAE_WORKERS`` if set, else one per CPU core."""
    return _count_from_env("GEOAE_WORKERS")


def _train_in_worker(config: dict, out_dir: str) -> str:
    """Body of a worker process: one run on one thread, recorded in ``out_dir`` (the parent loads it)."""
    train(TrainConfig.from_dict(config), out_dir, threads=1)
    return out_dir


def train_many(configs: Sequence[TrainConfig], root: str | Path, *, progress: bool = False,
               group: bool = False, max_group: int = 16, workers: int | None = None) -> list[TrainResult]:
    """Train independent runs under ``root/<run_name>``; finished runs are loaded, never redone.

    The experiments describe their training as a list of configs handed to this runner, so how the runs
    are spread does not change what they compute:

    * ``workers`` workers (default ``default_workers()``: one per core) train the unfinished runs in
      parallel, one kernel thread each: Python threads for runs on the fused kernels (which run outside
      the GIL), processes for runs on the torch path; every run is exactly what ``train`` gives alone.
    * ``group`` (off by default: on this project's 2-core machine it measured no faster,
      docs/performance.md) trains unfinished runs sharing a ``sweep.group_key`` at once, up to
      ``max_group`` per group, with ``sweep.train_group``; weights equal those of ``train`` up to float
      rounding. A group in which a run diverges is retrained run by run. An interrupted group restarts
      from its first iteration; an interrupted single run resumes from its checkpoint.
    """
    from . import sweep

    for c in configs:
        c.validate()
    root = Path(root)
    unique = {run_name(c): c for c in configs}
    results: dict[str, TrainResult] = {}
    singles: list[TrainConfig] = []
    groups: dict[tuple, list[TrainConfig]] = {}
    for name, c in unique.items():
        key = sweep.group_key(c) if group else None
        if is_finished(root / name):
            results[name] = train(c, root / name)  # loads it
        elif key is None or (root / name / "checkpoint.safetensors").exists():
            singles.append(c)
        else:
            groups.setdefault(key, []).append(c)
    for members in groups.values():
        for i in range(0, len(members), max_group):
            chunk = members[i : i + max_group]
            if len(chunk) == 1:
                singles.append(chunk[0])
                continue
            try:
                done = sweep.train_group(chunk, [root / run_name(c) for c in chunk], progress=progress)
            except TrainingDiverged:  # each run then diverges (or not) on its own, with its own message
                done = [train(c, root / run_name(c), progress=progress) for c in chunk]
            results.update({run_name(r.config): r for r in done})
    workers = default_workers() if workers is None else workers
    if workers > 1 and len(singles) > 1:
        # fused runs share the cores as threads (no start-up), torch-path runs as processes (the GIL)
        on_fused = {run_name(c): _fused_run(c) for c in singles}
        fast = [c for c in singles if on_fused[run_name(c)]]
        slow = [c for c in singles if not on_fused[run_name(c)]]
        for group_, runner in ((fast, _train_in_threads), (slow, _train_in_processes)):
            if len(group_) > 1:
                results.update(runner(group_, root, min(workers, len(group_)), progress))
            elif group_:
                results[run_name(group_[0])] = train(group_[0], root / run_name(group_[0]), progress=progress)
    else:
        results.update({run_name(c): train(c, root / run_name(c), progress=progress) for c in singles})
    return [results[run_name(c)] for c in configs]


def _fused_run(config: TrainConfig) -> bool:
    """Whether ``train`` would run ``config`` on the fused kernels (they release the GIL)."""
    return _why_not_fused(build_model(config.model, seed=0)) is None


def _train_in_threads(configs: Sequence[TrainConfig], root: Path, workers: int,
                      progress: bool) -> dict[str, TrainResult]:
    """Runs on ``workers`` Python threads, one kernel thread each: the fused kernels run outside the GIL, so
    the threads use the cores in parallel without the seconds of start-up that worker processes cost."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    bar = _progress(len(configs), 0, progress, f"{len(configs)} runs on {workers} threads")
    order = sorted(configs, key=lambda c: -c.iterations * c.batch_size * c.model.size ** c.model.ndim)
    out: dict[str, TrainResult] = {}
    with training_threads(), ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(train, c, root / run_name(c), threads=1): c for c in order}
        for future in as_completed(futures):
            out[run_name(futures[future])] = future.result()  # re-raises a run's error here
            bar.update(1)
    bar.close()
    return out


def _train_in_processes(configs: Sequence[TrainConfig], root: Path, workers: int,
                        progress: bool) -> dict[str, TrainResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    bar = _progress(len(configs), 0, progress, f"{len(configs)} runs on {workers} processes")
    # longest runs first (pixels × batch × iterations), so that no core is left alone with a long run
    order = sorted(configs, key=lambda c: -c.iterations * c.batch_size * c.model.size ** c.model.ndim)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_in_worker, c.to_dict(), str(root / run_name(c))) for c in order]
        for future in as_completed(futures):
            future.result()  # re-raises a worker's error (e.g. TrainingDiverged) here
            bar.update(1)
    bar.close()
    return {run_name(c): load_run(root / run_name(c)) for c in configs}
