"""Compatibility module: ``geoae.train`` is now the package ``geoae.training`` (one file per job); this
module re-exports its public names so that ``from geoae.train import train, TrainConfig`` keeps working."""

from .training import *  # noqa: F403
from .training import __all__  # noqa: F401
