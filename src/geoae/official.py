"""The authors' released Keras disk model: reading its weights, and as an ordinary geoae run directory.

``official_model_path()`` finds their weights file (``GEOAE_OFFICIAL_WEIGHTS``, else
``shared/reference/official_disk_model/`` searched upward); ``load_official_model(path)`` reads the h5 file
into a ``keras63`` network (``geoae.models`` reaches both too). ``convert_keras(h5, out_dir)`` reads the weights
with ``load_official_model`` and writes the run
directory that ``train`` writes, with the same writers (``training.rundir``: atomic, the umask's
permissions), so ``load_run``, ``geoae train --out`` (a no-op: the run is finished) and every command that
reads runs accept it:

    config.json        the TrainConfig below, its digest, the provenance (geoae and torch versions, CPU, git
                       commit), and ``converted_from`` (file name, sha256, what the training fields mean)
    model.safetensors  the weights (metadata ``config_digest`` = TrainConfig.digest(), and their checksum)
    history.jsonl      empty (the authors' training curve is not in the file)
    metrics.json       ``train_mse`` on this config's training set, ``converted_from_keras``: true

The TrainConfig (``keras63_config``) is the released code's documented set-up (SPEC 2.2): ``keras63``,
d = 1, α = 0.05, 1,000 fixed 63 × 63 disks with Gaussian-blurred edges (σ = 0.5 px), Adam lr 0.01, batch
64, 10,000 iterations. Only the weights come from the file; the training fields describe the authors'
recipe (their regulariser setting is not stored in the weights file, so ``regulariser`` is ``none``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .data import DiskData
from .models import Autoencoder, ModelConfig, build_model
from .training import TrainConfig, is_finished, mse_per_pixel, provenance, write_json
from .training.rundir import save_tensors, write_bytes_atomic

OFFICIAL_WEIGHTS = Path("shared/reference/official_disk_model/disk_example_model_weights.h5")
OFFICIAL_WEIGHTS_ENV = "GEOAE_OFFICIAL_WEIGHTS"  # a path to the authors' weights, wherever they are


def official_model_path() -> Path | None:
    """The authors' disk weights: the file named by ``GEOAE_OFFICIAL_WEIGHTS`` when set (FileNotFoundError if
    it is not a file), else ``shared/reference/official_disk_model/…h5`` searched upward from the working
    directory and from this package's directory; None if absent."""
    env = os.environ.get(OFFICIAL_WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{OFFICIAL_WEIGHTS_ENV}={env!r} is not a file; it must name the authors' "
                                    "disk_example_model_weights.h5")
        return path
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / OFFICIAL_WEIGHTS
            if candidate.is_file():
                return candidate
    return None


def load_official_model(path: str | Path | None = None) -> Autoencoder:
    """Load the authors' trained Keras disk model (keras63, d = 1, α = 0.05) from its h5 weight file.

    Keras kernels are (kh, kw, in, out) for Conv2D and (kh, kw, out, in) for Conv2DTranspose; torch wants
    (out, in, kh, kw) and (in, out, kh, kw): both are ``kernel.permute(3, 2, 0, 1)``, no spatial flip.
    """
    try:
        import h5py
    except ImportError as err:
        raise ImportError("load_official_model needs h5py: pip install geoae[keras]") from err
    path = official_model_path() if path is None else Path(path)
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"official model weights not found ({path or OFFICIAL_WEIGHTS}); pass the path "
            f"to disk_example_model_weights.h5 from the paper's released code (or set {OFFICIAL_WEIGHTS_ENV})"
        )
    model = build_model(ModelConfig(arch="keras63", size=63, latent_dim=1, bias=True, alpha=0.05))
    try:
        _read_keras_weights(h5py, path, model)
    except (OSError, KeyError, TypeError, RuntimeError) as err:  # h5py's / torch's: a damaged file, another layout
        raise ValueError(f"{path}: not a readable Keras weights file ({type(err).__name__}: {err})") from None
    return model


def _read_keras_weights(h5py, path: Path, model: Autoencoder) -> None:
    names = [f"conv2d_{i}" for i in range(1, 6)] + [f"conv2d_transpose_{i}" for i in range(1, 6)]
    with h5py.File(path, "r") as f, torch.no_grad():
        for name, layer in zip(names, model.conv_layers(), strict=True):
            if name not in f:
                raise ValueError(f"{path}: layer {name!r} missing; is this the keras63 disk model?")
            for attr, key in (("weight", "kernel:0"), ("bias", "bias:0")):
                value = torch.as_tensor(f[name][name][key][()], dtype=torch.float32)
                if attr == "weight":
                    value = value.permute(3, 2, 0, 1)
                target = getattr(layer, attr)
                if value.shape != target.shape:
                    raise ValueError(
                        f"{path}: {name}/{key} has shape {tuple(value.shape)} after conversion, "
                        f"expected {tuple(target.shape)}"
                    )
                target.copy_(value)


__all__ = ["keras63_config", "convert_keras", "check_conversion"]


def keras63_config() -> TrainConfig:
    """The authors' training set-up for their disk model (SPEC 2.2; module docstring)."""
    return TrainConfig(
        model=ModelConfig(arch="keras63", size=63, latent_dim=1, bias=True, alpha=0.05),
        data=DiskData(n=1000, size=63, rendering="gaussian", sigma=0.5),
        iterations=10_000, batch_size=64, lr=0.01,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_keras(h5: str | Path, out_dir: str | Path) -> Path:
    """Write the run directory of the Keras weights ``h5`` into ``out_dir``; returns ``out_dir``.

    Converting the same file again into the same directory is a no-op; a directory holding anything else
    is refused (ValueError), so no run is ever overwritten. Everything is checked (``check_conversion``)
    before anything is written.
    """
    out_dir = Path(out_dir)
    model, source, done = check_conversion(h5, out_dir)
    if done:
        return out_dir
    config = keras63_config()
    write_json(out_dir / "config.json", {"config": config.to_dict(), "digest": config.digest()} | provenance()
               | {"converted_from": source})
    save_tensors(out_dir / "model.safetensors", dict(model.state_dict()), {"config_digest": config.digest()})
    write_bytes_atomic(out_dir / "history.jsonl", b"")
    write_json(out_dir / "metrics.json", {"train_mse": _train_mse(model, config), "iterations": config.iterations,
                                          "converted_from_keras": True})
    return out_dir


def check_conversion(h5: str | Path, out_dir: str | Path) -> tuple[Autoencoder, dict, bool]:
    """What ``convert_keras`` checks before writing: (the model, the source record, whether ``out_dir`` already
    holds this conversion). Raises FileNotFoundError / ValueError (naming the file) / ImportError (h5py)."""
    h5, out_dir = Path(h5), Path(out_dir)
    model = load_official_model(h5)
    if model.config != keras63_config().model:
        raise ValueError(f"{h5}: the weights load as {model.config}, not the keras63 disk model")
    source = {"file": h5.name, "sha256": _sha256(h5), "format": "keras-h5",
              "note": "weights from the file; the training fields are the authors' documented set-up, "
                      "not read from it"}
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        try:
            done = json.loads((out_dir / "config.json").read_text()).get("converted_from", {}).get("sha256")
        except (OSError, ValueError, AttributeError):
            done = None
        if is_finished(out_dir) and done == source["sha256"]:
            return model, source, True
        raise ValueError(f"--out {out_dir} is not empty; convert into a new directory")
    return model, source, False


@torch.no_grad()
def _train_mse(model, config: TrainConfig) -> float:
    """Per-pixel MSE on the config's fixed training set (the set ``train`` would draw for this seed)."""
    images, _ = config.data.make(seed=config.seed if config.data_seed is None else config.data_seed)
    model.eval()
    total = sum(mse_per_pixel(model(chunk).x_hat, chunk).item() * len(chunk) for chunk in images.split(250))
    return total / len(images)
