"""``TrainConfig``: everything that determines a training run, validated, with a stable JSON form and digest.

Configs compose: ``TrainConfig.from_partial(base, *overrides)`` merges partial dicts (a config file's
``{"data": {"rendering": "binary"}}``, ``--set model.alpha=0.05``) over a full one (``TrainConfig().to_dict()``,
a recipe's or a run's), later ones winning, with the couplings a person expects: the size follows the
architecture (keras63: 63) unless given, ``model.size`` and ``data.size`` move together, and a new data kind
starts from that kind's defaults. Plain dicts and ~60 lines rather than OmegaConf or Hydra: the config is
already a validated frozen dataclass with a JSON form, and neither interpolation nor Hydra's ownership of the
command line, working directory and logging would serve a ten-field config.

The objective (ICLR 2018 §3.1; the regularisers of ICLR 2018 §3.2.4 and of the released code) is
L(θ) = MSE + λ·ψ(θ, x) with ψ one of ``objectives.REGULARISERS``; Adam with (lr, betas), ``iterations`` steps
of ``batch_size`` images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..checks import finite_real
from ..data import DiracData, DiskData
from ..models import DEFAULT_SIZE, ModelConfig
from .objectives import REGULARISERS

__all__ = ["TrainConfig", "ConfigError", "merge_partial", "MAX_ITERATIONS", "MAX_BATCH", "OPTIMIZERS", "KEEPS",
           "BATCH_SAMPLINGS", "offset_seed", "config_json_loads"]

MAX_ITERATIONS = 10**8
MAX_BATCH = 65536
MAX_SEED = 2**63 - 1
OPTIMIZERS = ("adam", "adam_keras")  # ε added to √v̂ (torch) or to √v before the bias correction (Keras)
KEEPS = ("last", "best_batch")  # the weights a run ends with: the last iterate, or the released code's snapshot
BATCH_SAMPLINGS = ("replacement", "subset")  # batch indices drawn with replacement, or a random subset
# fields added after the first runs: written by ``to_dict`` only when not at their default, so the digests
# (and run directories) of earlier configs stay the same
OMIT_WHEN_DEFAULT = {"eps": 1e-8, "optimizer": "adam", "keep": "last", "keep_every": 500,
                     "batch_sampling": "replacement"}


def offset_seed(seed: int, offset: int) -> int:
    """The seed ``offset`` places after ``seed`` among 0 … 2**63 - 1, wrapping round: ``seed + offset`` for every
    seed below 2**63 - offset (the numbers of every existing run), a valid seed for the largest ones too."""
    return (seed + offset) % (MAX_SEED + 1)


def _numpy_real(value) -> bool:
    """A real number of another type than bool, int and float (a numpy scalar such as np.float32)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | int | float)


class HugeInteger:
    """An integer literal of a JSON config too long to convert (``config_from_json``): it stays in the config as
    this value, so that validation names its key ("seed must be an integer …, got <a 5000-digit integer>")."""

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<a {self.digits}-digit integer>"


MAX_DIGITS = 100  # no config value needs more (seeds: 19 digits)


def config_json_loads(text: str):
    """``json.loads`` for config files: an integer of more than ``MAX_DIGITS`` digits becomes a ``HugeInteger``
    (Python refuses to convert those over 4300 digits with an error naming neither file nor key)."""
    return json.loads(text, parse_int=lambda s: int(s) if len(s) <= MAX_DIGITS else HugeInteger(len(s.lstrip("-"))))


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")


def _check_number(name: str, value, lo: float, hi: float, *, open_lo: bool = False) -> None:
    ok = isinstance(value, int | float) and finite_real(value)
    if not ok or value > hi or value < lo or (open_lo and value == lo):
        bound = f"> {lo}" if open_lo else f">= {lo}"
        raise ValueError(f"{name} must be a finite number {bound} and <= {hi:g}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (the code version is recorded separately)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DiskData | DiracData = field(default_factory=lambda: DiskData(n=1000))
    iterations: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    regulariser: str = "none"
    reg_weight: float = 0.0
    seed: int = 0
    data_seed: int | None = None  # None: the same as `seed`
    log_every: int = 50
    checkpoint_every: int = 500
    eps: float = 1e-8  # Adam's ε
    optimizer: str = "adam"  # "adam_keras": Keras's update, ε added to √v before the bias correction (ε̂)
    keep: str = "last"  # "best_batch": the released code's kept weights (``training.loop`` docstring)
    keep_every: int = 500  # with keep="best_batch": the snapshot is considered every keep_every iterations
    batch_sampling: str = "replacement"  # "subset": each batch is a random subset (no repeats), as Keras's code

    def __post_init__(self) -> None:
        # betas as a list ([0.9, 0.999], as JSON gives them) and numpy scalars (np.float32(1e-3)) are the tuple and
        # the floats they hold; anything else is left for validate() to name
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        if isinstance(self.betas, tuple):
            object.__setattr__(self, "betas", tuple(float(b) if _numpy_real(b) else b for b in self.betas))
        for name in ("lr", "reg_weight"):
            if _numpy_real(getattr(self, name)):
                object.__setattr__(self, name, float(getattr(self, name)))

    def validate(self) -> None:
        """Raise ValueError naming the first offending field (nested ones as ``model.size``, ``data.n``), its
        value and what is allowed."""
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"model must be a ModelConfig, got {type(self.model).__name__}")
        if not isinstance(self.data, DiskData | DiracData):
            raise ValueError(f"data must be a DiskData or DiracData, got {type(self.data).__name__}")
        with _prefixed("model"):
            self.model.validate()
        with _prefixed("data"):
            self.data.validate()
        _check_int("iterations", self.iterations, 1, MAX_ITERATIONS)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        _check_int("log_every", self.log_every, 1, MAX_ITERATIONS)
        _check_int("checkpoint_every", self.checkpoint_every, 1, 10**12)
        _check_int("seed", self.seed, 0, MAX_SEED)
        if self.data_seed is not None:
            _check_int("data_seed", self.data_seed, 0, MAX_SEED)
        _check_number("lr", self.lr, 0.0, 10.0, open_lo=True)
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2 and all(
                isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        _check_number("eps", self.eps, 0.0, 1.0, open_lo=True)
        for name, allowed in (("optimizer", OPTIMIZERS), ("keep", KEEPS), ("batch_sampling", BATCH_SAMPLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        _check_int("keep_every", self.keep_every, 1, MAX_ITERATIONS)
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {', '.join(REGULARISERS)}, got {self.regulariser!r}")
        _check_number("reg_weight", self.reg_weight, 0.0, 1e12)
        want_1d = self.data.ndim == 1  # 1-D Dirac signals, or centred intervals (DiskData(ndim=1))
        if want_1d != (self.model.arch == "paper1d"):
            raise ValueError(
                f"model.arch={self.model.arch!r} does not fit the data ({type(self.data).__name__}"
                f"{', ndim=1' if want_1d else ''}): use arch 'paper1d' for 1-D signals (Diracs, intervals) and a "
                "2-D arch otherwise"
            )
        if self.model.size != self.data.size:
            raise ValueError(f"model.size={self.model.size} differs from data.size={self.data.size}")
        n_train = self.data.n if self.data.n is not None else None
        if self.batch_sampling == "subset" and (getattr(self.data, "fresh", False) or n_train is None
                                                or self.batch_size > n_train):
            raise ValueError(f"batch_sampling='subset' draws batch_size={self.batch_size} distinct images of a fixed "
                             f"training set: it needs a fixed set (fresh=False) of at least that many (data.n="
                             f"{n_train})")

    @property
    def effective_data_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["data"] = {"kind": "diracs" if isinstance(self.data, DiracData) else "disks"} | _plain(self.data)
        d["betas"] = list(self.betas)
        for key, default in OMIT_WHEN_DEFAULT.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys, wrong types and invalid values raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"a TrainConfig must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{', '.join(sorted(map(str, unknown)))}: unknown TrainConfig key(s); allowed: "
                             f"{sorted(known)}")
        try:
            if "model" in d:
                if not isinstance(d["model"], dict):
                    raise ValueError(f"model must be a JSON object, got {d['model']!r}")
                with _prefixed("model"):
                    d["model"] = ModelConfig.from_dict(d["model"])
            if "data" in d:
                if not isinstance(d["data"], dict):
                    raise ValueError(f"data must be a JSON object, got {d['data']!r}")
                with _prefixed("data"):
                    d["data"] = _data_from_dict(d["data"])
            if "betas" in d:
                if not isinstance(d["betas"], list | tuple):
                    raise ValueError(f"betas must be two numbers in [0, 1), got {d['betas']!r}")
                d["betas"] = tuple(d["betas"])
            config = cls(**d)
        except TypeError as err:  # a wrong type inside a nested config
            raise ValueError(f"invalid TrainConfig: {err}") from None
        config.validate()
        return config

    @classmethod
    def from_partial(cls, base: dict, *overrides: dict, sources: Sequence[str] | None = None) -> TrainConfig:
        """The config of ``merge_partial(base, *overrides)``. A bad value raises :class:`ConfigError`, naming
        the key and, in ``sources`` (one name per override, e.g. ``"--config a.toml"``), where it was set."""
        merged = merge_partial(base, *overrides)
        try:
            return cls.from_dict(merged)
        except ValueError as err:
            message = " ".join(str(err).split())
            m = re.match(r"[A-Za-z_][\w.]*", message)
            key = m[0] if m else ""
            setter = next((i for i in reversed(range(len(overrides))) if _sets(overrides[i], key)), None)
            source = None if setter is None or sources is None else sources[setter]
            raise ConfigError(message, key=key, source=source) from None

    def summary(self) -> str:
        """One line saying what the run is: network, data, optimisation and digest (``to_dict`` has it all)."""
        m, data = self.model, self.data
        shape = f"{m.size}" if m.arch == "paper1d" else f"{m.size}x{m.size}"
        net = f"{m.arch} {shape}, d={m.latent_dim}, {'biases' if m.bias else 'bias-free'}"
        if isinstance(data, DiracData):
            count = "each position once" if data.n is None else f"{data.n} drawn"
            what = f"Diracs ({count}, {data.ndim}-D, scheme {data.scheme})"
        else:
            shapes = "disks" if data.ndim == 2 else "intervals"
            what = f"{'fresh' if data.fresh else data.n} {shapes} ({data.rendering})"
        reg = "" if self.regulariser == "none" else f", {self.regulariser} λ={self.reg_weight:g}"
        return (f"{net}; {what}; {self.iterations} iterations of {self.batch_size}, lr {self.lr:g}{reg}, "
                f"seed {self.seed}; digest {self.digest()}")

    def digest(self) -> str:
        """A short hash of the config: names run directories and ties checkpoints to their config."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


class ConfigError(ValueError):
    """A bad value in a composed config: ``key`` (dotted, as the message starts) and ``source``, the name of the
    override that set it (None: the base, or a value derived from others)."""

    def __init__(self, message: str, *, key: str, source: str | None):
        super().__init__(message if source is None else f"{source}: {message}")
        self.message, self.key, self.source = message, key, source


def merge_partial(base: dict, *overrides: dict) -> dict:
    """``base`` (a full config dict, ``TrainConfig.to_dict()``'s form) with each partial dict of ``overrides``
    merged over it in turn: nested dicts key by key, any other value replaced. Then the couplings (none of them
    overrides a value an override gives):

    - an override that changes ``model.arch`` sets the arch's size (``models.DEFAULT_SIZE``: keras63 63,
      else 64) and, for a 1-D/2-D change, ``data.ndim``;
    - ``model.size`` and ``data.size`` follow each other (the one given sets both);
    - an override that changes ``data.kind`` starts the data from that kind's defaults (its ``n``: disks 1000,
      Diracs each position once; ``ndim`` from the arch) before its own keys.

    Pure: the inputs are not modified; the result is validated only by ``TrainConfig.from_dict``."""
    merged = _deep_merge(base, *overrides)
    model, data = merged.get("model"), merged.get("data")
    if not isinstance(model, dict) or not isinstance(data, dict) or not isinstance(base.get("model"), dict):
        return merged  # a non-object where an object belongs: from_dict says so
    base_data = base.get("data") if isinstance(base.get("data"), dict) else {}

    def given(key: str) -> bool:
        return any(_sets(o, key) for o in overrides)

    arch, base_arch = model.get("arch"), base["model"].get("arch")
    arch_changed = given("model.arch") and arch != base_arch and arch in DEFAULT_SIZE
    if arch_changed and not (given("model.size") or given("data.size")):
        model["size"] = DEFAULT_SIZE[arch]
    if given("model.size") and not given("data.size"):
        data["size"] = model.get("size")
    elif given("data.size") and not given("model.size"):
        model["size"] = data.get("size")
    elif arch_changed and not given("data.size"):
        data["size"] = model["size"]
    ndim = 1 if arch == "paper1d" else 2
    if given("data.kind") and data.get("kind", "disks") != base_data.get("kind", "disks"):
        fresh = {"kind": data.get("kind"), "size": model.get("size"), "ndim": ndim}
        if data.get("kind") == "disks":
            fresh["n"] = TrainConfig().data.n
        given_data = [o["data"] for o in overrides if isinstance(o.get("data"), dict)]
        merged["data"] = data = _deep_merge(fresh, *given_data)
    elif arch_changed and (base_arch == "paper1d") != (arch == "paper1d") and not given("data.ndim"):
        data["ndim"] = ndim
    return merged


def _deep_merge(base: dict, *overrides: dict) -> dict:
    out = {k: (_deep_merge(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for over in overrides:
        for k, v in over.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = _deep_merge(out[k], v)
            else:
                out[k] = _deep_merge(v) if isinstance(v, dict) else v
    return out


def _sets(partial, key: str) -> bool:
    """Whether the partial dict sets the dotted ``key`` (or a non-object above it)."""
    node = partial
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, dict):
            return True
    return True


@contextlib.contextmanager
def _prefixed(part: str):
    """A ValueError of a nested config names its field as ``part.field`` (its messages start with the field)."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{part}.{err}") from None


def _plain(obj) -> dict:
    """The fields of a data config; those named in its ``OMIT_WHEN_DEFAULT`` are left out when at their default
    (options added later, so that the digests of earlier configs stay the same)."""
    def conv(v):
        return [conv(x) for x in v] if isinstance(v, tuple | list) else v

    omit = getattr(obj, "OMIT_WHEN_DEFAULT", ())
    return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if not (f.name in omit and getattr(obj, f.name) == f.default)}


def _data_from_dict(d) -> DiskData | DiracData:
    """A data config from its JSON form; errors name the field (the caller prefixes ``data.``)."""
    d = dict(d)
    kind = d.pop("kind", "disks")
    classes = {"disks": DiskData, "diracs": DiracData}
    if not isinstance(kind, str) or kind not in classes:
        raise ValueError(f"kind must be one of disks, diracs, got {kind!r}")
    cls = classes[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    if set(d) - known:
        raise ValueError(f"{', '.join(sorted(map(str, set(d) - known)))}: unknown key(s) for kind {kind!r}; allowed: "
                         f"{sorted(known)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in d]
    if missing:
        raise ValueError(f"{missing[0]}: missing, required for kind {kind!r}")
    for key in ("exclude", "hole"):
        v = d.get(key)
        if v is not None:
            nested = key != "exclude" or (isinstance(v, list | tuple) and all(isinstance(x, list | tuple) for x in v))
            if not isinstance(v, list | tuple) or not nested:
                raise ValueError(f"{key} has the wrong form: {v!r}")
            d[key] = tuple(tuple(x) for x in v) if key == "exclude" else tuple(v)
    return cls(**d)
