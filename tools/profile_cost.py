"""What a ``geoae reproduce`` profile costs in core-hours of training, estimated from measured steps.

    python tools/profile_cost.py --profile paper [--calibration 100] [--measured RESULTS/runs/PROFILE]

Lists the profile's training runs (every experiment's ``configs``, runs shared between experiments once;
D7's λ-search candidates, which D7 trains while listing its runs, are built from its search plan with
placeholder λ values), groups them by kind (the config with its seed, λ and length set aside), measures
the CPU seconds of one training step of each kind on one core (``calibration`` steps after a warm-up,
``time.process_time``, so the machine's other load does not count), and sums steps × seconds per step.
With ``--measured``, also sums the ``train_seconds`` of every finished run in that directory (wall-clock
time of each run on its core) for comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from geoae.experiments import d7
from geoae.experiments.common import Context
from geoae.experiments.runner import DEFAULT_SEEDS, EXPERIMENTS, load_experiment
from geoae.training import TrainConfig, run_name, train


def d7_plan(ctx: Context) -> list[TrainConfig]:
    """D7's runs without training its reference: the λ grid's values do not change a step's cost."""
    regs = d7.regularisers(ctx)
    search = [d7._hole_config(ctx, seed=d7.SEARCH_SEED, iterations=d7._search_iterations(ctx), regulariser=reg,
                              reg_weight=factor) for reg in regs[1:] for factor in d7.GRID_FACTORS]
    return [d7.reference_config(ctx), *search, *d7.main_configs(ctx, {"none": 0.0} | {r: 1.0 for r in regs[1:]})]


def profile_runs(profile: str) -> dict[str, list[TrainConfig]]:
    seeds = tuple(range(DEFAULT_SEEDS[profile]))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for exp in EXPERIMENTS:
            ctx = Context(profile=profile, seeds=seeds, out=Path(tmp) / exp, runs=Path(tmp) / "runs")
            out[exp] = d7_plan(ctx) if exp == "D7" else list(load_experiment(exp).configs(ctx))
    return out


def kind(config: TrainConfig) -> TrainConfig:
    weight = 1.0 if config.regulariser != "none" else 0.0
    return dataclasses.replace(config, seed=0, data_seed=None, reg_weight=weight, iterations=1)


def step_seconds(config: TrainConfig, calibration: int, warmup: int = 5) -> float:
    """CPU seconds of one training step of ``config`` on one thread."""
    def cpu(iterations: int) -> float:
        t0 = time.process_time()
        train(dataclasses.replace(config, iterations=iterations, log_every=iterations), threads=1)
        return time.process_time() - t0

    cpu(warmup)  # data set rendered and cached, kernel loaded
    return (cpu(warmup + calibration) - cpu(warmup)) / calibration


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="paper", choices=tuple(DEFAULT_SEEDS))
    p.add_argument("--calibration", type=int, default=100, help="timed steps per kind of run")
    p.add_argument("--measured", type=Path, default=None, help="a runs directory of the same profile")
    args = p.parse_args(argv)
    per_exp = profile_runs(args.profile)
    unique = {run_name(c): c for runs in per_exp.values() for c in runs}
    kinds = {kind(c) for c in unique.values()}
    cost = {k: step_seconds(k, args.calibration) for k in sorted(kinds, key=lambda k: k.digest())}
    seconds = {name: c.iterations * cost[kind(c)] for name, c in unique.items()}
    rows = {exp: {"runs": len(runs), "steps": sum(c.iterations for c in runs),
                  "core_s": sum(seconds[run_name(c)] for c in runs)} for exp, runs in per_exp.items()}
    out = {"profile": args.profile, "seeds": DEFAULT_SEEDS[args.profile], "kinds": len(kinds),
           "unique_runs": len(unique), "steps": sum(c.iterations for c in unique.values()),
           "core_s": sum(seconds.values()), "longest_run_s": max(seconds.values()), "per_experiment": rows}
    if args.measured is not None:
        found = [json.loads(m.read_text())["train_seconds"] for m in args.measured.glob("*/metrics.json")]
        out["measured"] = {"runs": len(found), "train_seconds": sum(found)}
    print(json.dumps(out, indent=1))
    print(f"profile {args.profile}: {len(unique)} runs, {out['steps']:,} steps, {len(kinds)} kinds of run; "
          f"estimated {out['core_s']:.0f} core-s = {out['core_s'] / 3600:.2f} core-hours of training, the longest "
          f"run {out['longest_run_s']:.0f} s"
          + (f"; measured {out['measured']['train_seconds']:.0f} s over {out['measured']['runs']} runs"
             if "measured" in out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
