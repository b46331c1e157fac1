"""A run directory: what a run writes, how it is written (durably, atomically), and how it is read back.

::

    config.json             the TrainConfig and the provenance (geoae and torch versions, CPU, host, executor,
                            settings, git commit when geoae runs from its own checkout, else null)
    history.jsonl           one JSON record per logging step, appended as training goes (a reader can follow it)
    checkpoint.safetensors  weights + Adam state + RNG state + iteration (no pickle), replaced atomically
    model.safetensors       the final weights, with the config digest and a checksum of the tensors
    metrics.json            final numbers (written last: its presence marks a finished run)
    .lock                   held (flock) by the one process training in the directory

Every file goes through ``write_bytes_atomic``: a unique temporary file in the same directory, fsync, rename,
so no reader ever sees a partial file, and files get the permissions the user's umask gives (as ``open``).
A full disk stops with a one-line ``OSError`` naming the file, and the previous version stays intact; the
temporary file of a process killed mid-write is removed by the next process that takes the lock.
``write_files_atomic`` writes several files as one (the report's).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..models import Autoencoder, build_model
from .config import TrainConfig
from .files import (
    CHECKSUM_KEY,
    TMP_SUFFIX,
    CheckpointError,
    load_tensors,
    save_tensors,
    write_bytes_atomic,
    write_files_atomic,
    write_json,
)
from .provenance import cpu_description, git_commit, provenance

__all__ = ["TrainResult", "CheckpointError", "RunLockedError", "write_json", "write_bytes_atomic",
           "write_files_atomic", "git_commit",
           "provenance", "run_name", "is_finished", "load_run", "save_tensors", "load_tensors", "write_config",
           "RunDirectory", "CHECKPOINT_FORMAT", "check_run_directory", "check_checkpoint", "cpu_description",
           "CHECKSUM_KEY"]

CHECKPOINT_FORMAT = "geoae-checkpoint-1"


class RunLockedError(RuntimeError):
    """Another process is training in this run directory."""


# -------------------------------------------------------------------------------------------- runs


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


def write_config(out_dir: Path, config: TrainConfig, executor: dict | None = None) -> None:
    """Record the full config, the recipe it follows (``geoae.recipes``; None for none) and its provenance (and
    the executor with its settings, when known)."""
    from ..recipes import recipe_of

    write_json(Path(out_dir) / "config.json", {"config": config.to_dict(), "digest": config.digest(),
                                               "recipe": recipe_of(config)}
               | provenance() | ({"executor": executor} if executor else {}))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable or not JSON ({err})") from err


def read_history(out_dir: Path) -> list[dict]:
    """The logged records of a run (``history.jsonl``; ``history.json`` of runs written by geoae < 0.2)."""
    lines = Path(out_dir) / "history.jsonl"
    if lines.exists():
        records = []
        for line in lines.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line cut by a crash mid-write is skipped
                records.append(json.loads(line))
        return records
    old = Path(out_dir) / "history.json"
    return _read_json(old) if old.exists() else []


def load_run(out_dir: Path) -> TrainResult:
    """Load a finished run directory (config, final model, history, metrics); refuses a model file that
    fails its checksum or belongs to another configuration."""
    out_dir = Path(out_dir)
    try:
        config = TrainConfig.from_dict(_read_json(out_dir / "config.json")["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{out_dir / 'config.json'} does not hold a valid run config ({err})") from err
    model = build_model(config.model, seed=config.seed)
    tensors, metadata = load_tensors(out_dir / "model.safetensors")
    if metadata.get("config_digest") != config.digest():
        raise CheckpointError(f"{out_dir / 'model.safetensors'} belongs to another configuration (digest "
                              f"{metadata.get('config_digest')}, config.json has {config.digest()})")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise CheckpointError(f"{out_dir / 'model.safetensors'} does not fit the model: {err}") from err
    return TrainResult(config, model, read_history(out_dir), _read_json(out_dir / "metrics.json"), out_dir)


HISTORY_VALUES = ("loss", "mse", "penalty")


def logged_steps(config: TrainConfig, iteration: int) -> list[int]:
    """The steps up to ``iteration`` at which ``train`` logs a record (every ``log_every``, and the last)."""
    steps = list(range(config.log_every, iteration + 1, config.log_every))
    if iteration == config.iterations and (not steps or steps[-1] != iteration):
        steps.append(iteration)
    return steps


def check_history(records, config: TrainConfig, iteration: int, where: str) -> list[dict]:
    """``records`` as a run's history up to ``iteration``: one record per logging step, in order, each with its
    step and finite numbers (CheckpointError naming ``where`` otherwise)."""
    steps = logged_steps(config, iteration)
    if not isinstance(records, list) or len(records) != len(steps):
        n = len(records) if isinstance(records, list) else type(records).__name__
        raise CheckpointError(f"{where}: its history holds {n} record(s), iteration {iteration} with log_every="
                              f"{config.log_every} logs {len(steps)}; delete it to start again")
    for record, step in zip(records, steps, strict=True):
        ok = (isinstance(record, dict) and record.get("iteration") == step and type(record["iteration"]) is int
              and all(k in record for k in HISTORY_VALUES)
              and all(type(v) in (int, float) and math.isfinite(v) for v in record.values()))
        if not ok:
            raise CheckpointError(f"{where}: its history record for iteration {step} is malformed "
                                  f"({str(record)[:80]}); delete it to start again")
    return records


def check_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], config: TrainConfig
                     ) -> tuple[int, list[dict], dict]:
    """(iteration, history, executor) of a checkpoint whose header fits ``config``: its format and digest, an
    iteration in [0, config.iterations], the history of exactly the steps logged until then, Adam's step counts
    equal to the iteration, the executor a JSON object. CheckpointError naming the file otherwise."""
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file")
    if metadata.get("config_digest") != config.digest():
        raise CheckpointError(
            f"checkpoint {path} belongs to another configuration (digest {metadata.get('config_digest')}, "
            f"expected {config.digest()}); use another output directory or delete it")
    text = metadata.get("iteration", "")
    if not (text.isascii() and text.isdigit() and len(text) <= 12 and 0 <= int(text) <= config.iterations):
        raise CheckpointError(f"checkpoint {path}: iteration {text[:40]!r} is not an integer from 0 to "
                              f"iterations={config.iterations}; delete it to start again")
    iteration = int(text)
    try:
        history, executor = json.loads(metadata.get("history", "")), json.loads(metadata.get("executor", "{}"))
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"checkpoint {path}: its history or executor is not JSON ({err}); delete it to "
                              "start again") from None
    if not isinstance(executor, dict):
        raise CheckpointError(f"checkpoint {path}: its executor is not a JSON object; delete it to start again")
    history = check_history(history, config, iteration, f"checkpoint {path}")
    steps = {k: v for k, v in tensors.items() if k.startswith("adam.") and k.endswith(".step")}
    wrong = [k for k, v in steps.items() if v.numel() != 1 or float(v.reshape(-1)[0]) != iteration]
    if wrong or (iteration > 0 and not steps):
        raise CheckpointError(f"checkpoint {path}: iteration {iteration} differs from the optimizer's step count "
                              f"({', '.join(wrong) or 'no optimizer state'}); delete it to start again")
    return iteration, history, executor


RUN_FILES = ("config.json", "history.jsonl", "history.json", "checkpoint.safetensors", "model.safetensors",
             "metrics.json")


def _made_by_geoae(path: Path) -> bool:
    """Whether ``path`` holds a run geoae wrote: its config.json is geoae's (config, digest, version), or it
    holds a geoae checkpoint (``experiments`` prepare runs as a checkpoint before their config.json)."""
    with contextlib.suppress(OSError, ValueError, RecursionError):
        record = json.loads((path / "config.json").read_text())
        if isinstance(record, dict) and {"config", "digest", "geoae_version"} <= set(record):
            return True
    with contextlib.suppress(OSError, SafetensorError, ValueError, RuntimeError):
        with safe_open(str(path / "checkpoint.safetensors"), framework="pt") as fh:
            return (fh.metadata() or {}).get("format") == CHECKPOINT_FORMAT
    return False


def check_run_directory(path: Path) -> None:
    """Raise ValueError unless ``path`` may hold a run: absent, empty (or holding only geoae's lock and
    temporary files), or a run directory geoae made. A folder of the user's own files (a ``metrics.json`` or
    ``history.jsonl`` of theirs) is never written into."""
    path = Path(path)
    if not path.is_dir():
        return
    own = [p.name for p in path.iterdir() if not (p.name == ".lock" or p.name.endswith(TMP_SUFFIX))]
    if own and not _made_by_geoae(path):
        shown = ", ".join(sorted(own)[:4]) + (", …" if len(own) > 4 else "")
        raise ValueError(f"out_dir {path} is not empty and not a geoae run directory (it holds {shown}); give a "
                         "new or empty directory")


class RunDirectory:
    """The run directory of one training process: holds its lock (``with RunDirectory(...)``), writes its
    files. A second process on the same directory gets ``RunLockedError`` at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = None

    def __enter__(self) -> RunDirectory:
        import fcntl

        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as err:
            why = (f"{self.path / '.lock'} is a symbolic link (refused: a lock is opened only as itself)"
                   if err.errno == errno.ELOOP else err.strerror)
            raise OSError(err.errno, f"cannot use {self.path} as a run directory: {why}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"another process is training in {self.path}; wait for it, or use another "
                                 "--out") from None
        self._lock = fd
        for stale in self.path.glob(f".*{TMP_SUFFIX}"):  # left by a process killed mid-write (we hold the lock)
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.safetensors"

    def start_history(self, records: list[dict]) -> None:
        """history.jsonl holds exactly ``records`` (those of the checkpoint resumed from, or none)."""
        write_bytes_atomic(self.path / "history.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())

    def append_history(self, record: dict) -> None:
        """Append one record (a whole line, flushed: a reader following the file sees complete lines)."""
        with open(self.path / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def save_checkpoint(self, config: TrainConfig, model, optimizer, generator: torch.Generator, iteration: int,
                        history: list[dict], executor: dict, kept=None) -> None:
        """Model, Adam and RNG state; with ``kept`` (a ``loop.KeptWeights``) the snapshot kept so far too."""
        tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        for i, p in enumerate(model.parameters()):
            for key, value in optimizer.state.get(p, {}).items():
                tensors[f"adam.{i}.{key}"] = (torch.as_tensor(value).detach().clone().reshape(-1) if key == "step"
                                              else value.detach().clone())
        tensors["rng.batches"] = generator.get_state()
        metadata = {"format": CHECKPOINT_FORMAT, "config_digest": config.digest(), "iteration": str(iteration),
                    "history": json.dumps(history), "executor": json.dumps(executor, sort_keys=True)}
        if kept is not None:
            tensors |= {f"kept.{k}": v for k, v in kept.tensors().items()}
            metadata["kept"] = json.dumps({"loss": kept.loss, "iteration": kept.iteration})
        save_tensors(self.checkpoint, tensors, metadata)

    def load_checkpoint(self, config: TrainConfig, model, optimizer, generator: torch.Generator, kept=None
                        ) -> tuple[int, list[dict], dict]:
        """Restore model, Adam and RNG state (and the kept snapshot into ``kept``): (iteration, history, the
        executor that wrote it). The header is checked against the config (``check_checkpoint``) before anything
        is restored."""
        path = self.checkpoint
        tensors, metadata = load_tensors(path)
        iteration, history, executor = check_checkpoint(path, tensors, metadata, config)
        try:
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            for i, p in enumerate(model.parameters()):
                keys = [k for k in tensors if k.startswith(f"adam.{i}.")]
                if keys:
                    state = {k.split(".", 2)[2]: tensors[k] for k in keys}
                    state["step"] = state["step"].reshape(())
                    optimizer.state[p] = state
            generator.set_state(tensors["rng.batches"])
            if kept is not None:
                info = json.loads(metadata["kept"])
                loss, at = float(info["loss"]), info["iteration"]
                if at is not None and not (isinstance(at, int) and 0 < at <= iteration) or math.isnan(loss):
                    raise ValueError(f"its kept snapshot (iteration {at!r}, loss {loss!r}) does not fit iteration "
                                     f"{iteration}")
                kept.restore({k[5:]: v for k, v in tensors.items() if k.startswith("kept.")}, loss, at)
            return iteration, history, executor
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} does not match the model: {err}") from err

    def finish(self, config: TrainConfig, model, history: list[dict], metrics: dict) -> None:
        """Model, full history, then metrics (last: the run is done); the checkpoint is removed."""
        save_tensors(self.path / "model.safetensors", dict(model.state_dict()), {"config_digest": config.digest()})
        self.start_history(history)
        write_json(self.path / "metrics.json", metrics)
        self.checkpoint.unlink(missing_ok=True)
