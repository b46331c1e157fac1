"""Watching runs with the tools researchers use: TensorBoard and MLflow.

``train(config, out_dir, callbacks=[...])`` calls each callback with every logged record
``{"iteration", "loss", "mse", "penalty"}`` and the model. Two callbacks ship here, each behind an optional
extra, and each is told the end of the run with ``finish(metrics, run_dir)``:

- ``TensorBoardLogger(log_dir, config)`` (``pip install geoae[tensorboard]``) writes one TensorBoard run per
  training run, ``log_dir/<run name>/``: the curves ``train/{loss,mse,penalty}``, a reconstruction image
  (inputs above, outputs below) at each logging step, and at the end the hyper-parameters (the whole config,
  flattened: ``model.arch``, ``data.rendering``, ``lr`` …) with the final metrics (``final/train_mse`` …), which
  TensorBoard's HParams tab compares across runs;
- ``MLflowLogger(run_name, tracking_uri, config)`` (``pip install geoae[mlflow]``) logs one MLflow run: the whole
  config flattened as params, the curves per step, the final metrics, and the run directory as artifacts. The
  suggested store is ``sqlite:///mlflow.db``, which ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` and
  ``MlflowClient`` read back as they are (MLflow 3 reads a ``file:`` store only under an environment variable).

``export_tensorboard(paths, out_dir)`` writes the same TensorBoard runs afterwards from run directories, or
folders of them (``geoae export``): idempotent (a re-export replaces what geoae wrote there, never adds
points), and it reports a run without a training history (the converted authors' model) as such.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

__all__ = ["TensorBoardLogger", "MLflowLogger", "export_tensorboard", "find_runs", "flatten_config",
           "final_numbers", "reconstruction_image", "Exported", "CURVES", "SUGGESTED_MLFLOW_URI", "check_history"]

CURVES = ("loss", "mse", "penalty")  # the scalars of each logged record
SUGGESTED_MLFLOW_URI = "sqlite:///mlflow.db"
EVENT_SUFFIX = ".geoae"  # the ending of the event files geoae writes (a re-export replaces only these)
N_IMAGES = 8  # inputs shown in the reconstruction image


def flatten_config(config) -> dict[str, str | int | float | bool]:
    """A TrainConfig (or its dict) as flat ``{"model.arch": "paper64", "data.n": 1000, …}``: lists and None as
    text, the forms TensorBoard's hparams and MLflow's params take."""
    tree = config.to_dict() if hasattr(config, "to_dict") else config
    flat: dict[str, str | int | float | bool] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value if isinstance(value, bool | int | float | str) else str(value)

    walk(tree, "")
    return flat


def final_numbers(metrics: dict) -> dict[str, float]:
    """The finite numbers of a run's ``metrics.json`` as ``final/<name>`` (booleans and text left out)."""
    return {f"final/{k}": float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _samples(config) -> torch.Tensor:
    """The fixed inputs of the reconstruction image: a few of the config's own data, in ground-truth order."""
    x, truth = config.data.make(N_IMAGES, seed=0)
    order = truth.reshape(len(truth), -1)[:, 0].argsort() if truth.numel() else torch.arange(len(x))
    return x[order]


def reconstruction_image(model, inputs: torch.Tensor) -> torch.Tensor:
    """(3, H, W) image in [0, 1]: the inputs in the top half, the model's outputs below (1-D signals: one row
    each, 4 px high). Output values are clipped to [0, 1], the range of the inputs."""
    with torch.no_grad():
        outputs = model(inputs).x_hat
    pair = torch.stack([inputs, outputs]).detach().float().clamp(0, 1)  # (2, k, 1, *S)
    if pair.dim() == 4:  # 1-D: (2, k, 1, n) -> rows
        rows = pair[:, :, 0].reshape(-1, pair.shape[-1])  # (2k, n)
        picture = rows.repeat_interleave(4, dim=0)
    else:  # 2-D: (2, k, 1, m, m) -> inputs side by side over outputs side by side
        picture = torch.cat([torch.cat(list(half[:, 0]), dim=1) for half in pair], dim=0)
    return picture.unsqueeze(0).expand(3, -1, -1).contiguous()


def _summary_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("TensorBoard logging needs the tensorboard package: pip install geoae[tensorboard]") from err
    return SummaryWriter(log_dir=str(log_dir), filename_suffix=EVENT_SUFFIX)


class TensorBoardLogger:
    """A ``train`` callback writing one TensorBoard run: ``log_dir`` itself is the run's folder (``geoae train
    --tensorboard DIR`` passes ``DIR/<run name>``). With ``config`` it also draws a reconstruction image at each
    logging step and, at ``finish``, records the flattened config as hparams with the final metrics. Flushed at
    every step, so TensorBoard shows a run as it trains. Use ``with`` or call ``close()``."""

    def __init__(self, log_dir: str | Path, config=None):
        self.log_dir = Path(log_dir)
        self.config = config
        self.writer = _summary_writer(self.log_dir)
        self.inputs = _samples(config) if config is not None else None

    def __call__(self, record: dict, model=None) -> None:
        step = record["iteration"]
        for key in CURVES:
            self.writer.add_scalar(f"train/{key}", record[key], step)
        if model is not None and self.inputs is not None:
            self.writer.add_image("reconstruction", reconstruction_image(model, self.inputs), step)
        self.writer.flush()

    def finish(self, metrics: dict, run_dir: str | Path | None = None) -> None:
        """The end of the run: the config as hparams and ``final_numbers(metrics)`` (also as scalars at the
        last iteration). ``run_dir`` is accepted for symmetry with ``MLflowLogger`` (unused)."""
        from torch.utils.tensorboard.summary import hparams

        finals = final_numbers(metrics)
        params = flatten_config(self.config) if self.config is not None else {}
        params = {k: str(v) if isinstance(v, bool) else v for k, v in params.items()}  # torch would send 1.0
        for summary in hparams(params, finals):
            self.writer._get_file_writer().add_summary(summary)
        step = int(metrics.get("iterations", 0))
        for name, value in finals.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MLflowLogger:
    """A ``train`` callback logging one MLflow run: the flattened ``config`` as params at the start, the record's
    scalars as metrics (step = iteration), and at ``finish`` the final metrics and the run directory as
    artifacts (under ``run/``). ``tracking_uri`` defaults to ``SUGGESTED_MLFLOW_URI``; ``params`` adds to (or
    without a config, replaces) the config's."""

    def __init__(self, run_name: str, tracking_uri: str | None = None, experiment: str = "geoae",
                 params: dict | None = None, config=None):
        try:
            import mlflow
        except ImportError as err:
            raise ImportError("MLflow logging needs mlflow: pip install geoae[mlflow]") from err
        self.mlflow = mlflow
        tracking_uri = tracking_uri or SUGGESTED_MLFLOW_URI
        if tracking_uri.startswith("file:"):  # MLflow 3 asks to opt in to its (kept, not developed) file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)
        logged = (flatten_config(config) if config is not None else {}) | dict(params or {})
        if config is not None:
            logged["digest"] = config.digest()
        if logged:
            mlflow.log_params({k: str(v) for k, v in logged.items()})

    def __call__(self, record: dict, model=None) -> None:
        self.mlflow.log_metrics({key: record[key] for key in CURVES}, step=record["iteration"])

    def finish(self, metrics: dict, run_dir: str | Path | None = None) -> None:
        """The end of the run: ``final_numbers(metrics)`` and, with ``run_dir``, its files as artifacts."""
        self.mlflow.log_metrics(final_numbers(metrics), step=int(metrics.get("iterations", 0)))
        if run_dir is not None:
            for path in sorted(Path(run_dir).iterdir()):
                if path.is_file() and not path.name.startswith("."):  # not the lock, nor a temporary file
                    self.mlflow.log_artifact(str(path), artifact_path="run")

    def close(self) -> None:
        self.mlflow.end_run()

    def __enter__(self) -> MLflowLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- export


class Exported(NamedTuple):
    """One exported run: its directory, the TensorBoard folder written, and how many points each curve has
    (0: a run without a training history, such as the converted authors' model)."""

    run_dir: Path
    folder: Path
    points: int
    finished: bool


def _is_run(path: Path) -> bool:
    return (path / "history.jsonl").is_file() or (path / "history.json").is_file()


def find_runs(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """``(run directory, its name under the output)`` for each path: a run directory is its own name; any
    other directory stands for the runs below it, named by their path relative to it. Raises ValueError for a
    path that is neither, and for two runs that would share a name."""
    found: list[tuple[Path, Path]] = []
    for path in map(Path, paths):
        if _is_run(path):
            found.append((path, Path(path.resolve().name)))
        elif path.is_dir():
            below = sorted({p.parent for pattern in ("history.jsonl", "history.json") for p in path.rglob(pattern)})
            if not below:
                raise ValueError(f"{path} is neither a run directory (no history.jsonl) nor a folder of runs")
            found += [(run, run.relative_to(path)) for run in below]
        else:
            raise ValueError(f"{path} is not a run directory (no history.jsonl)")
    found = list({run.resolve(): (run, name) for run, name in found}.values())  # a run given twice: once
    named = []
    for run, name in found:  # runs of the same name (a/run, b/run) keep as much of their paths as tells them apart
        others = [r.resolve() for r, n in found if n == name and r.resolve() != run.resolve()]
        depth, parts = 1, run.resolve().parts
        while others and depth < len(parts) and any(parts[-depth:] == o.parts[-depth:] for o in others):
            depth += 1
        named.append((run, Path(*parts[-depth:]) if others else name))
    return named


def check_history(run_dir: Path, history) -> None:
    """ValueError naming the run and the first record that is not {integer iteration, numbers of CURVES}."""
    if not isinstance(history, list):
        raise ValueError(f"{run_dir}: its history is not a list of records")
    for n, record in enumerate(history, 1):
        ok = (isinstance(record, dict) and type(record.get("iteration")) is int and record["iteration"] >= 0
              and all(type(record.get(k)) in (int, float) for k in CURVES))
        if not ok:
            raise ValueError(f"{run_dir}: history record {n} is malformed (it needs an integer iteration and the "
                             f"numbers {', '.join(CURVES)}): {str(record)[:100]}")


def export_tensorboard(paths: Sequence[str | Path], out_dir: str | Path) -> list[Exported]:
    """TensorBoard runs under ``out_dir/<name>/`` (``find_runs``) from each run's logged history (finished or
    not): the curves, and for a finished run its hparams, final metrics and final reconstruction. Event files
    that geoae wrote there before are replaced, so exporting twice gives the same points."""
    from .training import is_finished, load_run
    from .training.rundir import read_history

    plan = []
    for run_dir, name in find_runs(paths):  # every history read and checked before anything is written
        try:
            history = read_history(run_dir)
        except (OSError, ValueError) as err:
            raise ValueError(f"{run_dir}: its history cannot be read ({err})") from None
        check_history(run_dir, history)
        plan.append((run_dir, name, history))
    exported = []
    for run_dir, name, history in plan:
        folder = Path(out_dir) / name
        if folder.is_dir():
            for old in folder.glob(f"events.out.tfevents.*{EVENT_SUFFIX}"):
                old.unlink()
        finished = is_finished(run_dir)
        result = load_run(run_dir) if finished else None
        config = result.config if result is not None else None
        with TensorBoardLogger(folder, config=None) as logger:
            for record in history:
                logger(record)
            if result is not None:
                logger.config = config
                logger.inputs = _samples(config)
                logger.writer.add_image("reconstruction", reconstruction_image(result.model, logger.inputs),
                                        int(result.metrics.get("iterations", 0)))
                logger.finish(result.metrics)
        exported.append(Exported(run_dir, folder, len(history), finished))
    return exported
