"""Independent runs as tasks of a Ray cluster: the ``ray`` executor of ``train_many``.

``train_on_ray(configs, root)`` sends each run to the cluster as one task asking for one CPU (a task
trains with one kernel thread, as a local worker does), shows a bar as the runs complete, and returns
which node finished each run. The cluster is the one named by ``address`` or ``RAY_ADDRESS``, else a Ray
started on this machine; a Ray this process is already connected to is reused, and the connection stays
open for the next sweep.

Assumptions and guarantees:

- ``root`` is on a filesystem every node shares, mounted at the same path (NFS, Lustre, CephFS...): the
  tasks write the run directories there, as ``train`` does locally, and the driver reads them back. The
  driver writes a marker file in ``root`` first; a task on a node that cannot read it stops before any work
  with ``SharedDirectoryError``, naming the node and the directory.
- A run is a pure function of its config: whichever node trains it, from scratch or resuming the checkpoint
  of a task that died, the weights are the same as long as the kernel build is the same (same CPU kind,
  compiler and ``-march``; ``train`` refuses to resume a checkpoint written by another build).
- A task lost with its worker or node is retried (``MAX_RETRIES`` times) and resumes from the run's last
  checkpoint; a run that still fails, or raises (e.g. ``TrainingDiverged``), is reported: ``RunsFailed``
  lists every failed run once all the others have finished. Nothing is dropped silently. On Ctrl-C the
  tasks not finished are cancelled (a run stopped midway keeps its last checkpoint).
- The settings that decide a run's numbers (``GEOAE_BACKEND``, ``GEOAE_FUSED``, ``GEOAE_MARCH``,
  ``GEOAE_KERNEL``, ``GEOAE_TORCH_THREADS``) are read on the driver and set in each task; the ones that
  describe a node (``GEOAE_CACHE``, ``GEOAE_THREADS``, ``GEOAE_WORKERS``) stay the node's own.

Ray is an optional dependency: ``pip install 'geoae[ray]'``. It is imported only when this executor is used.
"""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Sequence
from pathlib import Path

from .. import interrupts
from ..settings import Settings, read_settings
from .config import TrainConfig
from .loop import _progress, train
from .rundir import run_name, write_bytes_atomic

__all__ = ["train_on_ray", "connect", "import_ray", "RunsFailed", "SharedDirectoryError", "MAX_RETRIES", "RAY_EXTRA"]

RAY_EXTRA = "pip install 'geoae[ray]'"
MAX_RETRIES = 3  # retries of a task whose worker process or node died


class RunsFailed(RuntimeError):
    """Some runs of a sweep failed on the cluster: ``failures`` maps each of their names to its error,
    ``finished`` each of the other runs' names to where it ran."""

    def __init__(self, failures: dict[str, str], finished: dict[str, dict]):
        self.failures, self.finished = dict(failures), dict(finished)
        lines = "\n".join(f"  {name}: {error}" for name, error in sorted(self.failures.items()))
        super().__init__(f"{len(self.failures)} of {len(self.failures) + len(self.finished)} runs failed on the "
                         f"Ray cluster (the others finished; re-running the sweep retries only these):\n{lines}")


class SharedDirectoryError(OSError):
    """A node of the cluster cannot see the results directory the driver writes to."""


def import_ray():
    """The ``ray`` module, or an ImportError telling how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"executor 'ray' needs the Ray package, which is not installed: {RAY_EXTRA}") from err
    return ray


def _run_environment(settings: Settings) -> dict[str, str]:
    """The driver's settings that decide a run's numbers, as the variables each task sets before training."""
    return {"GEOAE_BACKEND": settings.backend, "GEOAE_FUSED": "1" if settings.fused else "0",
            "GEOAE_MARCH": settings.march, "GEOAE_KERNEL": settings.kernel,
            "GEOAE_TORCH_THREADS": str(settings.torch_threads), "GEOAE_EXECUTOR": "ray"}


def check_shared(marker: Path, token: str) -> None:
    """Raise ``SharedDirectoryError`` unless this node reads the driver's marker file ``marker``."""
    try:
        seen = Path(marker).read_text()
    except OSError:
        seen = None
    if seen != token:
        raise SharedDirectoryError(
            f"node {platform.node()} cannot see the results directory {Path(marker).parent} written by the "
            "driver: the ray executor needs a filesystem shared by every node, mounted at the same path")


def train_task(config: dict, out_dir: str, marker: str, token: str, environment: dict[str, str]) -> dict:
    """Body of one Ray task: check the shared directory, take the driver's settings, train one run on one
    thread into ``out_dir`` (resuming its checkpoint if a previous attempt died). Returns where it ran."""
    import ray

    check_shared(Path(marker), token)
    os.environ.update(environment)
    train(TrainConfig.from_dict(config), out_dir, threads=1)
    return {"node": ray.get_runtime_context().get_node_id(), "host": platform.node(), "pid": os.getpid()}


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ConnectionError unless something answers at the Ray cluster ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``; ``auto`` and ``local`` are Ray's own look-ups, not checked) within ``timeout`` s:
    ``ray.init`` itself retries an unreachable address for minutes."""
    import socket

    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address must be a Ray cluster address such as 'HOST:6379', 'ray://HOST:10001' or "
                         f"'auto', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        why = err.strerror or str(err) or type(err).__name__
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({why}; waited up to {timeout:g} s): "
                              "start it (`ray start --head`) or check the address") from None


def connect(address: str | None = None):
    """The ``ray`` module, connected: to the Ray this process already uses, else to the cluster at
    ``address`` or ``RAY_ADDRESS``, else to a Ray started here with this machine's cores (it stays up
    until the process exits, for the next sweeps)."""
    ray = import_ray()
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address is None:
            ray.init(include_dashboard=False)
        else:
            check_reachable(address)
            ray.init(address=address)
    return ray


def _error(ray, err: Exception) -> str:
    cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None else err
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"


def train_on_ray(configs: Sequence[TrainConfig], root: str | Path, *, address: str | None = None,
                 progress: bool = False) -> dict[str, dict]:
    """Train each config as one Ray task into ``root/<run_name>``; returns ``{run name: {"node", "host",
    "pid"}}`` of the task that finished it. Raises ``RunsFailed`` (after the others finished) if any failed.

    ``train_many(..., executor="ray")`` calls this with the runs not yet finished, and loads them after."""
    root = Path(root).resolve()
    unique = {run_name(c): c for c in configs}
    if not unique:
        return {}
    environment = _run_environment(read_settings())
    ray = connect(address)
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < 1:
        raise RuntimeError(f"the Ray cluster has {cpus:g} CPUs: no node can train a run (each task needs one CPU)")
    token = uuid.uuid4().hex
    marker = root / f".geoae-ray-{token}"
    write_bytes_atomic(marker, token.encode())
    task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(train_task)
    refs, pending = {}, []
    try:
        refs = {task.options(name=name).remote(c.to_dict(), str(root / name), str(marker), token, environment): name
                for name, c in unique.items()}
        bar = _progress(len(refs), 0, progress, f"{len(refs)} runs on Ray ({cpus:g} CPUs)")
        placed, failures, pending = {}, {}, list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            interrupts.check()  # Ctrl-C on the command line
            for ref in done:
                try:
                    placed[refs[ref]] = ray.get(ref)
                except ray.exceptions.RayError as err:
                    failures[refs[ref]] = _error(ray, err)
                bar.update(1)
        bar.close()
    except KeyboardInterrupt:  # the runs still training stop (their last checkpoints kept), the others are dropped
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        marker.unlink(missing_ok=True)
    if failures:
        raise RunsFailed(failures, placed)
    return placed
