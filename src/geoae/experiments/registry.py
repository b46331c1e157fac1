"""The one list of experiments: id, module, and what kind of statement each one tests.

``kind`` is ``claim`` for a claim of the paper that an experiment can refute, ``theorem`` for a claim that
holds by construction of the network (measured as an implementation check, its empirical part as the
verdict), ``factors`` for a diagnostic that explains a claim's verdict (D6F: which recipe item decides D6).
The disk claims run once per recipe (``recipes``; a job is then ``"D6/released"``).
``paper_claim=False`` marks an experiment beyond the paper (X1–X4): its claim is our prediction, and
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
    # the disk claims run once per recipe (``geoae.recipes``): these in the paper profile, ``quick_recipes`` in
    # the quick one; () for the experiments whose runs follow no recipe (position, beyond the paper)
    recipes: tuple[str, ...] = ()
    quick_recipes: tuple[str, ...] = ()

    def recipes_for(self, profile: str, chosen: tuple[str, ...] | None = None) -> tuple[str | None, ...]:
        """The recipes this experiment runs under in ``profile`` (``chosen``: those the user asked for, kept in
        the experiment's own order); (None,) when it follows no recipe."""
        if not self.recipes:
            return (None,)
        own = self.quick_recipes if profile == "quick" else self.recipes
        if chosen:
            return tuple(chosen)
        return own

    def load(self):
        """The module implementing the experiment (``ID``, ``STAGES``, ``analyse``, …)."""
        return importlib.import_module(f"geoae.experiments.{self.module}")


SOURCE_RECIPES = ("iclr2018", "released")  # the two sources' set-ups (``geoae.recipes``)
QUICK_ONE = ("iclr2018",)  # the quick profile runs D2-D5 and D7 under the set-up the paper's text states

EXPERIMENTS = (
    Experiment("D1", "d1", "claim", recipes=SOURCE_RECIPES, quick_recipes=SOURCE_RECIPES),
    Experiment("D2", "d2", "claim", recipes=SOURCE_RECIPES, quick_recipes=QUICK_ONE),
    Experiment("D3", "d3", "theorem", recipes=SOURCE_RECIPES, quick_recipes=QUICK_ONE),
    Experiment("D4", "d4", "claim", recipes=SOURCE_RECIPES, quick_recipes=QUICK_ONE),
    Experiment("D5", "d5", "claim", recipes=SOURCE_RECIPES, quick_recipes=QUICK_ONE),
    Experiment("D6", "d6", "claim", recipes=SOURCE_RECIPES, quick_recipes=SOURCE_RECIPES),
    # what decides D6 between the two recipes: one factor at a time (not a claim: its record says which)
    Experiment("D6F", "d6_factors", "factors"),
    Experiment("D7", "d7", "claim", recipes=SOURCE_RECIPES, quick_recipes=QUICK_ONE),
    Experiment("P1", "p1", "theorem"),
    Experiment("P2", "p2", "claim"),
    Experiment("P3", "p3", "claim"),
    Experiment("P3D", "p3_decoder", "claim"),  # P3's second reading: the decoder alone, behind the exact encoder
    # beyond the paper: the theory's predictions for other dimensions, densities and shapes (``beyond.py``)
    Experiment("X1", "x1", "claim", paper_claim=False, quick_seeds=3),
    Experiment("X2", "x2", "claim", paper_claim=False, quick_seeds=3),
    Experiment("X3", "x3", "claim", paper_claim=False, quick_seeds=3),
    Experiment("X4", "x4", "theorem", paper_claim=False),
)
IDS = tuple(e.id for e in EXPERIMENTS)
BY_ID = {e.id: e for e in EXPERIMENTS}


def job_key(exp_id: str, recipe: str | None) -> str:
    """``"D6/released"`` for an experiment run under a recipe, ``"P1"`` otherwise."""
    return exp_id if recipe is None else f"{exp_id}/{recipe}"


def split_key(key: str) -> tuple[str, str | None]:
    """Inverse of ``job_key``."""
    exp_id, _, recipe = key.partition("/")
    return exp_id, recipe or None
