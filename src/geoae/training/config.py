"""``TrainConfig``: everything that determines a training run, validated, with a stable JSON form and digest.

The objective (Newson et al., JMIV 2020, Sec. 3 and 4.3) is L(θ) = MSE + λ·ψ(θ, x) with ψ one of
``objectives.REGULARISERS``; Adam with (lr, betas), ``iterations`` steps of ``batch_size`` images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import numbers
from dataclasses import dataclass, field

from ..data import DiracData, DiskData, finite_real
from ..models import ModelConfig
from .objectives import REGULARISERS

__all__ = ["TrainConfig", "MAX_ITERATIONS", "MAX_BATCH", "offset_seed", "config_json_loads"]

MAX_ITERATIONS = 10**8
MAX_BATCH = 65536
MAX_SEED = 2**63 - 1


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

    @property
    def effective_data_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["data"] = {"kind": "diracs" if isinstance(self.data, DiracData) else "disks"} | _plain(self.data)
        d["betas"] = list(self.betas)
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

    def digest(self) -> str:
        """A short hash of the config: names run directories and ties checkpoints to their config."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


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
