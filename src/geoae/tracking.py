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

__all__ = ["TensorBoardLogger", "MLflowLogger", "export_tensorboard", "export_plan", "CURVES"]

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


def export_plan(run_dirs: Sequence[str | Path]) -> list[tuple[Path, Path, list[dict]]]:
    """(run directory, its folder under the export's ``--out``, its history) for each run: every history read
    and checked before anything is written (ValueError naming the file and the first bad record). The folder is
    the shortest end of the run's path that no other run shares (``a/run`` and ``b/run``: ``a/run``, ``b/run``)."""
    from .training.rundir import read_history

    dirs = list(dict.fromkeys(Path(d).resolve() for d in run_dirs))  # the same run given twice: exported once
    plan = []
    for d in dirs:
        if not ((d / "history.jsonl").is_file() or (d / "history.json").is_file()):
            raise ValueError(f"{d} is not a run directory (no history.jsonl)")
        try:
            history = read_history(d)
        except (OSError, ValueError) as err:
            raise ValueError(f"{d}: its history cannot be read ({err})") from None
        if not isinstance(history, list):
            raise ValueError(f"{d}: its history is not a list of records")
        for n, record in enumerate(history, 1):
            ok = (isinstance(record, dict) and type(record.get("iteration")) is int and record["iteration"] >= 0
                  and all(type(record.get(k)) in (int, float) for k in CURVES))
            if not ok:
                raise ValueError(f"{d}: history record {n} is malformed (it needs an integer iteration and the "
                                 f"numbers {', '.join(CURVES)}): {str(record)[:100]}")
        plan.append((d, history))
    named = []
    for d, history in plan:
        others = [o for o, _ in plan if o != d]
        depth = 1
        while depth < len(d.parts) and any(d.parts[-depth:] == o.parts[-depth:] for o in others):
            depth += 1
        named.append((d, Path(*[part for part in d.parts[-depth:] if part != d.anchor]), history))
    return named


def export_tensorboard(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Event files under ``out_dir/<run directory name>/`` from each run's logged history (finished or not);
    runs of the same name get their parent folders too (``export_plan``). Every history is checked first and
    the event files are written in a temporary folder, then moved into place: a malformed history (ValueError
    naming it) or a failure leaves nothing behind."""
    import shutil
    import tempfile

    plan = export_plan(run_dirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".geoae-export-"))
    try:
        for _, name, history in plan:
            with TensorBoardLogger(staging / name) as logger:
                for record in history:
                    logger(record)
        written = []
        for _, name, _ in plan:
            target = out_dir / name
            target.mkdir(parents=True, exist_ok=True)
            for staged in (staging / name).iterdir():
                if staged.is_file():
                    os.replace(staged, target / staged.name)
            written.append(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
