"""The work of ``geoae``'s sub-commands: ``run_<command>(args, plan)`` calls the functions a Python user would,
after ``check_<command>`` (``checks.py``) has accepted the input; ``COMMANDS`` pairs them."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from .checks import (
    check_bench,
    check_convert_keras,
    check_data,
    check_explore,
    check_export,
    check_info,
    check_report,
    check_reproduce,
    check_theory,
    check_train,
)


def run_data(args, _) -> int:
    import numpy as np
    import torch

    from .. import data
    from ..plots import contact_sheet
    from ..training.rundir import write_bytes_atomic

    if args.kind == "disks":
        if args.test:
            radii = data.test_radii(args.n, size=args.size, r_min=args.r_min, r_max=args.r_max)
            images = data.render_disks(radii, size=args.size, rendering=args.rendering, sigma=args.sigma)
        else:
            images, radii = data.make_disks(
                args.n, size=args.size, rendering=args.rendering, sigma=args.sigma, r_min=args.r_min,
                r_max=args.r_max, exclude=tuple(args.exclude), seed=args.seed,
            )
        params, order, labels = {"radii": radii.numpy()}, radii.argsort(), [f"r={r:.1f}" for r in radii]
    else:
        images, pos = data.make_diracs(
            args.n, size=args.size, ndim=args.ndim, scheme=args.scheme, fraction=args.fraction,
            hole=args.hole, stride=args.stride, quadrant=args.quadrant, seed=args.seed,
        )
        params, order = {"positions": pos.numpy()}, None
        labels = [f"p={tuple(p.tolist()) if p.ndim else int(p)}" for p in pos]
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images.numpy(), config=json.dumps(meta), **params)
    write_bytes_atomic(args.out, buffer.getvalue())
    pick = order[:: max(1, len(order) // 32)] if order is not None else range(min(32, len(images)))
    pick = [int(i) for i in pick][:32]
    shown = images[torch.as_tensor(pick, dtype=torch.long)]
    sheet = contact_sheet(shown, args.out.with_suffix(".png"), titles=[labels[i] for i in pick])
    print(f"wrote {args.out} ({tuple(images.shape)}) and {sheet}")
    return 0


def run_theory(args, _) -> int:
    import numpy as np

    from .. import theory
    from ..plots import line_plot
    from ..training import write_json

    R = args.radius
    rho = np.linspace(0, 1.2 * R, 601)
    f_k = theory.closed_form_profile(rho, R, k=args.k)
    _, f_num, lam = theory.eigen_profile(R, k=args.k)
    out = args.out
    values = {"R": R, "k": args.k, "rho": rho.tolist(), "f_hat": f_k.tolist(), "eigenvalue": lam}
    if args.k == 2:
        values |= {"x1": theory.airy_root(), "optimal_energy": theory.optimal_energy(R),
                   "h_hat": theory.h_hat(rho, R).tolist()}
    write_json(out / "theory.json", values)
    fig = line_plot(out / "profile.png", rho, {"closed form f̂(ρ)": f_k}, xlabel="ρ (pixels)",
                    ylabel="f̂(ρ)", title=f"Optimal bias-free decoder profile, k={args.k}, R={R:g}")
    print(f"wrote {out / 'theory.json'} and {fig}")
    if args.k == 2:
        print(f"x1 = {values['x1']:.6f}, optimal energy (R/x1)^3 = {values['optimal_energy']:.6g}")
    return 0


def run_train(args, config) -> int:
    from ..training import is_finished, train

    if args.verbose:
        print(json.dumps(config.to_dict(), indent=2))
    print(f"training {config.summary()} -> {args.out}")
    trackers = []
    with contextlib.ExitStack() as stack:
        if is_finished(args.out):  # a finished run: training is a no-op, and so is tracking
            if args.tensorboard is not None or args.mlflow is not None:
                print(f"{args.out} is already finished: nothing new to track (`geoae export {args.out}` writes "
                      "its TensorBoard run)")
        else:
            if args.tensorboard is not None:
                from ..tracking import TensorBoardLogger

                trackers.append(stack.enter_context(TensorBoardLogger(args.tensorboard / args.out.name, config)))
            if args.mlflow is not None:
                from ..tracking import MLflowLogger

                trackers.append(stack.enter_context(MLflowLogger(args.out.name, tracking_uri=args.mlflow,
                                                                 config=config)))
        result = train(config, args.out, progress=not args.quiet, callbacks=trackers)
        for tracker in trackers:
            tracker.finish(result.metrics, args.out)
    print(f"finished: train MSE {result.metrics['train_mse']:.4g}, run in {args.out}")
    if args.tensorboard is not None and trackers:
        print(f"TensorBoard: tensorboard --logdir {args.tensorboard}")
    if args.mlflow is not None and trackers:
        print(f"MLflow: mlflow ui --backend-store-uri {args.mlflow}")
    return 0


def run_reproduce(args, ids) -> int:
    from ..experiments.runner import reproduce

    with _official_weights(args.official_weights, args.out, ids):
        return reproduce(profile=args.profile, only=ids, out=args.out, seeds=args.seeds, progress=not args.quiet,
                         executor=args.executor, address=args.address, recipes=args.recipe)


@contextlib.contextmanager
def _official_weights(path: Path | None, out: Path, ids: list[str] | None):
    """With ``--official-weights`` (checked by ``check_reproduce``): set GEOAE_OFFICIAL_WEIGHTS for the run
    (restored after), and let D1/D2 results that lack the comparison be redone (their training runs are kept)."""
    from ..models import OFFICIAL_WEIGHTS_ENV
    from ..report import lacks_official_comparison

    if path is None:
        yield
        return
    for exp_id in ("D1", "D2"):
        results = out / exp_id / "results.json"
        if (ids is None or exp_id in ids) and results.is_file():
            try:
                rec = json.loads(results.read_text())
                stale = isinstance(rec, dict) and lacks_official_comparison(rec)
            except (OSError, ValueError):
                stale = False
            if stale:
                print(f"{exp_id}: its results lack the comparison with the authors' model; redone")
                results.unlink()
    old = os.environ.get(OFFICIAL_WEIGHTS_ENV)
    os.environ[OFFICIAL_WEIGHTS_ENV] = str(path.resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(OFFICIAL_WEIGHTS_ENV, None)
        else:
            os.environ[OFFICIAL_WEIGHTS_ENV] = old


def run_report(args, _) -> int:
    from ..report import build_report

    for path in build_report(args.out, reproduce_md=args.reproduce_md, compare=args.compare):
        print(f"wrote {path}")
    return 0


def run_export(args, runs) -> int:
    from ..tracking import export_tensorboard

    for done in export_tensorboard(args.run_dirs, args.out):
        if done.points == 0:
            print(f"{done.run_dir}: no training history (a converted model, e.g. the authors'): only its "
                  f"hyper-parameters, final metrics and reconstruction -> {done.folder}")
        else:
            state = "" if done.finished else " (unfinished: curves only)"
            print(f"{done.run_dir}: {done.points} points per curve{state} -> {done.folder}")
    print(f"wrote {len(runs)} TensorBoard run(s) under {args.out}/ (tensorboard --logdir {args.out})")
    return 0


def run_explore(args, text: str) -> int:
    from ..training.rundir import write_bytes_atomic

    write_bytes_atomic(args.out, text.encode("utf-8"))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): open it in any browser, no server needed")
    return 0


def run_bench(args, _) -> int:
    from ..bench import main as bench_main

    if getattr(args, "level", "native") == "native":
        return bench_main(args)
    import subprocess
    import sys

    from ..environment import level_environment

    # torch's libraries read their limits once, at their first use: a fresh process starts with them set
    env = os.environ | level_environment(args.level)
    return subprocess.run([sys.executable, "-m", "geoae", *bench_child_argv(args)], env=env, check=False).returncode


def bench_child_argv(args) -> list[str]:
    """The ``geoae bench`` command line that gives ``args`` again but ``--level`` (native), read off the bench
    parser's own options, so that every option (``--quiet`` included) reaches the child."""
    import argparse

    from .parser import _subparsers, get_parser

    parser = next(p for p in _subparsers(get_parser()) if p.prog.split()[-1] == "bench")
    argv = ["bench"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "level"):
            continue
        option, value = max(action.option_strings, key=len), getattr(args, action.dest, None)
        if isinstance(action, argparse._StoreTrueAction):
            argv += [option] * bool(value)
        elif value is not None:
            argv += [option, str(value)]
    return argv


def run_info(args, _) -> int:
    from ..environment import describe, format_description

    info = describe()
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


def run_convert_keras(args, _) -> int:
    from ..official import convert_keras

    out = convert_keras(args.h5, args.out)
    print(f"wrote the run directory {out} (arch keras63); load it with geoae.training.load_run")
    return 0


COMMANDS = {"data": (check_data, run_data), "theory": (check_theory, run_theory), "train": (check_train, run_train),
            "reproduce": (check_reproduce, run_reproduce), "report": (check_report, run_report),
            "export": (check_export, run_export),
            "explore": (check_explore, run_explore), "bench": (check_bench, run_bench),
            "info": (check_info, run_info), "convert-keras": (check_convert_keras, run_convert_keras)}


