"""The parsers of ``geoae``: one ``get_parser`` building every sub-command's options (help strings that
advise, each with its default and choices), and the argument types they use."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .. import __version__
from .checks import UsageError


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


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 8,8,4,4,2, got {text!r}") from None


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


SETTINGS_POINTER = ("environment settings (GEOAE_THREADS, GEOAE_WORKERS, GEOAE_BACKEND, ...):\n"
                    "`geoae --help` lists them all, `geoae info` shows those in force")

PROFILE_HELP = ("scale of the experiments: quick = minutes on 2 cores (the default), paper = the paper's scale "
                "(hours), tiny = seconds, a smoke test of the whole pipeline whose numbers mean nothing")


def _train_options(tr: argparse.ArgumentParser) -> None:
    """`geoae train`'s options: each overrides one field of --config (else of TrainConfig's defaults)."""
    from ..data import RENDERINGS, SCHEMES
    from ..models import ARCHS, OUTPUT_ACTIVATIONS, UPSAMPLES
    from ..tracking import SUGGESTED_MLFLOW_URI
    from ..training import REGULARISERS, TrainConfig

    d = TrainConfig()

    def dflt(value) -> str:
        return f"(default: from --config, else {value})"

    from ..recipes import NAMES as RECIPE_NAMES

    tr.add_argument("--recipe", choices=RECIPE_NAMES, default=None,
                    help="start from a named set-up of the disk runs (geoae.recipes): iclr2018 = the ICLR 2018 "
                    "text's, released = the authors' Keras code's (keras63, blurred 8-bit 63 × 63 disks, lr 0.01, "
                    "best-batch snapshot), geoae = ours; at the paper profile's budget; --config, the options and "
                    "--set apply on top (default: TrainConfig's defaults)")
    tr.add_argument("--config", type=_path, action="append", metavar="FILE",
                    help="a config file, .json or .toml, merged over the defaults: a whole TrainConfig, a run's "
                    "config.json, or only the keys to change, e.g. {\"data\": {\"rendering\": \"binary\"}} "
                    "(repeatable: later files win; the options below and --set win over files) "
                    "(default: TrainConfig's defaults)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set",
                    help="one config key, dotted, e.g. --set data.rendering=binary --set model.alpha=0.05 "
                    "--set data.exclude=[[11,18]]; the value is read as JSON, else taken as a string "
                    "(repeatable; wins over --config and the options) (default: none)")
    tr.add_argument("--arch", choices=ARCHS, help=f"network: paper64 (m × m images, m a power of two), paper1d "
                    f"(1-D signals), keras63 (the authors' released 63 × 63 code) {dflt(d.model.arch)}")
    tr.add_argument("--size", type=int, help="image side m / signal length n (default: from --config, else the "
                    "arch's: 63 for keras63, else 64)")
    tr.add_argument("--latent-dim", type=int, help=f"code dimension d {dflt(d.model.latent_dim)}")
    tr.add_argument("--no-bias", action="store_true", help="remove every bias (the paper's ablation) "
                    "(default: biases, unless --config removes them)")
    tr.add_argument("--alpha", type=float, help="leaky ReLU slope α (default: from --config, else the arch's: "
                    "0.2 for paper64 / paper1d, 0.05 for keras63)")
    tr.add_argument("--channels", type=_channels, metavar="C1,C2,...",
                    help="encoder channels after the input, one per layer but the last (the code), e.g. 8,8,4,4,2 "
                    "(default: from --config, else the arch's)")
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
    tr.add_argument("--rendering", choices=RENDERINGS, help="disks: binary = 1 inside, area = exact pixel coverage, "
                    f"gaussian = blurred edge {dflt(d.data.rendering)}")
    tr.add_argument("--scheme", choices=SCHEMES, help="Diracs: the positions kept: all, a random --fraction, all but "
                    "a --hole, every --stride-th, all but a --quadrant (2-D) (default: from --config, else all)")
    tr.add_argument("--hole", type=_int_interval, metavar="LO:HI", help="Diracs, --scheme hole: positions LO..HI-1 "
                    "removed (default: from --config, else the middle quarter)")
    tr.add_argument("--stride", type=int, help="Diracs, --scheme stride: the grid step (default: from --config, "
                    "else 2)")
    tr.add_argument("--fraction", type=float, help="Diracs, --scheme random: the kept fraction (default: from "
                    "--config, else 0.5)")
    tr.add_argument("--quadrant", type=int, choices=range(4), help="Diracs, --scheme quadrant: the held-out "
                    "quadrant, 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right (default: from --config, else 3)")
    tr.add_argument("--iterations", type=int, help=f"training steps {dflt(d.iterations)}")
    tr.add_argument("--batch-size", type=int, help=f"images per step {dflt(d.batch_size)}")
    tr.add_argument("--lr", type=float, help=f"Adam's learning rate {dflt(d.lr)}")
    tr.add_argument("--regulariser", choices=REGULARISERS, help="ψ added to the MSE: locality (paper type 1), "
                    "l2_all (type 2), l2_encoder (type 3), contractive (released code) " + dflt(d.regulariser))
    tr.add_argument("--reg-weight", type=float, help=f"λ, the weight of the regulariser {dflt(d.reg_weight)}")
    tr.add_argument("--seed", type=int, help=f"seed of the weights and the data {dflt(d.seed)}")
    tr.add_argument("--log-every", type=int, help="iterations between logged records (history.jsonl, TensorBoard, "
                    f"MLflow) {dflt(d.log_every)}")
    tr.add_argument("--out", type=_path, required=True, help="run directory (re-running resumes it)")
    tr.add_argument("--verbose", "-v", action="store_true",
                    help="print the whole configuration (JSON) before training (default: a one-line summary)")
    tr.add_argument("--tensorboard", type=_path, default=None, metavar="DIR",
                    help="also write a live TensorBoard run to DIR/<run name>/: the curves, a reconstruction image "
                    "at each logging step, the config as hparams with the final metrics (needs geoae[tensorboard]; "
                    "then tensorboard --logdir DIR) (default: none; the run's history.jsonl is always written)")
    tr.add_argument("--mlflow", nargs="?", const=SUGGESTED_MLFLOW_URI, default=None, metavar="URI",
                    help=f"also log an MLflow run to this tracking store: the whole config as params, the curves "
                    f"per step, the final metrics, the run directory as artifacts; --mlflow alone means "
                    f"{SUGGESTED_MLFLOW_URI} (read it with mlflow ui --backend-store-uri {SUGGESTED_MLFLOW_URI}); "
                    "needs geoae[mlflow] (default: none)")


def get_parser() -> argparse.ArgumentParser:
    from ..data import RENDERINGS, SCHEMES
    from ..environment import settings_epilog
    from ..experiments.common import PROFILES
    from ..settings import EXECUTORS

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
                        epilog=SETTINGS_POINTER)
    _train_options(tr)

    rp = sub.add_parser("reproduce", help="run the paper's experiments and write the report",
                        epilog=SETTINGS_POINTER)
    rp.add_argument("--profile", default="quick", choices=PROFILES, help=PROFILE_HELP)
    rp.add_argument("--only", default=None, help="comma-separated claim ids, e.g. D4,P1 (default: all)")
    rp.add_argument("--out", type=_path, default=Path("results"), help="results directory")
    rp.add_argument("--recipe", default=None, metavar="NAME[,NAME]",
                    help="the recipes the disk claims D1-D7 run under, comma-separated, from iclr2018, released, "
                    "geoae (default: each claim's own: iclr2018 and released in the paper profile; in the quick "
                    "profile D1 and D6 under both, D2-D5 and D7 under iclr2018)")
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
    exp.add_argument("run_dirs", nargs="+", type=_path, metavar="RUN_DIR",
                     help="run directories, or folders of them (e.g. runs/, results/: every run below)")
    exp.add_argument("--to", choices=("tensorboard",), default="tensorboard", help="the format")
    exp.add_argument("--out", type=_path, default=Path("tensorboard"), help="output directory, one TensorBoard run "
                     "per run directory (exporting again replaces them: the same points, not twice as many)")

    ex = sub.add_parser("explore", help="write an interactive latent-space explorer (one self-contained HTML "
                        "file) for finished runs")
    ex.add_argument("run_dirs", nargs="+", type=_path, metavar="RUN_DIR",
                    help="finished run directories, shown side by side (same data kind, size and code dimension)")
    ex.add_argument("--out", type=_path, default=Path("explorer.html"), help="output .html file")
    ex.add_argument("--title", default=None, help="page title (default: from the runs)")
    ex.add_argument("--label", action="append", default=None,
                    help="name of each run, in order (repeat; default: the config entries that differ)")

    be = sub.add_parser("bench", help="training throughput: geoae's trainer against plain PyTorch",
                        epilog=SETTINGS_POINTER)
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
    be.add_argument("--networks", default="keras63,paper1d",
                    help="the other networks to time against their plain loops, comma-separated, from keras63 "
                    "(the released recipe's) and paper1d (the 1-D Dirac network); '' for none")
    be.add_argument("--level", choices=("native", "x86-64-v3", "x86-64-v4"), default="native",
                    help="measure as on a CPU of this x86-64 level: the fused kernels built for it (GEOAE_MARCH) "
                    "and torch's own code (ATen, MKL's or OpenBLAS's torch.mm, oneDNN's convolutions) limited to "
                    "it, in a child process; native (the default): everything at this CPU's best")
    be.add_argument("--json", action="store_true", help="print the figures as JSON")

    info = sub.add_parser("info", help="versions, CPU, fused-kernel availability, the optional extras installed "
                          "and the GEOAE_* settings in force", epilog=SETTINGS_POINTER)
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

