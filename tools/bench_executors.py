"""The cost of the ray executor against the local one: the same sweep, wall-clock time, same weights.

    python tools/bench_executors.py [--runs 8] [--iterations 200] [--repeats 2] [--address HOST:PORT]

Trains K runs (``paper64``, 64 × 64, batch 64, seeds 0..K-1) with ``train_many(executor="local")`` (one
worker per core) and with ``train_many(executor="ray")`` on the cluster at ``--address`` (default
``RAY_ADDRESS``, else a Ray started here with this machine's cores), in turn, each sweep into a fresh
directory; the first Ray sweep also starts the Ray worker processes (imports included).
Prints the times (Ray's start-up or connection apart), the overhead per run, and fails (exit 1) unless every
Ray run has exactly the local run's weights. Needs ``pip install 'geoae[ray]'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time

import torch

from geoae import training as T
from geoae.data import DiskData
from geoae.models import ModelConfig
from geoae.training import ray_executor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--address", default=None)
    args = p.parse_args(argv)
    base = T.TrainConfig(model=ModelConfig(), data=DiskData(n=1000), iterations=args.iterations, log_every=50,
                         checkpoint_every=100)
    configs = [dataclasses.replace(base, seed=s) for s in range(args.runs)]
    T.train(dataclasses.replace(base, iterations=1))  # compile / load the kernel once, outside the timings
    out = {"runs": args.runs, "iterations": args.iterations, "workers": T.default_workers()}
    t0 = time.perf_counter()
    ray = ray_executor.connect(args.address)
    out |= {"ray_connect_s": time.perf_counter() - t0, "ray_cpus": ray.cluster_resources().get("CPU", 0)}
    times, results = {"local": [], "ray": []}, {}
    for _ in range(args.repeats):  # interleaved: a change in the machine's load touches both
        for executor in ("local", "ray"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                runs = T.train_many(configs, tmp, executor=executor)
                times[executor].append(time.perf_counter() - t0)
                results[executor] = [r.model.state_dict() for r in runs]
    same = all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
               for a, b in zip(results["local"], results["ray"], strict=True))
    local, warm = statistics.median(times["local"]), statistics.median(times["ray"][1:] or times["ray"])
    out |= {"local_s": times["local"], "ray_s": times["ray"], "same_weights": same,
            "overhead_per_run_s": (warm - local) / args.runs,  # Ray's workers already started
            "first_sweep_overhead_per_run_s": (times["ray"][0] - local) / args.runs}
    print(json.dumps(out, indent=1))
    print(f"{args.runs} runs of {args.iterations} steps: local {local:.2f} s ({out['workers']} workers), ray "
          f"{warm:.2f} s ({out['ray_cpus']:g} CPUs; first sweep {times['ray'][0]:.2f} s, connecting "
          f"{out['ray_connect_s']:.1f} s); overhead per run {out['overhead_per_run_s']:.3f} s (first sweep "
          f"{out['first_sweep_overhead_per_run_s']:.3f} s); weights {'identical' if same else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
