"""The ``geoae`` command line: data, theory, train, reproduce, report, bench, info, convert-keras.

Each sub-command is a thin layer over the library: it parses, validates (bad input is a one-line error
with exit code 2, never a traceback), then calls the same functions a Python user would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line with exit code 2, like every other bad input."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless the help states it, or the option is required);
    epilogs keep their lines."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (required)" if action.required else f"{text} (default: %(default)s)"


PROFILE_HELP = ("scale of the experiments: quick = minutes on 2 cores (the default), paper = the paper's scale "
                "(hours), tiny = seconds, a smoke test of the whole pipeline whose numbers mean nothing")


def _train_options(tr: argparse.ArgumentParser) -> None:
    """`geoae train`'s options: each overrides one field of --config (else of TrainConfig's defaults)."""
    from .models import ARCHS, OUTPUT_ACTIVATIONS, UPSAMPLES
    from .training import REGULARISERS, TrainConfig

    d = TrainConfig()

    def dflt(value) -> str:
        return f"(default: from --config, else {value})"

    tr.add_argument("--config", type=Path,
                    help="JSON file with a TrainConfig, or a run's config.json; the options below override it "
                    "(default: TrainConfig's defaults)")
    tr.add_argument("--arch", choices=ARCHS, help=f"network: paper64 (m × m images, m a power of two), paper1d "
                    f"(1-D signals), keras63 (the authors' released 63 × 63 code) {dflt(d.model.arch)}")
    tr.add_argument("--size", type=int, help=f"image side m / signal length n {dflt(d.model.size)}")
    tr.add_argument("--latent-dim", type=int, help=f"code dimension d {dflt(d.model.latent_dim)}")
    tr.add_argument("--no-bias", action="store_true", help="remove every bias (the paper's ablation) "
                    "(default: biases, unless --config removes them)")
    tr.add_argument("--alpha", type=float, help="leaky ReLU slope α (default: from --config, else the arch's: "
                    "0.2 for paper64 / paper1d, 0.05 for keras63)")
    tr.add_argument("--upsample", choices=UPSAMPLES, help=f"decoder upsampling {dflt(d.model.upsample)}")
    tr.add_argument("--output-activation", choices=OUTPUT_ACTIVATIONS,
                    help=f"activation of the decoder's last layer {dflt(d.model.output_activation)}")
    tr.add_argument("--data", choices=("disks", "diracs"), help="training data: centred disks (size) or Diracs "
                    "(position; 1-D for paper1d) (default: from --config, else disks)")
    tr.add_argument("--n-train", type=int, help="size of the fixed training set (default: from --config, else "
                    f"{d.data.n} disks; Diracs: each position once)")
    tr.add_argument("--fresh", action="store_true",
                    help="fresh disks every batch instead of a fixed set (default: a fixed set)")
    tr.add_argument("--exclude", type=_interval, action="append", metavar="LO:HI",
                    help="radius interval left out of training, e.g. 11:18 (repeatable) (default: none)")
    tr.add_argument("--r-max", type=float, help="largest training radius (default: from --config, else m/2)")
    tr.add_argument("--iterations", type=int, help=f"training steps {dflt(d.iterations)}")
    tr.add_argument("--batch-size", type=int, help=f"images per step {dflt(d.batch_size)}")
    tr.add_argument("--lr", type=float, help=f"Adam's learning rate {dflt(d.lr)}")
    tr.add_argument("--regulariser", choices=REGULARISERS, help="ψ added to the MSE: locality (paper type 1), "
                    "l2_all (type 2), l2_encoder (type 3), contractive (released code) " + dflt(d.regulariser))
    tr.add_argument("--reg-weight", type=float, help=f"λ, the weight of the regulariser {dflt(d.reg_weight)}")
    tr.add_argument("--seed", type=int, help=f"seed of the weights and the data {dflt(d.seed)}")
    tr.add_argument("--out", type=Path, required=True, help="run directory (re-running resumes it)")
    tr.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                    help="also write live TensorBoard event files here (needs geoae[tensorboard]) (default: none; "
                    "the run's history.jsonl is always written as it grows)")
    tr.add_argument("--mlflow", default=None, metavar="URI",
                    help="also log the curves to this MLflow tracking store, e.g. file:./mlruns (needs "
                    "geoae[mlflow]) (default: none)")


def get_parser() -> argparse.ArgumentParser:
    from .data import RENDERINGS, SCHEMES
    from .environment import settings_epilog
    from .experiments.common import PROFILES

    p = _Parser(
        prog="geoae",
        description="How convolutional autoencoders encode size and position (Newson et al., JMIV 2020).",
        epilog="Start with `geoae reproduce --profile quick` (a few minutes on a laptop CPU) and open\n"
        "results/report.html; `geoae reproduce --profile tiny` checks the whole pipeline in seconds.\n\n"
        + settings_epilog(),
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"geoae {__version__}")
    p.add_argument("--quiet", "-q", action="store_true", help="print errors only: no progress bars or messages "
                   "(files are written all the same)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="generate a dataset (.npz with ground truth + a PNG contact sheet)")
    dsub = data.add_subparsers(dest="kind", required=True, metavar="KIND")
    disks = dsub.add_parser("disks", help="centred disks of random radius (size attribute)")
    disks.add_argument("--n", type=int, default=1000, help="number of images")
    disks.add_argument("--size", type=int, default=64, help="image side m")
    disks.add_argument("--rendering", default="area", choices=RENDERINGS,
                       help="binary = 1 inside the disk, area = exact pixel coverage, gaussian = blurred edge")
    disks.add_argument("--sigma", type=float, default=0.5, help="blur of the gaussian rendering, px")
    disks.add_argument("--r-min", type=float, default=0.0, help="smallest radius")
    disks.add_argument("--r-max", type=float, default=None, help="largest radius (default: m/2)")
    disks.add_argument("--exclude", type=_interval, action="append", default=[], metavar="LO:HI",
                       help="radius interval left out of the sample, e.g. 11:18 (repeatable) (default: none)")
    disks.add_argument("--test", action="store_true", help="evenly spaced radii instead of random ones")
    disks.add_argument("--seed", type=int, default=0, help="random seed of the radii")
    disks.add_argument("--out", required=True, type=Path, help="output .npz file")
    diracs = dsub.add_parser("diracs", help="one-hot signals / images (position attribute)")
    diracs.add_argument("--size", type=int, default=64, help="signal length / image side")
    diracs.add_argument("--ndim", type=int, default=1, choices=(1, 2), help="1 (signals) or 2 (images)")
    diracs.add_argument("--scheme", default="all", choices=SCHEMES,
                        help="positions kept: all, a random fraction, all but a hole, every stride-th, "
                        "all but a quadrant (2-D)")
    diracs.add_argument("--fraction", type=float, default=0.5, help="kept fraction for --scheme random")
    diracs.add_argument("--hole", type=_int_interval, default=None, metavar="LO:HI",
                        help="positions LO..HI-1 removed for --scheme hole (default: the middle quarter)")
    diracs.add_argument("--stride", type=int, default=2, help="grid step for --scheme stride")
    diracs.add_argument("--quadrant", type=int, default=3, choices=range(4),
                        help="held-out quadrant for --scheme quadrant: 0 top-left, 1 top-right, 2 bottom-left, "
                        "3 bottom-right")
    diracs.add_argument("--n", type=int, default=None, help="samples with replacement (default: each position once)")
    diracs.add_argument("--seed", type=int, default=0, help="random seed of the scheme and the draw")
    diracs.add_argument("--out", required=True, type=Path, help="output .npz file")

    th = sub.add_parser("theory", help="the closed-form optimal bias-free decoder (Airy profile) for radius R")
    th.add_argument("--radius", type=float, default=32.0, help="largest training radius R")
    th.add_argument("--k", type=int, default=2, choices=(1, 2, 3), help="dimension of the ball (2: disks)")
    th.add_argument("--out", type=Path, default=Path("results/theory"), help="output directory")

    tr = sub.add_parser("train", help="train one autoencoder; the run directory can be resumed",
                        epilog=settings_epilog())
    _train_options(tr)

    rp = sub.add_parser("reproduce", help="run the paper's experiments and write the report",
                        epilog=settings_epilog())
    rp.add_argument("--profile", default="quick", choices=PROFILES, help=PROFILE_HELP)
    rp.add_argument("--only", default=None, help="comma-separated claim ids, e.g. D4,P1 (default: all)")
    rp.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    rp.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the profile's)")
    rp.add_argument("--official-weights", type=Path, default=None, metavar="H5",
                    help="the authors' disk_example_model_weights.h5, for D1/D2's comparison with their model "
                    "(needs geoae[keras]; sets GEOAE_OFFICIAL_WEIGHTS) (default: $GEOAE_OFFICIAL_WEIGHTS, else "
                    "searched in shared/reference/; the comparison is skipped, with a note, when absent)")

    rep = sub.add_parser("report", help="rebuild report.md, report.html and REPRODUCE.md from results files")
    rep.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    rep.add_argument("--reproduce-md", type=Path, default=None,
                     help="also write REPRODUCE.md here, e.g. the repository's REPRODUCE.md (default: not written)")
    rep.add_argument("--compare", type=Path, default=None,
                     help="results directory of another profile (e.g. the paper profile's): its verdicts and "
                     "headline numbers are shown next to these (default: none)")

    exp = sub.add_parser("export", help="export finished or interrupted runs' training curves to another tool")
    exp.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories")
    exp.add_argument("--to", choices=("tensorboard",), default="tensorboard", help="the format")
    exp.add_argument("--out", type=Path, default=Path("tensorboard"), help="output directory (one folder per run)")

    ex = sub.add_parser("explore", help="write an interactive latent-space explorer (one self-contained HTML "
                        "file) for finished runs")
    ex.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                    help="finished run directories, shown side by side (same data kind, size and code dimension)")
    ex.add_argument("--out", type=Path, default=Path("explorer.html"), help="output .html file")
    ex.add_argument("--title", default=None, help="page title (default: from the runs)")
    ex.add_argument("--label", action="append", default=None,
                    help="name of each run, in order (repeat; default: the config entries that differ)")

    be = sub.add_parser("bench", help="training throughput: geoae's trainer against plain PyTorch",
                        epilog=settings_epilog())
    be.add_argument("--batch-size", type=int, default=64, help="images per training step")
    be.add_argument("--threads", type=int, default=None,
                    help="torch threads of the plain reference and torch.mm (default: all cores); geoae's "
                    "fused kernels use GEOAE_THREADS (default: all cores)")
    be.add_argument("--no-bias", action="store_true", help="time the bias-free network")
    be.add_argument("--steps", type=int, default=200, help="timed steps per repeat")
    be.add_argument("--repeats", type=int, default=5, help="repeats of each timing (the median is shown)")
    be.add_argument("--sweep", type=int, default=15,
                    help="K runs (seeds x the five regularisers) for the sweep figure (0 to skip)")
    be.add_argument("--sweep-steps", type=int, default=300, help="steps of each sweep run")
    be.add_argument("--sweep-repeats", type=int, default=1, help="repeats of the sweep timing (median)")
    be.add_argument("--size", type=int, default=64, help="image side m (64 is the paper's)")
    be.add_argument("--json", action="store_true", help="print the figures as JSON")

    info = sub.add_parser("info", help="versions, CPU, fused-kernel availability and the GEOAE_* settings",
                          epilog=settings_epilog())
    info.add_argument("--json", action="store_true", help="print as JSON")

    ck = sub.add_parser("convert-keras", help="the authors' Keras weights (.h5) as a geoae run directory",
                        description="Write a run directory (config.json, model.safetensors, history.json, "
                        "metrics.json) from the authors' released Keras disk model, which every geoae command "
                        "that reads runs accepts. Needs h5py (pip install geoae[keras]).")
    ck.add_argument("h5", type=Path, help="the Keras weights, e.g. disk_example_model_weights.h5")
    ck.add_argument("--out", type=Path, required=True, help="the run directory to write (new or empty)")

    _finish(p)
    return p


def _subparsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` (sub-commands, and theirs), depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


def _finish(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command the help formatter and the global ``--quiet`` (also accepted after it)."""
    for child in _subparsers(parser):
        child.formatter_class = _Formatter
        child.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                           help="print errors only, as `geoae --quiet` (default: False)")


# ---------------------------------------------------------------------------------------- commands


@contextlib.contextmanager
def _quiet(enabled: bool):
    """``--quiet``: standard output goes nowhere (errors still reach standard error)."""
    if not enabled:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


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
    from .training import write_json

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

    from .training import TrainConfig, train

    base = TrainConfig()
    if args.config is not None:
        try:
            given = json.loads(args.config.read_text())
            # a run's config.json holds the TrainConfig under "config"
            base = TrainConfig.from_dict(given["config"] if "config" in given and "model" not in given else given)
        except (OSError, json.JSONDecodeError) as err:
            raise UsageError(f"--config {args.config}: cannot read a JSON TrainConfig ({err})") from None
    model, data = base.model, base.data
    mchanges = {k: v for k, v in {"arch": args.arch, "size": args.size, "latent_dim": args.latent_dim,
                                  "alpha": args.alpha, "upsample": args.upsample,
                                  "output_activation": args.output_activation}.items() if v is not None}
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
    callbacks = []
    with contextlib.ExitStack() as stack:
        if args.tensorboard is not None:
            from .tracking import TensorBoardLogger

            callbacks.append(stack.enter_context(TensorBoardLogger(args.tensorboard)))
        if args.mlflow is not None:
            from .tracking import MLflowLogger

            callbacks.append(stack.enter_context(MLflowLogger(args.out.name, tracking_uri=args.mlflow,
                                                              params={"digest": config.digest()})))
        result = train(config, args.out, progress=not args.quiet, callbacks=callbacks)
    print(f"finished: train MSE {result.metrics['train_mse']:.4g}, run in {args.out}")
    return 0


def cmd_reproduce(args) -> int:
    from .experiments.runner import reproduce

    ids = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    with _official_weights(args.official_weights, args.out, ids):
        return reproduce(profile=args.profile, only=ids, out=args.out, seeds=args.seeds, progress=not args.quiet)


@contextlib.contextmanager
def _official_weights(path: Path | None, out: Path, ids: list[str] | None):
    """With ``--official-weights``: check the file and h5py, set GEOAE_OFFICIAL_WEIGHTS for the run (restored
    after), and let D1/D2 results that lack the comparison be redone (their training runs are kept)."""
    from .models import OFFICIAL_WEIGHTS_ENV
    from .report import lacks_official_comparison

    if path is None:
        yield
        return
    if not path.is_file():
        raise UsageError(f"--official-weights {path}: no such file (the authors' disk_example_model_weights.h5)")
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise UsageError("--official-weights needs h5py: pip install geoae[keras]") from None
    for exp_id in ("D1", "D2"):
        results = out / exp_id / "results.json"
        if (ids is None or exp_id in {i.upper() for i in ids}) and results.is_file():
            try:
                stale = lacks_official_comparison(json.loads(results.read_text()))
            except json.JSONDecodeError:
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


def cmd_report(args) -> int:
    from .report import build_report

    if not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a directory of results; run `geoae reproduce` first")
    if args.compare is not None and not args.compare.is_dir():
        raise UsageError(f"--compare {args.compare} is not a directory of results")
    for path in build_report(args.out, reproduce_md=args.reproduce_md, compare=args.compare):
        print(f"wrote {path}")
    return 0


def cmd_export(args) -> int:
    from .tracking import export_tensorboard

    try:
        written = export_tensorboard(args.run_dirs, args.out)
    except ImportError as err:
        raise UsageError(str(err)) from None
    except ValueError as err:
        raise UsageError(f"RUN_DIR: {err}") from None
    print(f"wrote TensorBoard event files for {len(written)} runs under {args.out}/ (tensorboard --logdir {args.out})")
    return 0


def cmd_explore(args) -> int:
    from .explorer import write_explorer

    if args.out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out must name an .html file, got {str(args.out)!r}")
    path = write_explorer(args.run_dirs, args.out, title=args.title, labels=args.label)
    print(f"wrote {path} ({path.stat().st_size} bytes): open it in any browser, no server needed")
    return 0


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def cmd_info(args) -> int:
    from .environment import describe, format_description

    info = describe()
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


def cmd_convert_keras(args) -> int:
    from .official import convert_keras

    out = convert_keras(args.h5, args.out)
    print(f"wrote the run directory {out} (arch keras63); load it with geoae.training.load_run")
    return 0


COMMANDS = {"data": cmd_data, "theory": cmd_theory, "train": cmd_train, "reproduce": cmd_reproduce,
            "report": cmd_report, "bench": cmd_bench, "info": cmd_info, "convert-keras": cmd_convert_keras,
            "explore": cmd_explore, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:  # argparse's own errors (unknown option, bad choice): one line, exit code 2
        print(err, file=sys.stderr)
        return 2
    try:
        with _quiet(args.quiet):
            return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, ImportError) as err:  # includes UsageError, CheckpointError
        print(f"geoae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # TrainingDiverged and friends: a clear line, not a traceback
        from .training import TrainingDiverged

        if not isinstance(err, TrainingDiverged):
            raise
        print(f"geoae {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"geoae {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
