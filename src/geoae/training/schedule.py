"""Many independent runs in parallel: ``train_many``.

The experiments describe their training as configs handed to ``train_many``, so how the runs are spread
does not change what they compute: each run is exactly what ``train`` gives alone (the fused kernels'
results do not depend on their thread count). Runs on the fused kernels share the cores as Python threads
(the kernels run outside the GIL, and threads start in no time); runs on the torch path, as processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import interrupts
from ..models import build_model
from ..settings import read_settings
from .config import TrainConfig
from .loop import _progress, make_executor, train, training_threads
from .rundir import TrainResult, is_finished, load_run, run_name

__all__ = ["train_many", "default_workers", "runs_on_fused"]


def default_workers() -> int:
    """Parallel workers for independent runs: ``GEOAE_WORKERS``, else one per core."""
    return read_settings().workers


def runs_on_fused(config: TrainConfig) -> bool:
    """Whether ``train`` would run ``config`` on the fused kernels."""
    settings = read_settings()
    return make_executor(build_model(config.model, seed=0), settings, threads=1)[1]["name"] == "fused"


def _cost(config: TrainConfig) -> int:
    return config.iterations * config.batch_size * config.model.size ** config.model.ndim


def train_many(configs: Sequence[TrainConfig], root: str | Path, *, progress: bool = False,
               workers: int | None = None) -> list[TrainResult]:
    """Train independent runs under ``root/<run_name>``; finished runs are loaded, never redone; returns the
    results in the order of ``configs`` (a config listed twice is trained once).

    ``workers`` (default ``GEOAE_WORKERS``: one per core) runs train in parallel, one kernel thread each,
    longest first. A run's error (e.g. ``TrainingDiverged``) is raised here after the other runs finished.
    """
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"train_many takes TrainConfig objects, got {type(c).__name__}")
        c.validate()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256):
        raise ValueError(f"workers must be an integer from 1 to 256 or None, got {workers!r}")
    root = Path(root)
    unique = {run_name(c): c for c in configs}
    results = {name: load_run(root / name) for name in unique if is_finished(root / name)}
    todo = sorted((c for name, c in unique.items() if name not in results), key=_cost, reverse=True)
    workers = default_workers() if workers is None else workers
    if workers == 1 or len(todo) <= 1:
        results.update({run_name(c): train(c, root / run_name(c), progress=progress) for c in todo})
    else:
        fast = [c for c in todo if runs_on_fused(c)]
        slow = [c for c in todo if c not in fast]
        for group, runner in ((fast, _in_threads), (slow, _in_processes)):
            if group:
                results.update(runner(group, root, min(workers, len(group)), progress))
    return [results[run_name(c)] for c in configs]


def _collect(futures: dict, bar) -> dict[str, object]:
    """Wait for every future; raise the first error only after all have finished (none is dropped)."""
    from concurrent.futures import as_completed

    out, errors = {}, []
    for future in as_completed(futures):
        try:
            out[futures[future]] = future.result()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the other runs
            errors.append(err)
        bar.update(1)
    bar.close()
    if errors:
        raise errors[0]
    return out


def _in_threads(configs: Sequence[TrainConfig], root: Path, workers: int, progress: bool) -> dict[str, TrainResult]:
    """Runs as threads; on Ctrl-C the runs not started are cancelled and those training stop at their next
    step (``interrupts.check``), their checkpoints kept."""
    from concurrent.futures import ThreadPoolExecutor

    bar = _progress(len(configs), 0, progress, f"{len(configs)} runs on {workers} threads")
    with training_threads(read_settings()):
        pool = ThreadPoolExecutor(workers)
        try:
            futures = {pool.submit(train, c, root / run_name(c), threads=1): run_name(c) for c in configs}
            return _collect(futures, bar)
        except KeyboardInterrupt:
            interrupts.request()  # the running threads stop at their next step
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _train_in_worker(config: dict, out_dir: str) -> str:
    """Body of a worker process: one run on one thread, recorded in ``out_dir`` (the parent loads it)."""
    train(TrainConfig.from_dict(config), out_dir, threads=1)
    return out_dir


def _in_processes(configs: Sequence[TrainConfig], root: Path, workers: int, progress: bool) -> dict[str, TrainResult]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bar = _progress(len(configs), 0, progress, f"{len(configs)} runs on {workers} processes")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # set on Ctrl-C: the workers' runs stop at their next step (interrupts.watch)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=interrupts.watch, initargs=(stop,))
    try:
        futures = {pool.submit(_train_in_worker, c.to_dict(), str(root / run_name(c))): run_name(c) for c in configs}
        _collect(futures, bar)
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return {run_name(c): load_run(root / run_name(c)) for c in configs}
