"""The ``geoae`` command line: data, theory, train, reproduce, bench.

Each sub-command is a thin layer over the library: it parses, validates (bad input is a one-line error
with exit code 2, never a traceback), then calls the same functions a Python user would.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


class UsageError(ValueError):
    """Raised for bad command-line input; reported as one line with exit code 2."""


def _interval(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI (two numbers), got {text!r}") from None
    return lo, hi


def _int_interval(text: str) -> tuple[int, int]:
    lo, hi = _interval(text)
    if lo != int(lo) or hi != int(hi):
        raise argparse.ArgumentTypeError(f"expected two integers LO:HI, got {text!r}")
    return int(lo), int(hi)


# ----------------------------------------------------------------------------------------- parsers


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="geoae",
        description="How convolutional autoencoders encode size and position (Newson et al., JMIV 2020).",
        epilog="Start with `geoae reproduce --profile quick` (a few minutes on a laptop CPU) and open "
        "results/report.html.",
    )
    p.add_argument("--version", action="version", version=f"geoae {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="generate a dataset (.npz with ground truth + a PNG contact sheet)")
    dsub = data.add_subparsers(dest="kind", required=True, metavar="KIND")
    disks = dsub.add_parser("disks", help="centred disks of random radius (size attribute)")
    disks.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    disks.add_argument("--size", type=int, default=64, help="image side m (default 64)")
    disks.add_argument("--rendering", default="area", help="binary | area (default) | gaussian")
    disks.add_argument("--sigma", type=float, default=0.5, help="blur of the gaussian rendering, px")
    disks.add_argument("--r-min", type=float, default=0.0)
    disks.add_argument("--r-max", type=float, default=None, help="largest radius (default m/2)")
    disks.add_argument("--exclude", type=_interval, action="append", default=[], metavar="LO:HI",
                       help="radius interval left out of the sample, e.g. 11:18 (repeatable)")
    disks.add_argument("--test", action="store_true", help="evenly spaced radii instead of random ones")
    disks.add_argument("--seed", type=int, default=0)
    disks.add_argument("--out", required=True, type=Path, help="output .npz file")
    diracs = dsub.add_parser("diracs", help="one-hot signals / images (position attribute)")
    diracs.add_argument("--size", type=int, default=64, help="signal length / image side (default 64)")
    diracs.add_argument("--ndim", type=int, default=1, help="1 (signals) or 2 (images)")
    diracs.add_argument("--scheme", default="all", help="all | random | hole | stride | quadrant")
    diracs.add_argument("--fraction", type=float, default=0.5, help="kept fraction for --scheme random")
    diracs.add_argument("--hole", type=_int_interval, default=None, metavar="LO:HI",
                        help="positions LO..HI-1 removed for --scheme hole")
    diracs.add_argument("--stride", type=int, default=2, help="grid step for --scheme stride")
    diracs.add_argument("--quadrant", type=int, default=3, help="held-out quadrant 0-3 for --scheme quadrant")
    diracs.add_argument("--n", type=int, default=None, help="samples with replacement (default: each once)")
    diracs.add_argument("--seed", type=int, default=0)
    diracs.add_argument("--out", required=True, type=Path, help="output .npz file")

    th = sub.add_parser("theory", help="the closed-form optimal bias-free decoder (Airy profile) for radius R")
    th.add_argument("--radius", type=float, default=32.0, help="largest training radius R (default 32)")
    th.add_argument("--k", type=int, default=2, help="dimension of the ball: 1, 2 (disks, default) or 3")
    th.add_argument("--out", type=Path, default=Path("results/theory"), help="output directory")

    tr = sub.add_parser("train", help="train one autoencoder; the run directory can be resumed")
    tr.add_argument("--config", type=Path, help="JSON file with a TrainConfig (options below override it)")
    tr.add_argument("--arch", help="paper64 | paper1d | keras63")
    tr.add_argument("--size", type=int, help="image side / signal length")
    tr.add_argument("--latent-dim", type=int, help="code dimension d")
    tr.add_argument("--no-bias", action="store_true", help="remove every bias (the paper's ablation)")
    tr.add_argument("--alpha", type=float, help="leaky ReLU slope")
    tr.add_argument("--upsample", help="zeros | nearest")
    tr.add_argument("--data", choices=("disks", "diracs"), help="training data kind")
    tr.add_argument("--n-train", type=int, help="size of the fixed training set")
    tr.add_argument("--fresh", action="store_true", help="fresh disks every batch instead of a fixed set")
    tr.add_argument("--exclude", type=_interval, action="append", metavar="LO:HI",
                    help="radius interval left out of training, e.g. 11:18")
    tr.add_argument("--r-max", type=float, help="largest training radius")
    tr.add_argument("--iterations", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--regulariser", help="none | locality | l2_all | l2_encoder | contractive")
    tr.add_argument("--reg-weight", type=float, help="λ, the weight of the regulariser")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--out", type=Path, required=True, help="run directory (re-running resumes it)")

    rp = sub.add_parser("reproduce", help="run the paper's experiments and write the report")
    rp.add_argument("--profile", default="quick", help="quick (minutes on 2 cores) | paper (the paper's scale)")
    rp.add_argument("--only", default=None, help="comma-separated claim ids, e.g. D4,P1")
    rp.add_argument("--out", type=Path, default=Path("results"), help="results directory (default results/)")
    rp.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")

    rep = sub.add_parser("report", help="rebuild report.md, report.html and REPRODUCE.md from results files")
    rep.add_argument("--out", type=Path, default=Path("results"), help="results directory (default results/)")
    rep.add_argument("--reproduce-md", type=Path, default=None,
                     help="also write REPRODUCE.md here (e.g. the repository's REPRODUCE.md)")
    rep.add_argument("--compare", type=Path, default=None,
                     help="results directory of another profile (e.g. the paper profile's): its verdicts and "
                     "headline numbers are shown next to these")

    be = sub.add_parser("bench", help="training throughput: geoae's trainer against plain PyTorch")
    be.add_argument("--batch-size", type=int, default=64)
    be.add_argument("--threads", type=int, default=None,
                    help="torch threads of the plain reference and torch.mm (default: all cores); geoae's "
                    "fused kernels use GEOAE_THREADS (default: all cores)")
    be.add_argument("--no-bias", action="store_true")
    be.add_argument("--steps", type=int, default=200, help="timed steps per repeat")
    be.add_argument("--repeats", type=int, default=5)
    be.add_argument("--sweep", type=int, default=15,
                    help="K runs (seeds x the five regularisers) for the sweep figure (0 to skip)")
    be.add_argument("--sweep-steps", type=int, default=300, help="steps of each sweep run")
    be.add_argument("--sweep-repeats", type=int, default=1, help="repeats of the sweep timing (median)")
    be.add_argument("--size", type=int, default=64, help="image side m (default 64, the paper's)")
    be.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


# ---------------------------------------------------------------------------------------- commands


def cmd_data(args) -> int:
    import numpy as np
    import torch

    from . import data
    from .plots import contact_sheet

    if args.out.suffix != ".npz":
        raise UsageError(f"--out must name a .npz file, got {str(args.out)!r}")
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    np.savez_compressed(tmp, images=images.numpy(), config=json.dumps(meta), **params)
    tmp.replace(args.out)
    pick = order[:: max(1, len(order) // 32)] if order is not None else range(min(32, len(images)))
    pick = [int(i) for i in pick][:32]
    shown = images[torch.as_tensor(pick, dtype=torch.long)]
    sheet = contact_sheet(shown, args.out.with_suffix(".png"), titles=[labels[i] for i in pick])
    print(f"wrote {args.out} ({tuple(images.shape)}) and {sheet}")
    return 0


def cmd_theory(args) -> int:
    import numpy as np

    from . import theory
    from .plots import line_plot
    from .train import write_json

    R = args.radius
    rho = np.linspace(0, 1.2 * R, 601) if R > 0 else None
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


def cmd_train(args) -> int:
    import dataclasses

    from .train import TrainConfig, train

    base = TrainConfig()
    if args.config is not None:
        try:
            base = TrainConfig.from_dict(json.loads(args.config.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise UsageError(f"--config {args.config}: cannot read a JSON TrainConfig ({err})") from None
    model, data = base.model, base.data
    mchanges = {k: v for k, v in {"arch": args.arch, "size": args.size, "latent_dim": args.latent_dim,
                                  "alpha": args.alpha, "upsample": args.upsample}.items() if v is not None}
    if args.no_bias:
        mchanges["bias"] = False
    model = dataclasses.replace(model, **mchanges)
    if args.data == "diracs":
        from .data import DiracData

        data = DiracData(size=model.size, ndim=1 if model.arch == "paper1d" else 2)
    dchanges = {"size": model.size}
    for key, val in (("n", args.n_train), ("exclude", tuple(args.exclude) if args.exclude else None),
                     ("r_max", args.r_max)):
        if val is not None:
            dchanges[key] = val
    if args.fresh:
        dchanges["fresh"] = True
    known = {f.name for f in dataclasses.fields(data)}
    bad = sorted(set(dchanges) - known)
    if bad:
        raise UsageError(f"options {bad} do not apply to {type(data).__name__}")
    data = dataclasses.replace(data, **dchanges)
    tchanges = {k: v for k, v in {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr,
                                  "regulariser": args.regulariser, "reg_weight": args.reg_weight,
                                  "seed": args.seed}.items() if v is not None}
    config = dataclasses.replace(base, model=model, data=data, **tchanges)
    config.validate()
    print(json.dumps(config.to_dict(), indent=None))
    result = train(config, args.out, progress=True)
    print(f"finished: train MSE {result.metrics['train_mse']:.4g}, run in {args.out}")
    return 0


def cmd_reproduce(args) -> int:
    from .experiments.runner import reproduce

    ids = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    return reproduce(profile=args.profile, only=ids, out=args.out, seeds=args.seeds)


def cmd_report(args) -> int:
    from .report import build_report

    if not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a directory of results; run `geoae reproduce` first")
    if args.compare is not None and not args.compare.is_dir():
        raise UsageError(f"--compare {args.compare} is not a directory of results")
    for path in build_report(args.out, reproduce_md=args.reproduce_md, compare=args.compare):
        print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


COMMANDS = {"data": cmd_data, "theory": cmd_theory, "train": cmd_train, "reproduce": cmd_reproduce,
            "report": cmd_report, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, ImportError) as err:  # includes UsageError, CheckpointError
        print(f"geoae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # TrainingDiverged and friends: a clear line, not a traceback
        from .train import TrainingDiverged

        if not isinstance(err, TrainingDiverged):
            raise
        print(f"geoae {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"geoae {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
