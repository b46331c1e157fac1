"""The training loop: Adam on MSE + λ·ψ, reproducible, resumable, observable.

``train(config, out_dir)`` builds the model from its config and seed, picks the executor (the fused C
kernels wherever the network's features allow, else torch: ``make_executor``), and runs ``iterations`` Adam
steps on batches drawn from a fixed training set (or fresh disks). Every ``log_every`` steps a record
``{iteration, loss, mse, penalty}`` is appended to ``history.jsonl`` and handed to the callbacks; every
``checkpoint_every`` steps the full state is saved, so a run killed at any moment resumes to the same final
weights as an uninterrupted one. Executors give identical results whatever their thread count.
"""

from __future__ import annotations

import functools
import gc
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import fused, interrupts
from ..checks import broken_link
from ..data import DiskData, render_disks, sample_radii
from ..models import Autoencoder, build_model
from ..settings import Settings, read_settings
from .config import TrainConfig, offset_seed
from .objectives import (
    TorchExecutor,
    compute_loss,
    exact_distances,
    fused_step,
    integer_rows,
    mse_per_pixel,
    one_call_steps,
)
from .optim import AdamStep
from .rundir import (
    CheckpointError,
    RunDirectory,
    TrainResult,
    check_run_directory,
    is_finished,
    load_run,
    run_name,
    write_config,
)

__all__ = ["train", "BatchSource", "TrainingDiverged", "make_executor", "make_optimizer", "final_metrics",
           "training_threads", "Callback", "KeptWeights", "keras_epsilon"]

# a callback gets the record just logged and the model being trained (it must not modify the model)
Callback = Callable[[dict, Autoencoder], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept on disk."""


@contextmanager
def training_threads(settings: Settings):
    """Run the enclosed training with ``GEOAE_TORCH_THREADS`` torch threads (0: unchanged), then restore.
    The paper's networks have 1 to 16 channels: torch's kernels are too small to share between cores."""
    old = torch.get_num_threads()
    if settings.torch_threads > 0 and settings.torch_threads != old:
        torch.set_num_threads(settings.torch_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def _flushing() -> bool:
    """Whether this thread's floating-point mode flushes subnormals (a subnormal input reads as 0)."""
    return bool(torch.tensor([1e-39]).mul(1.0).item() == 0.0)


@contextmanager
def flushed_subnormals():
    """Run the enclosed training with subnormal floats flushed to zero in this thread (torch's ops; the fused
    kernels do the same in theirs), then restore the mode. A penalty that drives the weights to 0 fills Adam's
    state and the gradients with subnormals, which x86 computes ~100 times slower (measured: such runs took
    3.5× as long); numbers below 1.2e-38 change, nothing else."""
    before = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


_gc_lock = threading.Lock()
_gc_users = 0


@contextmanager
def frozen_gc():
    """Move the objects alive now (torch, numpy, the model) out of the cyclic collector's sight while training:
    a step allocates many short-lived Python objects, and every full collection would scan the whole heap
    (measured: 14 % of a paper64 step). Nested and concurrent uses (``train_many``'s threads) share one freeze."""
    global _gc_users
    with _gc_lock:
        if _gc_users == 0:
            gc.freeze()
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.unfreeze()


@functools.lru_cache(maxsize=4)
def _training_set(data, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A run's fixed training set, kept for the next runs of the same process (seeds × regularisers share
    data sets; rendering 1000 disks costs as much as 50 training steps)."""
    return data.make(data.n, seed=seed) if isinstance(data, DiskData) else data.make(seed=seed)


class BatchSource:
    """Yields training batches (B, 1, m, m) or (B, 1, n): indices into a fixed training set, or fresh disks."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.fresh = isinstance(config.data, DiskData) and config.data.fresh
        self.generator = torch.Generator().manual_seed(offset_seed(config.effective_data_seed, 1_000_003))
        images, params = _training_set(config.data, config.effective_data_seed)
        self.images, self.params = images.clone(), params.clone()  # the cache keeps its own copy

    def draw(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch as (images, index): x = images[index] (index (B,) int64), or (x, None) for fresh disks;
        ``next`` materialises the same batch (the same draws from the same generator)."""
        b = self.config.batch_size
        if self.fresh:
            d = self.config.data
            radii = sample_radii(b, size=d.size, r_min=d.r_min, r_max=d.r_max, exclude=d.exclude, seed=self.generator)
            return render_disks(radii, size=d.size, rendering=d.rendering, sigma=d.sigma, quantise=d.quantise), None
        if self.config.batch_sampling == "subset":  # the released code: shuffle the indices, take the first b
            idx = torch.randperm(len(self.images), generator=self.generator)[:b]
        else:
            idx = torch.randint(len(self.images), (b,), generator=self.generator)
        return self.images, idx

    def next(self) -> torch.Tensor:
        """The next batch x (B, 1, m, m) or (B, 1, n)."""
        images, idx = self.draw()
        return images if idx is None else torch.index_select(images, 0, idx)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam over the trainable parameters; torch's fused CPU implementation (one kernel per parameter).
    With ``optimizer='adam_keras'`` its ε is set before every step by ``keras_epsilon``."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=config.lr, betas=config.betas, eps=config.eps, fused=True)


def keras_epsilon(eps: float, beta2: float, step: int) -> float:
    """torch's ε that gives Keras's Adam update at ``step`` (1, 2, …).

    Keras (and Kingma & Ba's "ε̂" form) updates θ ← θ − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε̂); torch updates
    θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε). The two are equal when ε = ε̂/√(1−β₂ᵗ)."""
    return eps / math.sqrt(1.0 - beta2**step)


def make_executor(model: Autoencoder, settings: Settings, threads: int | None = None):
    """(executor, description) for training ``model``: the fused kernels where the spec's features allow and
    ``GEOAE_BACKEND`` is not ``torch``, else the torch modules (announced on stderr under ``auto``).
    ``GEOAE_BACKEND=fused`` raises ValueError where the fused kernels cannot train the run."""
    reason = "GEOAE_BACKEND=torch" if settings.backend == "torch" else fused.supports(model.spec)
    kernel = None
    if reason is None:
        kernel = fused.kernel(settings)
        if kernel is None:
            reason = f"the fused kernel is unavailable: {fused.unavailable_reason(settings)}"
    if reason is not None:
        if settings.backend == "fused":
            raise ValueError(f"GEOAE_BACKEND=fused cannot train this run: {reason}")
        if settings.backend == "auto":
            fused.announce_fallback(reason)
        return TorchExecutor(model), {"name": "torch", "reason": reason}
    threads = settings.threads if threads is None else threads
    executor = fused.FusedAutoencoder(model, threads=threads, kernel=kernel)
    return executor, {"name": "fused", "threads": threads} | kernel.info()


def check_backend(config: TrainConfig, settings: Settings) -> None:
    """Under ``GEOAE_BACKEND=fused``, raise ValueError before any work where the fused kernels cannot train
    ``config`` (a network they do not compute, a kernel library that does not build, load or run here)."""
    if settings.backend != "fused":
        return
    reason = fused.supports(build_model(config.model, seed=0).spec)
    if reason is None and fused.kernel(settings) is None:
        reason = f"the fused kernel is unavailable: {fused.unavailable_reason(settings)}"
    if reason is not None:
        raise ValueError(f"GEOAE_BACKEND=fused cannot train this run: {reason}")


def _executor_identity(info: dict) -> dict:
    """What must not change when a run resumes: the executor and, for the fused kernels, their build (the
    library's name hashes the source, flags, compiler and CPU: ``-march=native`` builds differ by CPU kind)."""
    return {k: info[k] for k in ("name", "flags", "lanes", "wg_accumulators", "library") if k in info}


def _same_build(previous: dict, info: dict) -> bool:
    """Whether a checkpoint written by executor ``previous`` may be resumed on ``info`` (checkpoints of
    geoae versions that did not record the library are compared on what they recorded)."""
    now = _executor_identity(info)
    return {k: v for k, v in now.items() if k in previous or k != "library"} == _executor_identity(previous)


def train(config: TrainConfig, out_dir: str | Path | None = None, *, progress: bool = False, resume: bool = True,
          threads: int | None = None, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train an autoencoder; with ``out_dir`` the run is recorded there and can resume.

    A finished run in ``out_dir`` (with the same config) is loaded, not retrained. ``threads``: threads of
    the fused kernels (default ``GEOAE_THREADS``); the trained weights do not depend on it. ``callbacks``
    are called with each logged record and the model. Raises ``TrainingDiverged`` if the loss stops being
    finite (the last good checkpoint stays), ``RunLockedError`` if another process trains in ``out_dir``.
    """
    config.validate()
    settings = read_settings()
    interrupts.check()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64):
        raise ValueError(f"threads must be an integer from 1 to 64 or None, got {threads!r}")
    callbacks = tuple(callbacks) if isinstance(callbacks, Sequence) and not isinstance(callbacks, str) else callbacks
    if not isinstance(callbacks, tuple) or not all(callable(c) for c in callbacks):
        raise ValueError(f"callbacks must be a sequence of callables f(record, model), got {callbacks!r}"[:200])
    check_backend(config, settings)
    if out_dir is None:
        return _run(config, None, settings, threads, progress, resume, callbacks)
    if not isinstance(out_dir, str | os.PathLike) or not str(out_dir).strip():
        raise ValueError(f"out_dir must be a directory path (None: record nothing), got {out_dir!r}")
    out_dir = Path(out_dir)
    if (link := broken_link(out_dir)) is not None:
        raise ValueError(f"out_dir {out_dir}: {link} is a symbolic link to nothing (dangling, or a loop of links)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} exists and is not a directory")
    check_run_directory(out_dir)
    if resume and is_finished(out_dir):
        return _load_finished(out_dir, config)
    with RunDirectory(out_dir) as rundir:
        if resume and is_finished(out_dir):  # finished by another process while we waited for nothing
            return _load_finished(out_dir, config)
        return _run(config, rundir, settings, threads, progress, resume, callbacks)


def _load_finished(out_dir: Path, config: TrainConfig) -> TrainResult:
    done = load_run(out_dir)
    if done.config.digest() != config.digest():
        raise CheckpointError(f"{out_dir} holds a finished run of another configuration")
    return done


def _run(config: TrainConfig, rundir: RunDirectory | None, settings: Settings, threads: int | None,
         progress: bool, resume: bool, callbacks: Sequence[Callback]) -> TrainResult:
    model = build_model(config.model, seed=config.seed)
    optimizer = make_optimizer(model, config)
    batches = BatchSource(config)
    executor, info = make_executor(model, settings, threads)
    start, history = 0, []
    kept = KeptWeights(config.keep_every) if config.keep == "best_batch" else None
    if rundir is not None:
        if resume and rundir.checkpoint.exists():
            start, history, previous = rundir.load_checkpoint(config, model, optimizer, batches.generator, kept=kept)
            if previous and not _same_build(previous, info):
                raise CheckpointError(
                    f"checkpoint {rundir.checkpoint} was written by executor {_executor_identity(previous)}, this "
                    f"process would resume on {_executor_identity(info)}: the run would mix two computations. "
                    "Resume on the same kind of machine with the same GEOAE_BACKEND / GEOAE_KERNEL / GEOAE_MARCH, "
                    "or delete the checkpoint")
        write_config(rundir.path, config, info | {"settings": settings.to_dict()})
        rundir.start_history(history)
    with training_threads(settings), frozen_gc(), flushed_subnormals():
        return _loop(config, model, optimizer, batches, executor, info, settings, start, history, rundir, progress,
                     callbacks, kept)


class KeptWeights:
    """The weights a run ends with under ``keep='best_batch'`` (the released code's rule).

    The authors' loop, at every iteration i (0-based) with i % keep_every == 0, compares the loss that
    ``train_on_batch`` returned for that batch (computed before the update) with the lowest such loss so far
    and, if lower, saves the weights (after the update). The final file is that snapshot: the last iterate
    is never kept unless it falls on such an iteration. ``offer`` is called with the pre-update loss of each
    step and ``after_step`` once the step is done."""

    def __init__(self, every: int):
        self.every = every
        self.loss = math.inf
        self.iteration: int | None = None  # the step (1-based) whose weights are kept
        self.state: dict[str, torch.Tensor] | None = None
        self._pending = False

    def offer(self, it: int, loss: float) -> None:
        self._pending = it % self.every == 0 and loss < self.loss
        if self._pending:
            self.loss = loss

    def after_step(self, it: int, model) -> None:
        if self._pending:
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.iteration = it + 1
            self._pending = False

    def tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.state is None else dict(self.state)

    def restore(self, tensors: dict[str, torch.Tensor], loss: float, iteration: int | None) -> None:
        self.state = dict(tensors) if tensors else None
        self.loss, self.iteration = loss, iteration


def _loop(config, model, optimizer, batches, executor, info, settings, start, history, rundir, progress, callbacks,
          kept=None):
    bar = _progress(config.iterations, start, progress, run_name(config))
    t0 = time.perf_counter()
    keras = config.optimizer == "adam_keras"
    one_call = one_call_steps(config, executor)
    adam = AdamStep(optimizer, getattr(executor, "kernel", None))  # after the checkpoint's state was loaded
    local = one_call and config.regulariser == "locality" and config.reg_weight != 0 and not batches.fresh
    dist = exact_distances(batches.images) if local else None
    integer = integer_rows(batches.images) if local and dist is None else None
    for it in range(start, config.iterations):
        interrupts.check()  # a Ctrl-C swallowed elsewhere (a finaliser) still stops the run here
        if one_call:  # loss and gradients (into .grad) in one kernel call
            loss = fused_step(model, *batches.draw(), config.regulariser, config.reg_weight, executor, dist, integer)
        else:
            loss = compute_loss(model, batches.next(), config.regulariser, config.reg_weight, executor)
        if not math.isfinite(loss.total.item()):
            bar.close()
            kept = (f"; the last good checkpoint is {rundir.checkpoint}"
                    if rundir is not None and rundir.checkpoint.exists() else "")
            raise TrainingDiverged(f"loss became {loss.total.item()} at iteration {it + 1} (lr={config.lr}); try a "
                                   f"lower learning rate, e.g. --lr {config.lr / 10:g}{kept}")
        if kept is not None:
            kept.offer(it, loss.total.item())
        if not one_call:
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
        if keras:
            for group in optimizer.param_groups:
                group["eps"] = keras_epsilon(config.eps, config.betas[1], it + 1)
        adam.step()
        if kept is not None:
            kept.after_step(it, model)
        step = it + 1
        if step % config.log_every == 0 or step == config.iterations:
            record = {"iteration": step, "loss": loss.total.item(), "mse": loss.mse.item(),
                      "penalty": loss.penalty.item()}
            if loss.z is not None:  # the code's amplitude on this batch (before the step), for |z| over training
                record["z_abs_max"] = loss.z.detach().abs().max().item()
            history.append(record)
            if rundir is not None:
                rundir.append_history(record)
            for callback in callbacks:
                callback(record, model)
            bar.set_postfix(loss=f"{record['loss']:.3e}")
        bar.update(1)
        if rundir is not None and step % config.checkpoint_every == 0 and step < config.iterations:
            rundir.save_checkpoint(config, model, optimizer, batches.generator, step, history,
                                   _executor_identity(info), kept=kept)
    bar.close()
    elapsed = time.perf_counter() - t0
    kept_info = {}
    if kept is not None and kept.state is not None:
        with torch.no_grad():
            model.load_state_dict(kept.state)
        kept_info = {"kept_iteration": kept.iteration, "kept_batch_loss": kept.loss}
    metrics = final_metrics(model, batches, config, executor) | {
        "iterations": config.iterations, "resumed_from": start, "train_seconds": elapsed,
        "images_per_second": (config.iterations - start) * config.batch_size / max(elapsed, 1e-9),
        "backend": info["name"], "executor": info, "settings": settings.to_dict()} | kept_info
    if info["name"] == "fused":
        metrics["kernel_threads"] = info["threads"]
    else:
        metrics["torch_backend_reason"] = info["reason"]
    if rundir is not None:
        rundir.finish(config, model, history, metrics)
    return TrainResult(config, model, history, metrics, rundir.path if rundir is not None else None)


@torch.no_grad()
def final_metrics(model: Autoencoder, batches: BatchSource, config: TrainConfig, executor=None) -> dict:
    """MSE of the final model on the whole training set (a fixed set, or 1000 samples of the fresh stream)."""
    seed = offset_seed(config.effective_data_seed, 7)  # wraps round for the largest seeds (never overflows)
    images = config.data.make(1000, seed=seed)[0] if batches.fresh else batches.images
    if executor is not None and not isinstance(executor, TorchExecutor):
        mse = sum(executor.loss(chunk)[1].item() * len(chunk) for chunk in images.split(256))
    else:
        mse = sum(mse_per_pixel(model(chunk).x_hat, chunk).item() * len(chunk) for chunk in images.split(1024))
    return {"train_mse": mse / len(images)}


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, leave=False, mininterval=0.5,
                dynamic_ncols=True)
