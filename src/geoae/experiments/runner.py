"""Run the paper's experiments (D1–D7, P1–P3) and build the report.

``reproduce(profile, only, out, seeds)`` runs each selected experiment in turn:

1. ``configs(ctx)`` lists the training runs; ``geoae.train.train_many`` trains those not yet finished
   under ``<out>/runs/`` (a run killed midway resumes from its checkpoint);
2. ``analyse(ctx, runs)`` measures, draws its figures and returns a ``Result``;
3. ``<out>/<ID>/results.json`` is written atomically, with the config, seeds and git commit.

An experiment whose results file already exists for the same profile and seeds is not redone, so an
interrupted ``reproduce`` resumes where it stopped. An experiment that raises is recorded as failed
(with the error) and the others still run. The report (``report.md``, ``report.html``) and
``REPRODUCE.md`` are then generated from the results files alone.
"""

from __future__ import annotations

import importlib
import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from .. import interrupts
from ..train import git_commit, train_many, write_json
from .common import PROFILES, Context

EXPERIMENTS = ("D1", "D2", "D3", "D4", "D5", "D6", "D7", "P1", "P2", "P3")
DEFAULT_SEEDS = {"quick": 3, "paper": 5, "tiny": 1}


def load_experiment(exp_id: str):
    """The module implementing claim ``exp_id`` (e.g. ``geoae.experiments.d4``)."""
    return importlib.import_module(f"geoae.experiments.{exp_id.lower()}")


def check_args(profile: str, only, seeds) -> list[str]:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {', '.join(map(repr, PROFILES))}")
    ids = list(EXPERIMENTS) if not only else [s.upper() for s in only]
    unknown = [i for i in ids if i not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"--only: unknown experiment ids {unknown}; allowed: {', '.join(EXPERIMENTS)}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    return ids


def run_experiment(exp_id: str, ctx: Context, *, progress: bool = True) -> dict:
    """Run one experiment and write its results file; a failure is recorded, not raised."""
    record = {"id": exp_id, "profile": ctx.profile, "seeds": list(ctx.seeds), "git_commit": git_commit()}
    t0 = time.perf_counter()
    try:
        module = load_experiment(exp_id)
        record |= {"title": module.TITLE, "claim": module.CLAIM, "paper": module.PAPER}
        ctx.out.mkdir(parents=True, exist_ok=True)
        configs = module.configs(ctx)
        record["configs"] = [c.to_dict() for c in configs]
        runs = train_many(configs, ctx.runs, progress=progress)
        # training time of this experiment's own runs (trained here, in the prefetch, or earlier: from their
        # metrics), in core-seconds: each run trains on one core
        unique = {r.config.digest(): r for r in runs}
        record["train_core_s"] = round(sum(r.metrics.get("train_seconds", 0.0) for r in unique.values()), 1)
        result = module.analyse(ctx, runs)
        # results.json is written with sorted keys: keep the experiment's own order of its numbers
        record |= {"status": "ok", "number_order": list(result.numbers)} | asdict(result)
    except Exception as err:  # noqa: BLE001 - a failed experiment is reported, the others go on
        record |= {"status": "failed", "error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc()}
    record["runtime_s"] = round(time.perf_counter() - t0, 2)  # analysis (and any training done here)
    write_json(ctx.out / "results.json", record)
    return record


def is_done(path: Path, profile: str, seeds: tuple[int, ...]) -> bool:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return rec.get("status") == "ok" and rec.get("profile") == profile and rec.get("seeds") == list(seeds)


def prefetch(ids: list[str], contexts: dict[str, Context], *, progress: bool = True) -> None:
    """Train the runs of all the experiments to do in one ``train_many`` call (shared runs once, all cores
    busy). A failure here is not final: each experiment then retrains what it needs and records its own
    error, so one broken experiment does not stop the others."""
    configs = []
    for exp_id in ids:
        try:
            configs += load_experiment(exp_id).configs(contexts[exp_id])
        except Exception as err:  # noqa: BLE001 - reported by run_experiment
            print(f"      {exp_id}: listing its runs failed ({type(err).__name__}: {err})", flush=True)
    if not configs:
        return
    unique = len({c.digest() for c in configs})
    print(f"training {unique} runs for {', '.join(ids)} (finished runs are kept)", flush=True)
    try:
        train_many(configs, next(iter(contexts.values())).runs, progress=progress)
    except Exception as err:  # noqa: BLE001 - reported by run_experiment
        print(f"      training stopped ({type(err).__name__}: {err}); each experiment retries its own runs",
              flush=True)


def reproduce(profile: str = "quick", only=None, out: Path | str = "results", seeds: int | None = None,
              *, progress: bool = True) -> int:
    """Run the selected experiments, then write the report; returns 0, or 1 if any experiment failed."""
    from ..report import build_report

    ids = check_args(profile, only, seeds)
    out = Path(out)
    seed_list = tuple(range(seeds if seeds is not None else DEFAULT_SEEDS[profile]))
    print(f"geoae reproduce: profile={profile} seeds={list(seed_list)} experiments={','.join(ids)} -> {out}/")
    contexts = {i: Context(profile=profile, seeds=seed_list, out=out / i, runs=out / "runs" / profile) for i in ids}
    todo = [i for i in ids if not is_done(contexts[i].out / "results.json", profile, seed_list)]
    prefetch(todo, contexts, progress=progress)
    failed = []
    for k, exp_id in enumerate(ids, 1):
        interrupts.check()  # Ctrl-C: stop between experiments (the finished ones and their runs are kept)
        ctx = contexts[exp_id]
        if exp_id not in todo:
            print(f"[{k}/{len(ids)}] {exp_id}: already done, kept")
            continue
        print(f"[{k}/{len(ids)}] {exp_id}: analysing", flush=True)
        rec = run_experiment(exp_id, ctx, progress=progress)
        if rec["status"] == "ok":
            print(f"[{k}/{len(ids)}] {exp_id}: {rec['verdict']} ({rec['runtime_s']:.0f} s)", flush=True)
        else:
            failed.append(exp_id)
            print(f"[{k}/{len(ids)}] {exp_id}: FAILED ({rec['error']})", flush=True)
    interrupts.check()
    paths = build_report(out)
    print("report: " + ", ".join(str(p) for p in paths))
    return 1 if failed else 0
