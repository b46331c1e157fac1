"""geoae: how convolutional autoencoders encode and decode size and position.

A runnable companion to Newson, Almansa, Gousseau & Ladjal, *Processing Simple Geometric Attributes with
Autoencoders*, JMIV 62, 293-312 (2020): data generators with ground truth (``geoae.data``), PyTorch
datasets and ground-truth-factor adapters (``geoae.datasets``), the paper's autoencoders and hand-crafted
networks (``geoae.models``), the closed-form decoding theory (``geoae.theory``), a reproducible trainer
(``geoae.training``) and the paper's experiments (``geoae.experiments``, run by ``geoae reproduce``).

The names below are imported on first use (PEP 562), so ``import geoae`` and the command line start without
loading torch: a Ctrl-C during start-up then reaches the command line's handler, not the import machinery.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("data", "datasets", "models", "theory", "train", "training")
_NAMES = {
    "DiracData": "data", "DiskData": "data", "make_diracs": "data", "make_disks": "data", "render_disks": "data",
    "ModelConfig": "models", "build_model": "models", "load_official_model": "models",
    "airy_root": "theory", "discrete_optimum": "theory", "f_hat": "theory", "h_hat": "theory",
    "TrainConfig": "training", "load_run": "training", "train_many": "training",
}

__all__ = sorted([*_SUBMODULES, *_NAMES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'geoae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
