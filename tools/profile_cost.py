"""What a ``geoae reproduce`` profile costs in core-seconds of training, estimated from measured steps.

    python tools/profile_cost.py [--profile paper] [--calibration 100] [--measured RESULTS/runs/PROFILE]

Lists the profile's training runs as ``reproduce`` does (every job of every experiment, each disk claim once
per recipe, stage 1 of each; D7's stage-2 runs, the seeds beyond its λ search at the chosen λ, with a
placeholder λ: a step costs the same at any λ), counts runs shared between jobs once, groups them by kind
(the config with its seed, data seed, λ and length set aside), measures the CPU seconds of one training step
of each kind on one thread (``calibration`` steps after a warm-up, ``time.process_time``, so that the
machine's other load does not count), and sums steps × seconds per step. The wall-clock estimate divides by
the cores ``train_many`` keeps busy (one run per core) and cannot be below the longest run. With
``--measured``, also sums the ``train_seconds`` of every finished run in that directory (each run's
wall-clock time on its core) for comparison. Runs on the kernel ``GEOAE_MARCH`` / ``GEOAE_KERNEL`` select.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from geoae.experiments import d7
from geoae.experiments.common import Context, Initialised
from geoae.experiments.registry import BY_ID, IDS, split_key
from geoae.experiments.runner import DEFAULT_SEEDS, jobs, seed_count
from geoae.training import TrainConfig, run_name, train


def job_runs(key: str, profile: str, tmp: Path) -> list[TrainConfig]:
    """The runs one job (``"D6/released"``, ``"P2"``) trains in ``profile``."""
    exp_id, recipe = split_key(key)
    ctx = Context(profile=profile, seeds=tuple(range(seed_count(exp_id, profile))), out=tmp / key,
                  runs=tmp / "runs", recipe=recipe)
    stages = BY_ID[exp_id].load().STAGES
    if not stages:
        return []
    runs = [r.config if isinstance(r, Initialised) else r for r in stages[0](ctx, {}).values()]
    if exp_id == "D7":  # stage 2: the seeds beyond the search's, at the λ it chooses (any λ costs the same)
        runs += [d7._hole(ctx, s, reg, 1e-4) for reg in d7.regularisers(ctx)[1:]
                 for s in ctx.seeds[len(d7.search_seeds(ctx)):]]
    return runs


def profile_runs(profile: str) -> dict[str, list[TrainConfig]]:
    with tempfile.TemporaryDirectory() as tmp:
        return {key: job_runs(key, profile, Path(tmp)) for key in jobs(list(IDS), profile)}


def kind(config: TrainConfig) -> TrainConfig:
    weight = 1e-4 if config.regulariser != "none" else 0.0
    return dataclasses.replace(config, seed=0, data_seed=None, reg_weight=weight, iterations=1)


def label(k: TrainConfig) -> str:
    """A kind of run in a few words: network, image size, batch, regulariser, the features that cost."""
    m = k.model
    extras = (["coord"] if m.coord else []) + ([f"{m.encoder} encoder"] if m.encoder != "learned" else [])
    return " ".join([m.arch, f"{m.size}", f"batch {k.batch_size}", k.regulariser, *extras,
                     *([k.optimizer] if k.optimizer != "adam" else []), *([k.keep] if k.keep != "last" else [])])


def step_seconds(config: TrainConfig, calibration: int, warmup: int = 5) -> float:
    """CPU seconds of one training step of ``config`` on one thread."""
    def cpu(iterations: int) -> float:
        t0 = time.process_time()
        train(dataclasses.replace(config, iterations=iterations, log_every=iterations), threads=1, progress=False)
        return time.process_time() - t0

    cpu(warmup)  # data set rendered and cached, kernel loaded
    return (cpu(warmup + calibration) - cpu(warmup)) / calibration


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="paper", choices=tuple(DEFAULT_SEEDS))
    p.add_argument("--calibration", type=int, default=100, help="timed steps per kind of run")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores train_many keeps busy")
    p.add_argument("--measured", type=Path, default=None, help="a runs directory of the same profile")
    args = p.parse_args(argv)
    per_job = profile_runs(args.profile)
    unique = {run_name(c): c for runs in per_job.values() for c in runs}
    kinds = {kind(c) for c in unique.values()}
    cost = {k: step_seconds(k, args.calibration) for k in sorted(kinds, key=lambda k: k.digest())}
    seconds = {name: c.iterations * cost[kind(c)] for name, c in unique.items()}
    rows = {key: {"runs": len(runs), "steps": sum(c.iterations for c in runs),
                  "core_s": round(sum(seconds[run_name(c)] for c in runs), 1)} for key, runs in per_job.items()}
    by_kind: dict = {}
    for name, c in unique.items():
        row = by_kind.setdefault(kind(c), {"runs": 0, "steps": 0, "core_s": 0.0})
        row["runs"], row["steps"] = row["runs"] + 1, row["steps"] + c.iterations
        row["core_s"] += seconds[name]
    kind_rows = [{"kind": label(k), "ms_per_step": round(1e3 * cost[k], 3), **r, "core_s": round(r["core_s"], 1)}
                 for k, r in sorted(by_kind.items(), key=lambda kr: -kr[1]["core_s"])]
    core_s = sum(seconds.values())
    wall = max(core_s / args.cores, max(seconds.values()))
    out = {"profile": args.profile, "kinds": len(kinds), "unique_runs": len(unique),
           "steps": sum(c.iterations for c in unique.values()), "core_s": round(core_s, 1),
           "longest_run_s": round(max(seconds.values()), 1), "cores": args.cores, "wall_s_estimate": round(wall, 1),
           "per_job": rows, "per_kind": kind_rows}
    if args.measured is not None:
        found = [json.loads(m.read_text())["train_seconds"] for m in args.measured.glob("*/metrics.json")]
        out["measured"] = {"runs": len(found), "train_seconds": round(sum(found), 1)}
    print(json.dumps(out, indent=1))
    print(f"profile {args.profile}: {len(unique)} runs, {out['steps']:,} steps, {len(kinds)} kinds of run; "
          f"estimated {core_s:.0f} core-s of training = {wall / 60:.1f} min on {args.cores} cores (the longest run "
          f"{out['longest_run_s']:.0f} s); the costliest kinds:\n"
          + "\n".join(f"  {r['core_s']:8.1f} core-s  {r['runs']:4d} runs  {r['ms_per_step']:7.3f} ms/step  {r['kind']}"
                      for r in kind_rows[:12])
          + (f"; measured {out['measured']['train_seconds']:.0f} s over {out['measured']['runs']} runs"
             if "measured" in out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
