"""Run the paper's experiments (``registry.EXPERIMENTS``) and build the report.

``reproduce(profile, only, out, seeds)``:

1. stage by stage, the runs that every selected experiment declares (``STAGES``: functions returning
   {name: TrainConfig}) are trained together by one ``geoae.train.train_many`` call, so that all cores are
   busy and runs shared between experiments are trained once; finished runs under ``<out>/runs/<profile>``
   are never redone (a run killed midway resumes from its checkpoint). A later stage sees the finished runs
   of the earlier ones (D7 chooses its λ from its search runs, then declares its main runs);
2. ``analyse(ctx, runs)`` measures, draws its figures and returns a ``Result``;
3. ``<out>/<ID>/results.json`` is written atomically, with the configs, seeds and git commit.

An experiment whose results file already exists for the same profile and seeds is not redone, so an
interrupted ``reproduce`` resumes where it stopped. An experiment that raises is recorded as failed (with
the error) and the others still run. The report (``report.md``, ``report.html``) and ``REPRODUCE.md`` are
then generated from the results files alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from .. import interrupts
from ..train import git_commit, train_many, write_json
from ..training.schedule import check_executor
from . import curves, sources
from .common import PROFILES, Context, Initialised
from .registry import BY_ID, IDS, job_key, split_key

DEFAULT_SEEDS = {"quick": 2, "paper": 5, "tiny": 1}  # quick: a first look within 5 minutes


def check_recipes(recipes) -> tuple[str, ...] | None:
    """The recipe names asked for (None: each experiment's own), each one of ``geoae.recipes.NAMES``."""
    from ..recipes import NAMES

    if recipes is None:
        return None
    names = (recipes,) if isinstance(recipes, str) else tuple(recipes)
    bad = [r for r in names if r not in NAMES]
    if bad or not names:
        raise ValueError(f"recipe must be one of {', '.join(NAMES)}, got {bad[0] if bad else recipes!r}")
    return tuple(dict.fromkeys(names))


def check_args(profile: str, only, seeds, recipes=None) -> list[str]:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {', '.join(map(repr, PROFILES))}")
    check_recipes(recipes)
    ids = list(IDS) if not only else [s.upper() for s in only]
    unknown = [i for i in ids if i not in IDS]
    if unknown:
        raise ValueError(f"--only: unknown experiment ids {unknown}; allowed: {', '.join(IDS)}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    return ids


def check_places(out: Path | str, profile: str, ids: list[str] | None) -> None:
    """Raise ValueError (naming the folder) unless ``out``, its ``runs/<profile>`` and the folders of the
    claims ``ids`` (all when None), wherever they exist already, are folders where files can be written: a
    read-only one would fail only after the training."""
    from ..checks import cannot_write

    out = Path(out)
    for folder in (out, out / "runs", out / "runs" / profile, *(out / i for i in (ids or IDS))):
        if folder.exists() or folder.is_symlink():
            why = f"{folder} is not a directory" if not folder.is_dir() else cannot_write(folder)
            if why:
                raise ValueError(f"--out {out}: {why}")


def check_official_weights(ids: list[str] | None) -> None:
    """When ``GEOAE_OFFICIAL_WEIGHTS`` names the authors' weights and D1 or D2 will compare with them (h5py
    installed): the file loads as their model, else ValueError naming the variable and the file (what
    ``--official-weights`` refuses is refused here too, before any work)."""
    import importlib.util

    from ..models import OFFICIAL_WEIGHTS_ENV, load_official_model

    value = os.environ.get(OFFICIAL_WEIGHTS_ENV)
    wanted = ids is None or {"D1", "D2"} & set(ids)
    if not value or not wanted or importlib.util.find_spec("h5py") is None:
        return
    try:
        load_official_model(Path(value).expanduser())
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{OFFICIAL_WEIGHTS_ENV}={value!r}: {' '.join(str(err).split())}") from None


def _train(planned: dict, root: Path, progress: bool, executor: str | None = None, address: str | None = None
           ) -> dict:
    """Train {name: TrainConfig | Initialised}; runs with a given initialisation live under
    ``root/init-<name>/`` (their configs alone do not say how they start), the others under ``root``."""
    plain = {k: v for k, v in planned.items() if not isinstance(v, Initialised)}
    out = dict(zip(plain, train_many(list(plain.values()), root, progress=progress, executor=executor,
                                     address=address), strict=True))
    seeded = {k: v for k, v in planned.items() if isinstance(v, Initialised)}
    for init in sorted({v.name for v in seeded.values()}):
        group = {k: v for k, v in seeded.items() if v.name == init}
        for v in group.values():
            v.prepare(root / f"init-{init}")
        runs = train_many([v.config for v in group.values()], root / f"init-{init}", progress=progress,
                          executor=executor, address=address)
        out |= dict(zip(group, runs, strict=True))
    return out


def train_stages(ids: list[str], contexts: dict[str, Context], *, progress: bool = True, executor: str | None = None,
                 address: str | None = None) -> tuple[dict, dict]:
    """Train every stage of the experiments ``ids``, stage k of all of them at once.

    Returns ({id: {name: TrainResult}}, {id: error text}) for the experiments whose stages failed to be
    listed or trained (one failing experiment does not stop the others: after a joint failure each
    experiment is retried alone).
    """
    done = {i: {} for i in ids}
    errors: dict[str, str] = {}
    stages = {i: BY_ID[split_key(i)[0]].load().STAGES for i in ids}
    for k in range(max((len(s) for s in stages.values()), default=0)):
        planned = {}
        for i in ids:
            if i in errors or k >= len(stages[i]):
                continue
            try:
                planned[i] = stages[i][k](contexts[i], dict(done[i]))
            except Exception as err:  # noqa: BLE001 - reported by the experiment's record
                errors[i] = f"listing its runs (stage {k + 1}) failed: {type(err).__name__}: {err}"
        if not planned:
            continue
        flat = {(i, name): cfg for i, p in planned.items() for name, cfg in p.items()}
        if progress:
            print(f"stage {k + 1}: {len(flat)} runs for {', '.join(planned)} (finished runs are kept)", flush=True)
        root = next(iter(contexts.values())).runs
        try:
            trained = _train(flat, root, progress, executor, address)
            for (i, name), run in trained.items():
                done[i][name] = run
        except Exception:  # noqa: BLE001 - retried experiment by experiment, each with its own error
            for i, p in planned.items():
                try:
                    done[i] |= _train(p, root, progress, executor, address)
                except Exception as err:  # noqa: BLE001
                    errors[i] = f"training stage {k + 1} failed: {type(err).__name__}: {err}"
    return done, errors


def _record(key: str, ctx: Context, runs: dict, error: str | None, t0: float) -> dict:
    """Analyse the finished runs of one experiment (under one recipe) and write its results file; failures are
    recorded."""
    exp_id, recipe = split_key(key)
    exp = BY_ID[exp_id]
    record = {"id": exp_id, "kind": exp.kind, "paper_claim": exp.paper_claim, "profile": ctx.profile,
              "seeds": list(ctx.seeds), "git_commit": git_commit()}
    if recipe is not None:
        from ..recipes import get_recipe

        record |= {"recipe": recipe, "recipe_detail": get_recipe(recipe).describe()}
    record |= sources.record_fields(exp_id)  # paper, source, reading, reading_short, rule_history
    try:
        module = exp.load()
        record |= {"title": module.TITLE, "claim": module.CLAIM, "paper": module.PAPER}
        if error is not None:
            raise RuntimeError(error)
        record["configs"] = {name: r.config.to_dict() for name, r in runs.items()}
        # training time of this experiment's own runs (trained now or earlier: from their metrics), in
        # core-seconds: each run trains on one core
        unique = {(r.out_dir, r.config.digest()): r for r in runs.values()}
        record["train_core_s"] = round(sum(r.metrics.get("train_seconds", 0.0) for r in unique.values()), 1)
        record["n_runs"] = len(unique)
        ctx.out.mkdir(parents=True, exist_ok=True)
        record |= {"status": "ok"} | module.analyse(ctx, runs).record()
        record["run_folders"] = curves.run_folders(runs, ctx.runs.parent.parent)
        drawn = curves.training_curves(ctx.figure(curves.FIGURE), runs)
        if drawn is not None:
            record["figures"] = [*record["figures"], drawn]
    except Exception as err:  # noqa: BLE001 - a failed experiment is reported, the others go on
        record |= {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    record["runtime_s"] = round(time.perf_counter() - t0, 2)  # analysis (and any training done here)
    write_json(ctx.out / "results.json", record)
    return record


def run_experiment(exp_id: str, ctx: Context, *, progress: bool = True) -> dict:
    """Train (all stages) and analyse one experiment (under ``ctx.recipe``), and write its results file; a
    failure is recorded."""
    t0 = time.perf_counter()
    key = job_key(exp_id, ctx.recipe if BY_ID[exp_id].recipes else None)
    done, errors = train_stages([key], {key: ctx}, progress=progress)
    return _record(key, ctx, done[key], errors.get(key), t0)


def is_done(path: Path, profile: str, seeds: tuple[int, ...]) -> bool:
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return rec.get("status") == "ok" and rec.get("profile") == profile and rec.get("seeds") == list(seeds)


def seed_count(exp_id: str, profile: str, seeds: int | None = None) -> int:
    """Seeds of an experiment: ``seeds`` if given, else its own default in the quick profile (``quick_seeds`` of
    the registry: the beyond-the-paper experiments take 3 there), else the profile's."""
    if seeds is not None:
        return seeds
    own = BY_ID[exp_id].quick_seeds if profile == "quick" else None
    return own if own is not None else DEFAULT_SEEDS[profile]


def jobs(ids: list[str], profile: str, recipes: tuple[str, ...] | None = None) -> list[str]:
    """The job keys (``"D6/released"``, ``"P1"``) of the experiments ``ids``: each disk claim once per recipe
    (its own recipes for the profile, or ``recipes``)."""
    return [job_key(i, r) for i in ids for r in BY_ID[i].recipes_for(profile, recipes)]


def reproduce(profile: str = "quick", only=None, out: Path | str = "results", seeds: int | None = None,
              *, progress: bool = True, executor: str | None = None, address: str | None = None,
              recipes=None) -> int:
    """Run the selected experiments, then write the report; returns 0, or 1 if any experiment failed.
    ``executor``/``address``: where the runs train (``train_many``; default ``GEOAE_EXECUTOR``, local).
    ``recipes``: the recipes of the disk claims (default: each experiment's own, ``registry``)."""
    from ..report import build_report

    ids = check_args(profile, only, seeds, recipes)
    recipes = check_recipes(recipes)
    executor = check_executor(executor, address)
    out = Path(out)
    check_places(out, profile, ids)
    check_official_weights(ids)
    seed_list = tuple(range(seeds if seeds is not None else DEFAULT_SEEDS[profile]))
    keys = jobs(ids, profile, recipes)
    own = {k: seed_count(split_key(k)[0], profile, seeds) for k in keys}
    extra = "".join(f", {i}: {n}" for i, n in own.items() if n != len(seed_list))
    print(f"geoae reproduce: profile={profile} seeds={list(seed_list)}{extra} experiments={','.join(keys)} -> {out}/")
    contexts = {k: Context(profile=profile, seeds=tuple(range(own[k])), out=out / k, runs=out / "runs" / profile,
                           recipe=split_key(k)[1]) for k in keys}
    ids = keys
    todo = [i for i in ids if not is_done(contexts[i].out / "results.json", profile, contexts[i].seeds)]
    t0 = time.perf_counter()
    done, errors = train_stages(todo, contexts, progress=progress, executor=executor, address=address)
    failed = []
    for k, exp_id in enumerate(ids, 1):
        interrupts.check()  # Ctrl-C: stop between experiments (the finished ones and their runs are kept)
        if exp_id not in todo:
            print(f"[{k}/{len(ids)}] {exp_id}: already done, kept")
            continue
        print(f"[{k}/{len(ids)}] {exp_id}: analysing", flush=True)
        rec = _record(exp_id, contexts[exp_id], done[exp_id], errors.get(exp_id), time.perf_counter())
        if rec["status"] == "ok":
            print(f"[{k}/{len(ids)}] {exp_id}: {rec['verdict']} ({rec['runtime_s']:.0f} s)", flush=True)
        else:
            failed.append(exp_id)
            print(f"[{k}/{len(ids)}] {exp_id}: FAILED ({rec['error']})", file=sys.stderr, flush=True)
    print(f"reproduce: {time.perf_counter() - t0:.0f} s")
    interrupts.check()
    paths = build_report(out)
    print("report: " + ", ".join(str(p) for p in paths))
    if failed:  # on standard error, which --quiet keeps: a failure is never silent
        print(f"geoae reproduce: error: {len(failed)} experiment(s) failed: {', '.join(failed)}; their errors are in "
              f"{out}/<ID>/results.json and the report", file=sys.stderr)
    return 1 if failed else 0
