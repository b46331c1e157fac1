"""Many independent runs in parallel: ``train_many``.

The experiments describe their training as configs handed to ``train_many``, so how the runs are spread
does not change what they compute: each run is exactly what ``train`` gives alone (the fused kernels'
results do not depend on their thread count). Two executors spread them:

- ``local`` (the default): runs on the fused kernels share this machine's cores as Python threads (the
  kernels run outside the GIL, and threads start in no time); runs on the torch path, and runs of networks
  so small that a step is mostly Python (fewer than ``SMALL_MACS`` multiply-accumulates per example: the 1-D
  Dirac networks), as processes (threads would queue for the GIL: measured 15.1 s against 10.9 s for six
  1-D runs on 2 cores);
- ``ray``: one Ray task per run on a cluster whose nodes share the results directory (``ray_executor.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import interrupts
from ..models import build_model
from ..settings import EXECUTORS, read_settings
from ..spec import network_spec
from .config import TrainConfig
from .loop import _progress, make_executor, train, training_threads
from .rundir import TrainResult, is_finished, load_run, run_name

__all__ = ["train_many", "default_workers", "runs_on_fused", "check_executor"]


SMALL_MACS = 150_000  # per example; paper64 has 306k, the 1-D Dirac networks 24k to 47k


def kernel_bound(config: TrainConfig) -> bool:
    """Whether a step of ``config`` on the fused kernels is mostly kernel time (threads share cores well)."""
    return network_spec(config.model).macs >= SMALL_MACS


def default_workers() -> int:
    """Parallel workers for independent runs: ``GEOAE_WORKERS``, else one per core."""
    return read_settings().workers


def runs_on_fused(config: TrainConfig) -> bool:
    """Whether ``train`` would run ``config`` on the fused kernels."""
    settings = read_settings()
    return make_executor(build_model(config.model, seed=0), settings, threads=1)[1]["name"] == "fused"


def check_executor(executor: str | None, address: str | None = None) -> str:
    """The executor to use (``executor``, else ``GEOAE_EXECUTOR``), checked before any work: a bad name, an
    ``address`` without ``ray``, or ``ray`` without the Ray package is a clear error."""
    executor = read_settings().executor if executor is None else executor
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None:
        if executor != "ray":
            raise ValueError(f"address={address!r} names a Ray cluster: it needs executor='ray', got {executor!r}")
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"address must be a Ray cluster address such as 'HOST:6379' or 'auto', got {address!r}")
    if executor == "ray":
        from .ray_executor import check_reachable, import_ray

        import_ray()
        if address is not None:
            check_reachable(address)  # an unreachable cluster: a clear error now, not minutes of retries later
    return executor


# a step's cost relative to an unregularised one (fused path, paper64, batch 64, one core; measured 2026-12-07:
# 0.75 s per 300 steps without a penalty, 0.84-0.87 with a weight penalty, 1.15 contractive, 1.43 locality)
PENALTY_COST = {"l2_all": 1.15, "l2_encoder": 1.15, "contractive": 1.55, "locality": 1.9}


def _cost(config: TrainConfig) -> float:
    """A run's expected training time, up to a constant: the longest are queued first, so the workers finish
    together (only the order of the runs depends on it, never a number)."""
    factor = PENALTY_COST.get(config.regulariser, 1.0) if config.reg_weight != 0 else 1.0
    return factor * config.iterations * config.batch_size * config.model.size ** config.model.ndim


def train_many(configs: Sequence[TrainConfig], root: str | Path, *, progress: bool = False,
               workers: int | None = None, executor: str | None = None, address: str | None = None
               ) -> list[TrainResult]:
    """Train independent runs under ``root/<run_name>``; finished runs are loaded, never redone (nor sent to
    a cluster); returns the results in the order of ``configs`` (a config listed twice is trained once).

    ``executor`` (default ``GEOAE_EXECUTOR``: ``local``): with ``local``, ``workers`` (default
    ``GEOAE_WORKERS``: one per core) runs train in parallel, one kernel thread each, longest first, and a
    run's error (e.g. ``TrainingDiverged``) is raised here after the other runs finished. With ``ray``, each
    run is a task of the Ray cluster at ``address`` (default ``RAY_ADDRESS``, else a local Ray), writing into
    ``root`` on a filesystem every node shares; the failed runs are listed in one ``RunsFailed`` error
    after the others finished (``ray_executor.train_on_ray``).
    """
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"train_many takes TrainConfig objects, got {type(c).__name__}")
        c.validate()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256):
        raise ValueError(f"workers must be an integer from 1 to 256 or None, got {workers!r}")
    executor = check_executor(executor, address)
    if executor == "ray" and workers is not None:
        raise ValueError(f"workers={workers} applies to executor='local'; on Ray the cluster's CPUs set how many "
                         "runs train at once")
    root = Path(root)
    unique = {run_name(c): c for c in configs}
    results = {name: load_run(root / name) for name in unique if is_finished(root / name)}
    todo = sorted((c for name, c in unique.items() if name not in results), key=_cost, reverse=True)
    if executor == "ray":
        if todo:
            from .ray_executor import train_on_ray

            train_on_ray(todo, root, address=address, progress=progress)
            results.update({run_name(c): load_run(root / run_name(c)) for c in todo})
        return [results[run_name(c)] for c in configs]
    workers = default_workers() if workers is None else workers
    if workers == 1 or len(todo) <= 1:
        results.update({run_name(c): train(c, root / run_name(c), progress=progress) for c in todo})
    elif todo:
        in_process = {run_name(c) for c in todo if not (kernel_bound(c) and runs_on_fused(c))}
        results.update(_in_workers(todo, root, min(workers, len(todo)), progress, in_process))
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


def _train_in_worker(config: dict, out_dir: str) -> str:
    """Body of a worker process: one run on one thread, recorded in ``out_dir`` (the parent loads it)."""
    train(TrainConfig.from_dict(config), out_dir, threads=1)
    return out_dir


def _in_workers(configs: Sequence[TrainConfig], root: Path, workers: int, progress: bool,
                in_process: set[str]) -> dict[str, TrainResult]:
    """One queue of runs, longest first, on ``workers`` threads: a thread trains its run itself (the fused
    kernels run outside the GIL), or, for the runs named in ``in_process``, hands it to a process of a pool
    started when the first such run comes up, and waits. One queue keeps every core busy until the last run
    (no group waits for another's stragglers). On Ctrl-C the runs not started are cancelled and those training
    stop at their next step (``interrupts.check`` in threads, ``interrupts.watch`` in processes), their
    checkpoints kept."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    kinds = ("threads" if not in_process else "processes" if len(in_process) == len(configs)
             else "threads and processes")
    bar = _progress(len(configs), 0, progress, f"{len(configs)} runs on {workers} {kinds}")
    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # set on Ctrl-C: the processes' runs stop at their next step
    lock, procs = threading.Lock(), []

    def process_pool() -> ProcessPoolExecutor:
        with lock:
            if not procs:
                n = min(workers, len(in_process))
                procs.append(ProcessPoolExecutor(n, mp_context=context, initializer=interrupts.watch,
                                                 initargs=(stop,)))
            return procs[0]

    def run(c: TrainConfig) -> TrainResult:
        out = root / run_name(c)
        if run_name(c) not in in_process:
            return train(c, out, threads=1)
        process_pool().submit(_train_in_worker, c.to_dict(), str(out)).result()
        return load_run(out)

    with training_threads(read_settings()):
        pool = ThreadPoolExecutor(workers)
        try:
            futures = {pool.submit(run, c): run_name(c) for c in configs}
            return _collect(futures, bar)
        except KeyboardInterrupt:
            interrupts.request()  # the running threads stop at their next step
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for p in procs:
                p.shutdown(wait=True, cancel_futures=True)
