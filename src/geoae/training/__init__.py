"""Training: Adam on MSE + λ·ψ, reproducible, resumable, parallel (ICLR 2018 §3.1, §3.2.4).

One file per job:

- ``config.py``     ``TrainConfig``: what determines a run, validated, its JSON form and digest;
- ``objectives.py`` the loss, the registry of regularisers ψ, the torch executor;
- ``rundir.py``     the run directory: durable writes, provenance, checkpoints, history, lock, ``load_run``;
- ``loop.py``       ``train``: the loop, the choice of executor (fused C kernels or torch), callbacks;
- ``schedule.py``   ``train_many``: independent runs in parallel, on this machine or on a Ray cluster;
- ``ray_executor.py`` ``train_many(executor="ray")``: one Ray task per run (``pip install 'geoae[ray]'``).
"""

from .config import TrainConfig
from .loop import BatchSource, Callback, TrainingDiverged, final_metrics, make_executor, make_optimizer, train
from .objectives import (
    REGISTRY,
    REGULARISERS,
    Loss,
    TorchExecutor,
    compute_loss,
    contractive_penalty,
    fused_step,
    locality_penalty,
    mse_per_pixel,
    one_call_steps,
    weight_penalty,
)
from .rundir import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    RunLockedError,
    TrainResult,
    git_commit,
    is_finished,
    load_run,
    provenance,
    read_history,
    run_name,
    write_json,
)
from .schedule import default_workers, runs_on_fused, train_many

__all__ = [
    "BatchSource", "CHECKPOINT_FORMAT", "Callback", "CheckpointError", "Loss", "REGISTRY", "REGULARISERS",
    "RunLockedError", "TorchExecutor", "TrainConfig", "TrainResult", "TrainingDiverged", "compute_loss",
    "contractive_penalty", "default_workers", "final_metrics", "fused_step", "git_commit", "is_finished",
    "load_run", "locality_penalty", "make_executor", "make_optimizer", "mse_per_pixel", "one_call_steps",
    "provenance", "read_history", "run_name", "runs_on_fused", "train", "train_many", "weight_penalty", "write_json",
]
