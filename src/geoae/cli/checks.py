"""The checks of ``geoae``'s sub-commands: ``check_<command>(args)`` validates every option, the files named
and the ``GEOAE_*`` settings before any work, and returns what the work needs (the plan). Bad input is a
:class:`UsageError`, one line naming the option as written (or the config key), the value and what is allowed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tempfile
from pathlib import Path


class UsageError(ValueError):
    """Raised for bad command-line input; reported as one line with exit code 2."""



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
    from ..checks import broken_link

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
    from .. import data

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
    "model.alpha": "--alpha", "model.channels": "--channels", "model.upsample": "--upsample",
    "model.output_activation": "--output-activation", "data.kind": "--data", "data.size": "--size",
    "data.n": "--n-train", "data.fresh": "--fresh", "data.exclude": "--exclude", "data.r_max": "--r-max",
    "data.rendering": "--rendering", "data.scheme": "--scheme", "data.hole": "--hole", "data.stride": "--stride",
    "data.fraction": "--fraction", "data.quadrant": "--quadrant", "iterations": "--iterations",
    "batch_size": "--batch-size", "lr": "--lr", "regulariser": "--regulariser", "reg_weight": "--reg-weight",
    "seed": "--seed", "log_every": "--log-every",
}
OPTIONS_SOURCE = "the options"  # the name of the layer of options given, in composed-config errors


def _put(partial: dict, key: str, value) -> None:
    """Set the dotted ``key`` in a nested dict."""
    *parents, last = key.split(".")
    for part in parents:
        partial = partial.setdefault(part, {})
    partial[last] = value


def _option_values(args) -> dict:
    """The partial config of the options given (None and False: not given)."""
    values = {"model.arch": args.arch, "model.size": args.size, "model.latent_dim": args.latent_dim,
              "model.bias": False if args.no_bias else None, "model.alpha": args.alpha,
              "model.channels": list(args.channels) if args.channels else None, "model.upsample": args.upsample,
              "model.output_activation": args.output_activation, "data.kind": args.data, "data.n": args.n_train,
              "data.fresh": True if args.fresh else None,
              "data.exclude": [list(iv) for iv in args.exclude] if args.exclude else None, "data.r_max": args.r_max,
              "data.rendering": args.rendering, "data.scheme": args.scheme,
              "data.hole": list(args.hole) if args.hole else None, "data.stride": args.stride,
              "data.fraction": args.fraction, "data.quadrant": args.quadrant, "iterations": args.iterations,
              "batch_size": args.batch_size, "lr": args.lr, "regulariser": args.regulariser,
              "reg_weight": args.reg_weight, "seed": args.seed, "log_every": args.log_every}
    partial: dict = {}
    for key, value in values.items():
        if value is not None:
            _put(partial, key, value)
    return partial


def _parse_set(text: str) -> dict:
    """``--set KEY=VALUE``: a partial config of one dotted key; the value is JSON, else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not all(part.isidentifier() for part in key.split(".")):
        raise UsageError(f"--set {text!r}: expected KEY=VALUE with a dotted config key, e.g. data.rendering=binary "
                         "or model.alpha=0.05")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = raw
    partial: dict = {}
    _put(partial, key, value)
    return partial


def _read_config(path: Path) -> dict:
    """The (partial) config in a .json or .toml file (a TrainConfig's keys, or a run's config.json)."""
    from ..training.config import config_json_loads

    _check_in_file("--config", path)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, not a config file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start})"
                         ) from None
    if path.suffix.lower() == ".toml":
        given = _read_toml(path, text)
    else:
        try:
            given = config_json_loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"--config {path}: not valid JSON ({err}); a TOML file must end in .toml") from None
        except RecursionError:
            raise UsageError(f"--config {path}: not a config (JSON nested too deeply)") from None
    if isinstance(given, dict) and "config" in given and "model" not in given:  # a run's config.json
        given = given["config"]
    if not isinstance(given, dict):
        raise UsageError(f"--config {path}: a TrainConfig must be a JSON object (keys and values), got "
                         f"{type(given).__name__}")
    return given


def _read_toml(path: Path, text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError(f"--config {path}: reading TOML needs Python >= 3.11 (or pip install tomli); "
                             "or give the config as JSON") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--config {path}: not valid TOML ({err})") from None


def train_config(args, base: dict | None = None):
    """The TrainConfig of ``geoae train``'s arguments: ``base`` (a full config dict, e.g. a recipe's
    ``config.to_dict()``; None: TrainConfig's defaults), then each ``--config`` file, then the options given,
    then each ``--set``, merged by ``TrainConfig.from_partial``. A bad value names its option, or its key and
    the file or ``--set`` that gave it."""
    from ..data import DiracData, DiskData
    from ..training import TrainConfig
    from ..training.config import ConfigError, merge_partial

    base = TrainConfig().to_dict() if base is None else base
    layers = [(f"--config {path}", _read_config(path)) for path in args.config or ()]
    options = _option_values(args)
    layers.append((OPTIONS_SOURCE, options))
    layers += [(f"--set {text}", _parse_set(text)) for text in args.set or ()]
    sources, partials = [name for name, _ in layers], [partial for _, partial in layers]
    merged = merge_partial(base, *partials)
    kind = merged.get("data", {}).get("kind", "disks") if isinstance(merged.get("data"), dict) else None
    fields = {"disks": DiskData, "diracs": DiracData}.get(kind)
    if fields is not None:
        known = {f.name for f in dataclasses.fields(fields)}
        wrong = [TRAIN_OPTIONS[f"data.{k}"] for k in options.get("data", {}) if k not in known | {"kind"}]
        if wrong:
            other = "diracs" if kind == "disks" else "disks"
            raise UsageError(f"{', '.join(wrong)}: only for {other}, not for --data {kind}")
    try:
        return TrainConfig.from_partial(base, *partials, sources=sources)
    except ConfigError as err:
        if err.source == OPTIONS_SOURCE and err.key in TRAIN_OPTIONS:
            raise UsageError(TRAIN_OPTIONS[err.key] + err.message[len(err.key):]) from None
        raise UsageError(str(err)) from None


def check_train(args, base: dict | None = None):
    """``base``: the config dict the options apply to (a recipe's, when ``--recipe`` selects one); None:
    TrainConfig's defaults."""
    from ..training import is_finished, load_run
    from ..training.rundir import check_run_directory

    _check_out_dir("--out", args.out)
    with _named({"out_dir": "--out"}):
        check_run_directory(args.out)  # a folder of the user's own files is not a run directory
    _check_tracking(args)
    if base is None and getattr(args, "recipe", None) is not None:
        from ..recipes import get_recipe

        base = get_recipe(args.recipe).config("paper").to_dict()
    config = train_config(args, base)
    from ..settings import read_settings
    from ..training.loop import check_backend

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
            raise UsageError("--mlflow: expected a tracking URI such as sqlite:///mlflow.db, got an empty string")
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise UsageError("--mlflow needs mlflow: pip install geoae[mlflow]") from None


def check_reproduce(args):
    from ..experiments.registry import IDS as EXPERIMENTS
    from ..models import official_model_path
    from ..training.schedule import check_executor

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
    if args.recipe is not None:
        from ..recipes import NAMES

        names = [s.strip() for s in args.recipe.split(",")]
        bad = [n for n in names if n not in NAMES]
        if bad:
            what = f"unknown recipe {bad[0]!r}" if all(names) else "an empty name"
            raise UsageError(f"--recipe {args.recipe!r}: {what}; give comma-separated names from {', '.join(NAMES)}")
        args.recipe = tuple(dict.fromkeys(names))
    _check_out_dir("--out", args.out)
    from ..experiments.runner import check_official_weights, check_places

    check_places(args.out, args.profile, ids)  # runs/ and the claims' folders writable
    check_executor(args.executor, args.address)  # a bad choice, ray without the Ray package, a cluster not there
    if args.official_weights is not None:
        _check_in_file("--official-weights", args.official_weights)
        from ..models import load_official_model

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
    """The runs to export (``tracking.find_runs``: run directories, or folders of them)."""
    from ..tracking import check_history, find_runs
    from ..training.rundir import read_history

    try:
        runs = find_runs(args.run_dirs)
    except ValueError as err:
        raise UsageError(f"RUN_DIR {err}") from None
    for run_dir, _ in runs:  # every history checked before any is written
        try:
            history = read_history(run_dir)
        except (OSError, ValueError) as err:
            raise UsageError(f"{run_dir}: its history cannot be read ({err})") from None
        check_history(run_dir, history)
    _check_out_dir("--out", args.out)
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UsageError("--to tensorboard needs the tensorboard package: pip install geoae[tensorboard]") from None
    return runs


def check_explore(args) -> str:
    """The page's text (everything it needs is read and checked here; writing it is all that is left)."""
    from ..explorer import explorer_html
    from ..training import is_finished, load_run

    _check_out_file("--out", args.out, (".html", ".htm"))
    if args.label is not None and len(args.label) != len(args.run_dirs):
        raise UsageError(f"--label: one per RUN_DIR: {len(args.run_dirs)} run(s), {len(args.label)} label(s)")
    runs = []
    for run_dir in args.run_dirs:
        if not is_finished(run_dir):
            raise UsageError(f"RUN_DIR {run_dir} is not a finished run directory (it needs metrics.json and "
                             "model.safetensors; train it with `geoae train` or `geoae reproduce`)")
        runs.append(load_run(run_dir))  # CheckpointError names a damaged file
    with _named({}):  # the message names the run or the mismatch
        return explorer_html(runs, title=args.title or f"geoae explorer: {len(runs)} run(s)", labels=args.label)


def check_bench(args):
    from ..bench import NETWORKS, _config
    from ..training.config import MAX_BATCH

    _check_int("--batch-size", args.batch_size, 1, MAX_BATCH)
    _check_int("--threads", args.threads, 1, 1024)
    for option, value, lo, hi in (("--steps", args.steps, 1, MAX_STEPS), ("--repeats", args.repeats, 1, MAX_REPEATS),
                                  ("--sweep", args.sweep, 0, MAX_REPEATS),
                                  ("--sweep-steps", args.sweep_steps, 1, MAX_STEPS),
                                  ("--sweep-repeats", args.sweep_repeats, 1, MAX_REPEATS)):
        _check_int(option, value, lo, hi)
    with _named({"model.size": "--size", "data.size": "--size"}):
        _config(args.batch_size, not args.no_bias, args.steps, args.size).validate()
    unknown = sorted({n for n in args.networks.split(",") if n} - set(NETWORKS))
    if unknown:
        raise UsageError(f"--networks: each must be one of {', '.join(NETWORKS)} (comma-separated, '' for none), "
                         f"got {', '.join(map(repr, unknown))}")
    if getattr(args, "level", "native") != "native":
        from ..environment import level_environment

        try:
            level_environment(args.level)
        except ValueError as err:
            raise UsageError(f"--{err}") from None
        march = os.environ.get("GEOAE_MARCH")
        if march not in (None, "", args.level):
            raise UsageError(f"--level {args.level} builds the kernels for {args.level}, but GEOAE_MARCH={march} "
                             "asks for another build: unset GEOAE_MARCH or give the same level")


def check_info(args):
    return None


def check_convert_keras(args):
    from ..official import check_conversion

    _check_in_file("H5", args.h5)
    _check_out_dir("--out", args.out)
    with _named({}):
        return check_conversion(args.h5, args.out)


