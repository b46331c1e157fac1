"""The ``geoae`` command line: data, theory, train, reproduce, report, export, explore, bench, info,
convert-keras.

Each sub-command is a thin layer over the library, in two steps. ``check_<command>`` validates everything
first: every option, the ``GEOAE_*`` settings, the files named (inputs readable and well-formed, outputs
writable); bad input is one line naming the option as written (or the config key, or the variable), the
value and what is allowed. Only then does ``run_<command>`` work, calling the functions a Python user would.

Exit codes:

- 0: done;
- 1: a failure while working (a full disk, another process training in the run directory, a diverged run,
  a failed experiment), one line; or an internal error (a bug in geoae: a hint says how to report it, and
  ``GEOAE_DEBUG=1`` shows the traceback);
- 2: bad input, refused before anything was written (also a corrupted or foreign checkpoint or model);
- 130: interrupted (Ctrl-C): the finished work is kept and the same command resumes it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

from . import __version__, interrupts


class UsageError(ValueError):
    """Raised for bad command-line input; reported as one line with exit code 2."""


def _path(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"a path cannot contain a NUL character, got {text!r}")
    return Path(text)


def _interval(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI (two numbers), got {text!r}") from None
    return lo, hi


def _int_interval(text: str) -> tuple[int, int]:
    lo, hi = _interval(text)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo != int(lo) or hi != int(hi):
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

    tr.add_argument("--config", type=_path,
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
    tr.add_argument("--out", type=_path, required=True, help="run directory (re-running resumes it)")
    tr.add_argument("--tensorboard", type=_path, default=None, metavar="DIR",
                    help="also write live TensorBoard event files here (needs geoae[tensorboard]) (default: none; "
                    "the run's history.jsonl is always written as it grows)")
    tr.add_argument("--mlflow", default=None, metavar="URI",
                    help="also log the curves to this MLflow tracking store, e.g. file:./mlruns (needs "
                    "geoae[mlflow]) (default: none)")


def get_parser() -> argparse.ArgumentParser:
    from .data import RENDERINGS, SCHEMES
    from .environment import settings_epilog
    from .experiments.common import PROFILES
    from .settings import EXECUTORS

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
    disks.add_argument("--out", required=True, type=_path, help="output .npz file")
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
    diracs.add_argument("--out", required=True, type=_path, help="output .npz file")

    th = sub.add_parser("theory", help="the closed-form optimal bias-free decoder (Airy profile) for radius R")
    th.add_argument("--radius", type=float, default=32.0, help="largest training radius R")
    th.add_argument("--k", type=int, default=2, choices=(1, 2, 3), help="dimension of the ball (2: disks)")
    th.add_argument("--out", type=_path, default=Path("results/theory"), help="output directory")

    tr = sub.add_parser("train", help="train one autoencoder; the run directory can be resumed",
                        epilog=settings_epilog())
    _train_options(tr)

    rp = sub.add_parser("reproduce", help="run the paper's experiments and write the report",
                        epilog=settings_epilog())
    rp.add_argument("--profile", default="quick", choices=PROFILES, help=PROFILE_HELP)
    rp.add_argument("--only", default=None, help="comma-separated claim ids, e.g. D4,P1 (default: all)")
    rp.add_argument("--out", type=_path, default=Path("results"), help="results directory")
    rp.add_argument("--seeds", type=int, default=None,
                    help="number of seeds (default: the profile's: quick 2, paper 5, tiny 1; X1-X3 take 3 in quick)")
    rp.add_argument("--official-weights", type=_path, default=None, metavar="H5",
                    help="the authors' disk_example_model_weights.h5, for D1/D2's comparison with their model "
                    "(needs geoae[keras]; sets GEOAE_OFFICIAL_WEIGHTS) (default: $GEOAE_OFFICIAL_WEIGHTS, else "
                    "searched in shared/reference/; the comparison is skipped, with a note, when absent)")
    rp.add_argument("--executor", default=None, choices=EXECUTORS,
                    help="where the runs train: local (this machine's cores) or ray (tasks of a Ray cluster; needs "
                    "geoae[ray], see docs/cluster.md) (default: $GEOAE_EXECUTOR, else local)")
    rp.add_argument("--address", default=None, metavar="HOST:PORT",
                    help="the Ray cluster of --executor ray (default: $RAY_ADDRESS, else a Ray started on this "
                    "machine)")

    rep = sub.add_parser("report", help="rebuild report.md, report.html and REPRODUCE.md from results files")
    rep.add_argument("--out", type=_path, default=Path("results"), help="results directory")
    rep.add_argument("--reproduce-md", type=_path, default=None,
                     help="also write REPRODUCE.md here, e.g. the repository's REPRODUCE.md (default: not written)")
    rep.add_argument("--compare", type=Path, default=None,
                     help="results directory of another profile (e.g. the paper profile's): its verdicts and "
                     "headline numbers are shown next to these (default: none)")

    exp = sub.add_parser("export", help="export finished or interrupted runs' training curves to another tool")
    exp.add_argument("run_dirs", nargs="+", type=_path, metavar="RUN_DIR", help="run directories")
    exp.add_argument("--to", choices=("tensorboard",), default="tensorboard", help="the format")
    exp.add_argument("--out", type=_path, default=Path("tensorboard"), help="output directory (one folder per run)")

    ex = sub.add_parser("explore", help="write an interactive latent-space explorer (one self-contained HTML "
                        "file) for finished runs")
    ex.add_argument("run_dirs", nargs="+", type=_path, metavar="RUN_DIR",
                    help="finished run directories, shown side by side (same data kind, size and code dimension)")
    ex.add_argument("--out", type=_path, default=Path("explorer.html"), help="output .html file")
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
    ck.add_argument("h5", type=_path, help="the Keras weights, e.g. disk_example_model_weights.h5")
    ck.add_argument("--out", type=_path, required=True, help="the run directory to write (new or empty)")

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


# ------------------------------------------------------------------------------------------ checks

MAX_SEEDS = 100  # reproduce --seeds
MAX_REPEATS = 1000  # bench --repeats, --sweep-repeats, --sweep
MAX_STEPS = 10**6  # bench --steps, --sweep-steps
MAX_RADIUS = 1e6  # theory --radius (pixels)
MIN_RADIUS = 1e-3
MAX_CONFIG_BYTES = 16 * 2**20  # train --config


def _check_int(option: str, value, lo: int, hi: int) -> None:
    """An integer option in [lo, hi] (None: not given)."""
    if value is not None and not lo <= value <= hi:
        raise UsageError(f"{option} {value}: must be an integer from {lo} to {hi}")


@contextlib.contextmanager
def _named(names: dict[str, str], prefix: str = ""):
    """Turn the library's ValueError into a UsageError naming the option: its messages start with the
    parameter (``r_max=40 must be …``, ``model.size must be …``), replaced by the option in ``names``;
    a parameter not in ``names`` gets ``prefix`` (e.g. ``--config FILE: ``)."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as err:
        text = " ".join(str(err).split())
        m = re.match(r"[A-Za-z_][\w.]*", text)
        if m and m[0] in names:
            raise UsageError(names[m[0]] + text[m.end():]) from None
        raise UsageError(prefix + text) from None


def _check_writable(option: str, path: Path, folder: Path) -> None:
    """Files can be created in ``folder``, or in the nearest existing folder above it (where the missing ones
    would be made): tried with a temporary file, removed at once, so nothing is left."""
    from .checks import broken_link

    if (link := broken_link(path)) is not None:
        raise UsageError(f"{option} {path}: {link} is a symbolic link to nothing (dangling, or a loop of links)")
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".geoae-probe-")
    except OSError as err:
        raise UsageError(f"{option} {path}: cannot write in {existing} ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _check_out_dir(option: str, path: Path) -> None:
    """An output directory: a directory (or none yet) where files can be written."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: an existing file, not a directory")
    _check_writable(option, path, path)


def _check_out_file(option: str, path: Path, suffixes: tuple[str, ...] = ()) -> None:
    """An output file: the suffix asked for, not a directory, in a folder where files can be written."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} must name a {' or '.join(suffixes)} file, got {str(path)!r}")
    if path.is_dir():
        raise UsageError(f"{option} {path}: a directory, not a file")
    _check_writable(option, path, path.parent)


def _check_in_file(option: str, path: Path) -> None:
    """An input file that exists and can be read."""
    if not path.exists():
        raise UsageError(f"{option} {path}: not found (no such file)")
    if not path.is_file():
        raise UsageError(f"{option} {path}: not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{option} {path}: cannot read it (permission denied)")


def check_data(args):
    from . import data

    _check_out_file("--out", args.out, (".npz",))
    if args.out.with_suffix(".png").is_dir():
        raise UsageError(f"--out {args.out}: its contact sheet {args.out.with_suffix('.png')} is a directory")
    _check_int("--seed", args.seed, 0, data.MAX_SEED)
    common = {"n": "--n", "size": "--size", "seed": "--seed"}
    with _named(common | {"rendering": "--rendering", "sigma": "--sigma", "r_min": "--r-min", "r_max": "--r-max",
                          "exclude": "--exclude", "ndim": "--ndim", "scheme": "--scheme", "fraction": "--fraction",
                          "hole": "--hole", "stride": "--stride", "quadrant": "--quadrant"}):
        if args.kind == "disks":
            data.DiskData(n=args.n, size=args.size, rendering=args.rendering, sigma=args.sigma, r_min=args.r_min,
                          r_max=args.r_max, exclude=tuple(args.exclude))
        else:
            data.DiracData(n=args.n, size=args.size, ndim=args.ndim, scheme=args.scheme, fraction=args.fraction,
                           hole=args.hole, stride=args.stride, quadrant=args.quadrant)


def check_theory(args):
    R = args.radius
    if not (math.isfinite(R) and MIN_RADIUS <= R <= MAX_RADIUS):  # below 1e-3 px, R³ and f̂ leave float range
        raise UsageError(f"--radius {R}: must be a number in [{MIN_RADIUS:g}, {MAX_RADIUS:g}] (the largest training "
                         "radius R, px)")
    _check_out_dir("--out", args.out)


# config key -> the `geoae train` option that sets it
TRAIN_OPTIONS = {
    "model.arch": "--arch", "model.size": "--size", "model.latent_dim": "--latent-dim", "model.bias": "--no-bias",
    "model.alpha": "--alpha", "model.upsample": "--upsample", "model.output_activation": "--output-activation",
    "data.kind": "--data", "data.size": "--size", "data.n": "--n-train", "data.fresh": "--fresh",
    "data.exclude": "--exclude", "data.r_max": "--r-max", "iterations": "--iterations", "batch_size": "--batch-size",
    "lr": "--lr", "regulariser": "--regulariser", "reg_weight": "--reg-weight", "seed": "--seed",
}


def _given(args) -> dict[str, str]:
    """The config keys set by options the user gave, and those options."""
    attr = {"--no-bias": "no_bias", "--n-train": "n_train", "--latent-dim": "latent_dim", "--r-max": "r_max",
            "--output-activation": "output_activation", "--batch-size": "batch_size", "--reg-weight": "reg_weight"}
    given = {}
    for key, option in TRAIN_OPTIONS.items():
        value = getattr(args, attr.get(option, option[2:]))
        if value not in (None, False, []):
            given[key] = option
    return given


def _read_config(path: Path):
    """The TrainConfig in a JSON file (a TrainConfig, or a run's config.json)."""
    from .training import TrainConfig
    from .training.config import config_json_loads

    _check_in_file("--config", path)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, not a config file")
    raw = path.read_bytes()
    try:
        given = config_json_loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start})"
                         ) from None
    except json.JSONDecodeError as err:
        raise UsageError(f"--config {path}: not valid JSON ({err})") from None
    except RecursionError:
        raise UsageError(f"--config {path}: not a config (JSON nested too deeply)") from None
    if isinstance(given, dict) and "config" in given and "model" not in given:  # a run's config.json
        given = given["config"]
    with _named({}, f"--config {path}: "):
        return TrainConfig.from_dict(given)


def check_train(args):
    import dataclasses

    from .data import DiracData, DiskData
    from .training import TrainConfig, is_finished, load_run
    from .training.rundir import check_run_directory

    _check_out_dir("--out", args.out)
    with _named({"out_dir": "--out"}):
        check_run_directory(args.out)  # a folder of the user's own files is not a run directory
    _check_tracking(args)
    base = TrainConfig() if args.config is None else _read_config(args.config)
    # without --config every value is an option's (given or default); with it, the options given name theirs
    names = TRAIN_OPTIONS if args.config is None else _given(args)
    with _named(names, f"--config {args.config}: " if args.config is not None else ""):
        model, data = base.model, base.data
        mchanges = {k: v for k, v in {"arch": args.arch, "size": args.size, "latent_dim": args.latent_dim,
                                      "alpha": args.alpha, "upsample": args.upsample,
                                      "output_activation": args.output_activation}.items() if v is not None}
        if args.no_bias:
            mchanges["bias"] = False
        model = dataclasses.replace(model, **mchanges)
        try:
            if args.data == "diracs" and not isinstance(data, DiracData):
                data = DiracData(size=model.size, ndim=1 if model.arch == "paper1d" else 2)
            elif args.data == "disks" and not isinstance(data, DiskData):
                data = DiskData(n=TrainConfig().data.n, size=model.size)
            dchanges = {"size": model.size}
            for key, val in (("n", args.n_train), ("exclude", tuple(args.exclude) if args.exclude else None),
                             ("r_max", args.r_max), ("fresh", True if args.fresh else None)):
                if val is not None:
                    dchanges[key] = val
            known = {f.name for f in dataclasses.fields(data)}
            bad = [TRAIN_OPTIONS[f"data.{k}"] for k in dchanges if k not in known]
            if bad:
                raise UsageError(f"{', '.join(bad)}: only for disks, not for --data diracs")
            data = dataclasses.replace(data, **dchanges)
        except ValueError as err:
            if isinstance(err, UsageError):
                raise
            raise ValueError(f"data.{err}") from None
        tchanges = {k: v for k, v in {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr,
                                      "regulariser": args.regulariser, "reg_weight": args.reg_weight,
                                      "seed": args.seed}.items() if v is not None}
        config = dataclasses.replace(base, model=model, data=data, **tchanges)
        config.validate()
    from .settings import read_settings
    from .training.loop import check_backend

    check_backend(config, read_settings())  # GEOAE_BACKEND=fused where the kernels cannot run: refused now
    if is_finished(args.out):
        done = load_run(args.out)  # CheckpointError (exit 2) for a damaged run
        if done.config.digest() != config.digest():
            raise UsageError(f"--out {args.out} holds a finished run of another configuration (digest "
                             f"{done.config.digest()}, this one {config.digest()}); use another --out")
    return config


def _check_tracking(args) -> None:
    """``--tensorboard DIR`` / ``--mlflow URI``: the extra installed, the directory writable, a URI given."""
    if args.tensorboard is not None:
        _check_out_dir("--tensorboard", args.tensorboard)
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UsageError("--tensorboard needs the tensorboard package: pip install geoae[tensorboard]") from None
    if args.mlflow is not None:
        if not args.mlflow.strip():
            raise UsageError("--mlflow: expected a tracking URI such as file:./mlruns, got an empty string")
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise UsageError("--mlflow needs mlflow: pip install geoae[mlflow]") from None


def check_reproduce(args):
    from .experiments.registry import IDS as EXPERIMENTS
    from .models import official_model_path
    from .training.schedule import check_executor

    ids = None
    if args.only is not None:
        ids = [s.strip().upper() for s in args.only.split(",")]
        allowed = f"give comma-separated ids from {', '.join(EXPERIMENTS)}, e.g. D4,P1"
        if not all(ids):
            raise UsageError(f"--only {args.only!r}: an empty id; {allowed}")
        unknown = [i for i in ids if i not in EXPERIMENTS]
        if unknown:
            raise UsageError(f"--only {args.only!r}: unknown id {unknown[0]}; {allowed}")
        ids = list(dict.fromkeys(ids))
    _check_int("--seeds", args.seeds, 1, MAX_SEEDS)
    _check_out_dir("--out", args.out)
    from .experiments.runner import check_official_weights, check_places

    check_places(args.out, args.profile, ids)  # runs/ and the claims' folders writable
    check_executor(args.executor, args.address)  # a bad choice, ray without the Ray package, a cluster not there
    if args.official_weights is not None:
        _check_in_file("--official-weights", args.official_weights)
        from .models import load_official_model

        try:
            import h5py  # noqa: F401
        except ImportError:
            raise UsageError("--official-weights needs h5py: pip install geoae[keras]") from None
        with _named({}, "--official-weights: "):
            load_official_model(args.official_weights)
    else:
        official_model_path()  # a GEOAE_OFFICIAL_WEIGHTS that names no file: FileNotFoundError naming it
        check_official_weights(ids)  # … or a file --official-weights would refuse
    return ids


def check_report(args):
    if not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a directory of results; run `geoae reproduce` first")
    _check_out_dir("--out", args.out)
    if args.reproduce_md is not None:
        _check_out_file("--reproduce-md", args.reproduce_md)
    if args.compare is not None and not args.compare.is_dir():
        raise UsageError(f"--compare {args.compare} is not a directory of results")


def check_export(args):
    from .tracking import export_plan

    for run_dir in args.run_dirs:
        if not ((run_dir / "history.jsonl").is_file() or (run_dir / "history.json").is_file()):
            raise UsageError(f"RUN_DIR {run_dir} is not a run directory (no history.jsonl)")
    export_plan(args.run_dirs)  # every history checked (ValueError naming the bad record) before any is written
    _check_out_dir("--out", args.out)
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UsageError("--to tensorboard needs the tensorboard package: pip install geoae[tensorboard]") from None


def check_explore(args) -> str:
    """The page's text (everything it needs is read and checked here; writing it is all that is left)."""
    from .explorer import explorer_html
    from .training import is_finished, load_run

    _check_out_file("--out", args.out, (".html", ".htm"))
    if args.label is not None and len(args.label) != len(args.run_dirs):
        raise UsageError(f"--label: one per RUN_DIR: {len(args.run_dirs)} run(s), {len(args.label)} label(s)")
    runs = []
    for run_dir in args.run_dirs:
        if not is_finished(run_dir):
            raise UsageError(f"RUN_DIR {run_dir} is not a finished run directory (it needs metrics.json and "
                             "model.safetensors; train it with `geoae train` or `geoae reproduce`)")
        runs.append(load_run(run_dir))  # CheckpointError names a damaged file
    with _named({}, "geoae explore: "):
        return explorer_html(runs, title=args.title or f"geoae explorer: {len(runs)} run(s)", labels=args.label)


def check_bench(args):
    from .bench import _config
    from .training.config import MAX_BATCH

    _check_int("--batch-size", args.batch_size, 1, MAX_BATCH)
    _check_int("--threads", args.threads, 1, 1024)
    for option, value, lo, hi in (("--steps", args.steps, 1, MAX_STEPS), ("--repeats", args.repeats, 1, MAX_REPEATS),
                                  ("--sweep", args.sweep, 0, MAX_REPEATS),
                                  ("--sweep-steps", args.sweep_steps, 1, MAX_STEPS),
                                  ("--sweep-repeats", args.sweep_repeats, 1, MAX_REPEATS)):
        _check_int(option, value, lo, hi)
    with _named({"model.size": "--size", "data.size": "--size"}):
        _config(args.batch_size, not args.no_bias, args.steps, args.size).validate()


def check_info(args):
    return None


def check_convert_keras(args):
    from .official import check_conversion

    _check_in_file("H5", args.h5)
    _check_out_dir("--out", args.out)
    with _named({}, "geoae convert-keras: "):
        return check_conversion(args.h5, args.out)


# ---------------------------------------------------------------------------------------- commands


@contextlib.contextmanager
def _quiet(enabled: bool):
    """``--quiet``: standard output goes nowhere (errors still reach standard error)."""
    if not enabled:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def run_data(args, _) -> int:
    import numpy as np
    import torch

    from . import data
    from .plots import contact_sheet
    from .training.rundir import write_bytes_atomic

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

    from . import theory
    from .plots import line_plot
    from .training import write_json

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
    from .training import train

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


def run_reproduce(args, ids) -> int:
    from .experiments.runner import reproduce

    with _official_weights(args.official_weights, args.out, ids):
        return reproduce(profile=args.profile, only=ids, out=args.out, seeds=args.seeds, progress=not args.quiet,
                         executor=args.executor, address=args.address)


@contextlib.contextmanager
def _official_weights(path: Path | None, out: Path, ids: list[str] | None):
    """With ``--official-weights`` (checked by ``check_reproduce``): set GEOAE_OFFICIAL_WEIGHTS for the run
    (restored after), and let D1/D2 results that lack the comparison be redone (their training runs are kept)."""
    from .models import OFFICIAL_WEIGHTS_ENV
    from .report import lacks_official_comparison

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
    from .report import build_report

    for path in build_report(args.out, reproduce_md=args.reproduce_md, compare=args.compare):
        print(f"wrote {path}")
    return 0


def run_export(args, _) -> int:
    from .tracking import export_tensorboard

    written = export_tensorboard(args.run_dirs, args.out)
    print(f"wrote TensorBoard event files for {len(written)} runs under {args.out}/ (tensorboard --logdir {args.out})")
    return 0


def run_explore(args, text: str) -> int:
    from .training.rundir import write_bytes_atomic

    write_bytes_atomic(args.out, text.encode("utf-8"))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): open it in any browser, no server needed")
    return 0


def run_bench(args, _) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def run_info(args, _) -> int:
    from .environment import describe, format_description

    info = describe()
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    return 0


def run_convert_keras(args, _) -> int:
    from .official import convert_keras

    out = convert_keras(args.h5, args.out)
    print(f"wrote the run directory {out} (arch keras63); load it with geoae.training.load_run")
    return 0


COMMANDS = {"data": (check_data, run_data), "theory": (check_theory, run_theory), "train": (check_train, run_train),
            "reproduce": (check_reproduce, run_reproduce), "report": (check_report, run_report),
            "export": (check_export, run_export),
            "explore": (check_explore, run_explore), "bench": (check_bench, run_bench),
            "info": (check_info, run_info), "convert-keras": (check_convert_keras, run_convert_keras)}


# -------------------------------------------------------------------------------------------- main


def _say(prog: str, err: BaseException) -> None:
    """One line on standard error: ``geoae CMD: error: …`` (an OSError as its file and reason); a standard error
    that cannot be written (a full disk, /dev/full) does not change the exit code."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        text = str(err)
    with contextlib.suppress(OSError, ValueError):
        print(f"{prog}: error: {' '.join(text.split())}", file=sys.stderr, flush=True)


def _internal(prog: str, err: BaseException) -> int:
    """A bug: said as such (never as bad input), with where to report it; the traceback under GEOAE_DEBUG=1."""
    import traceback

    from .settings import SettingsError, debug_enabled

    print(f"{prog}: internal error: {type(err).__name__}: {' '.join(str(err).split())}", file=sys.stderr)
    try:
        debug = debug_enabled()
    except SettingsError:
        debug = False
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    else:
        print(f"{prog}: this is a bug in geoae {__version__}, not in your input: please report it to the geoae "
              "developers (issue tracker) with the command and its output under GEOAE_DEBUG=1 (the traceback)",
              file=sys.stderr)
    return 1


def _run(args) -> int:
    """Check (bad input: exit 2, nothing written), then work (a fault: exit 1; a bug: internal error)."""
    from .settings import SettingsError, read_settings
    from .training import CheckpointError, RunLockedError, TrainingDiverged

    prog = f"geoae {args.command}"
    check, work = COMMANDS[args.command]
    try:
        if args.command != "info":  # info shows a bad setting instead of refusing
            read_settings()
        plan = check(args)
    except (ValueError, OSError, ImportError) as err:  # UsageError, SettingsError, CheckpointError, missing h5py
        _say(prog, err)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug, reported as one (KeyboardInterrupt passes)
        return _internal(prog, err)
    try:
        return work(args, plan)
    except (UsageError, SettingsError, CheckpointError) as err:
        _say(prog, err)
        return 2
    except (OSError, RunLockedError, TrainingDiverged) as err:  # a full disk, another process, a diverged run
        _say(prog, err)
        return 1
    except Exception as err:  # noqa: BLE001 - a bug, reported as one (KeyboardInterrupt passes)
        return _internal(prog, err)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (module docstring). Ctrl-C anywhere, even one swallowed by a
    finaliser on the way (``interrupts``), ends it with 130, the finished work kept."""
    prog = "geoae"
    try:
        with interrupts.sigint_handler():
            try:
                args = get_parser().parse_args(argv)
            except UsageError as err:  # argparse's own errors (unknown option, bad choice): one line, exit code 2
                print(err, file=sys.stderr)
                return 2
            prog = f"geoae {args.command}"
            with _quiet(args.quiet):
                code = _run(args)
            interrupts.check()
            return code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the finished work is kept: run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
