"""The one list of experiments: id, module, and what kind of statement each one tests.

``kind`` is ``claim`` for a claim of the paper that an experiment can refute, ``theorem`` for a claim that
holds by construction of the network (measured as an implementation check, its empirical part as the
verdict). ``paper_claim=False`` marks an experiment beyond the paper (X1–X4): its claim is our prediction, and
the report shows it apart from the paper's claims. Everything else (the runner, the report, the CLI's
``--only``) reads this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    id: str
    module: str  # geoae.experiments.<module>
    kind: str  # "claim" or "theorem"
    paper_claim: bool = True  # False for experiments beyond the paper
    quick_seeds: int | None = None  # its default number of seeds in the quick profile, where not the profile's

    def load(self):
        """The module implementing the experiment (``ID``, ``STAGES``, ``analyse``, …)."""
        return importlib.import_module(f"geoae.experiments.{self.module}")


EXPERIMENTS = (
    Experiment("D1", "d1", "claim"),
    Experiment("D2", "d2", "claim"),
    Experiment("D3", "d3", "theorem"),
    Experiment("D4", "d4", "claim"),
    Experiment("D5", "d5", "claim"),
    Experiment("D6", "d6", "claim"),
    Experiment("D7", "d7", "claim"),
    Experiment("P1", "p1", "theorem"),
    Experiment("P2", "p2", "claim"),
    Experiment("P3", "p3", "claim"),
    # beyond the paper: the theory's predictions for other dimensions, densities and shapes (``beyond.py``)
    Experiment("X1", "x1", "claim", paper_claim=False, quick_seeds=3),
    Experiment("X2", "x2", "claim", paper_claim=False, quick_seeds=3),
    Experiment("X3", "x3", "claim", paper_claim=False, quick_seeds=3),
    Experiment("X4", "x4", "theorem", paper_claim=False),
)
IDS = tuple(e.id for e in EXPERIMENTS)
BY_ID = {e.id: e for e in EXPERIMENTS}
