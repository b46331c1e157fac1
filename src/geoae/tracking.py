"""Watching runs with the tools researchers use: TensorBoard event files and MLflow's file store.

``train(config, out_dir, callbacks=[...])`` calls each callback with every logged record
``{"iteration", "loss", "mse", "penalty"}`` and the model. Two callbacks ship here, each behind an optional
extra: ``TensorBoardLogger`` (``pip install geoae[tensorboard]``) writes live TensorBoard event files, and
``MLflowLogger`` (``pip install geoae[mlflow]``) logs to an MLflow tracking store (a local ``file:`` store by
default). ``export_tensorboard`` writes event files afterwards from finished or interrupted run directories
(their ``history.jsonl``), which is what ``geoae export --to tensorboard RUN ...`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["TensorBoardLogger", "MLflowLogger", "export_tensorboard", "CURVES"]

CURVES = ("loss", "mse", "penalty")  # the scalars of each logged record


def _summary_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install geoae[tensorboard]") from err
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardLogger:
    """A ``train`` callback writing ``train/loss``, ``train/mse``, ``train/penalty`` at each logging step
    (flushed, so TensorBoard shows a run as it trains). Call ``close()`` (or use ``with``) at the end."""

    def __init__(self, log_dir: str | Path):
        self.writer = _summary_writer(Path(log_dir))

    def __call__(self, record: dict, model=None) -> None:
        for key in CURVES:
            self.writer.add_scalar(f"train/{key}", record[key], record["iteration"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MLflowLogger:
    """A ``train`` callback logging the record's scalars as MLflow metrics (step = iteration) in one MLflow
    run; ``tracking_uri`` defaults to a local file store ``./mlruns``."""

    def __init__(self, run_name: str, tracking_uri: str | None = None, experiment: str = "geoae",
                 params: dict | None = None):
        try:
            import mlflow
        except ImportError as err:
            raise ImportError("MLflow logging needs mlflow: pip install geoae[mlflow]") from err
        self.mlflow = mlflow
        tracking_uri = tracking_uri or Path("mlruns").resolve().as_uri()
        if tracking_uri.startswith("file:"):  # MLflow 3 asks to opt in to its (kept, not developed) file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        if params:
            mlflow.log_params({k: str(v)[:250] for k, v in params.items()})

    def __call__(self, record: dict, model=None) -> None:
        self.mlflow.log_metrics({key: record[key] for key in CURVES}, step=record["iteration"])

    def close(self) -> None:
        self.mlflow.end_run()

    def __enter__(self) -> MLflowLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def export_tensorboard(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Event files under ``out_dir/<run directory name>/`` from each run's logged history (finished or not).
    Raises ValueError naming a directory that holds no run history."""
    from .training.rundir import read_history

    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not ((d / "history.jsonl").exists() or (d / "history.json").exists()):
            raise ValueError(f"{d} is not a run directory (no history.jsonl)")
    written = []
    for d in dirs:
        target = Path(out_dir) / d.resolve().name
        with TensorBoardLogger(target) as logger:
            for record in read_history(d):
                logger(record)
        written.append(target)
    return written
