"""geoae: how convolutional autoencoders encode and decode size and position.

A runnable companion to Newson, Almansa, Gousseau & Ladjal, *Processing Simple Geometric Attributes with
Autoencoders*, JMIV 62, 293-312 (2020): data generators with ground truth (``geoae.data``), PyTorch
datasets and ground-truth-factor adapters (``geoae.datasets``), the paper's autoencoders and hand-crafted
networks (``geoae.models``), the closed-form decoding theory (``geoae.theory``), a reproducible trainer
(``geoae.training``) and the paper's experiments (``geoae.experiments``, run by ``geoae reproduce``).
"""

__version__ = "0.1.0"

from . import data, datasets, models, theory, train, training  # noqa: E402
from .data import DiracData, DiskData, make_diracs, make_disks, render_disks  # noqa: E402
from .models import ModelConfig, build_model, load_official_model  # noqa: E402
from .theory import airy_root, discrete_optimum, f_hat, h_hat  # noqa: E402
from .training import TrainConfig, load_run, train_many  # noqa: E402

__all__ = [
    "DiracData", "DiskData", "ModelConfig", "TrainConfig", "airy_root", "build_model", "data", "datasets",
    "discrete_optimum", "f_hat", "h_hat", "load_official_model", "make_diracs", "make_disks", "models",
    "render_disks", "theory", "train", "train_many", "training", "load_run",
]
