"""``ModelConfig``: the hyper-parameters of one autoencoder, their allowed values and their defaults (the paper's
channels, the architectures' slopes and sizes)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..checks import finite_real
from ..data import MAX_SIZE

__all__ = ["ARCHS", "DEFAULT_SIZE", "DEFAULT_ALPHA", "UPSAMPLES", "OUTPUT_ACTIVATIONS", "ENCODERS", "ModelConfig",
           "default_channels"]

ARCHS = ("paper64", "paper1d", "keras63")
UPSAMPLES = ("zeros", "nearest")
OUTPUT_ACTIVATIONS = ("leaky", "identity", "sigmoid")
ENCODERS = ("learned", "position")

PAPER_CHANNELS = (8, 4, 4, 3, 2)  # paper64, m = 64: 1 → 8 → 4 → 4 → 3 → 2 → d
KERAS_CHANNELS = (8, 4, 3, 2)  # keras63: 1 → 8 → 4 → 3 → 2 → d
DEFAULT_ALPHA = {"paper64": 0.2, "paper1d": 0.2, "keras63": 0.05}
DEFAULT_SIZE = {"paper64": 64, "paper1d": 64, "keras63": 63}  # the size an arch implies when none is given
MAX_WIDTH = 4096  # largest code dimension d and channel count
MAX_ALPHA = 100.0  # largest leaky ReLU slope


def default_channels(n_layers: int) -> tuple[int, ...]:
    """Encoder channels after the input for a ``paper64``/``paper1d`` net of ``n_layers`` layers.

    m = 64 (6 layers) gives the paper's (8, 4, 4, 3, 2). Deeper nets prepend 8s (m = 128: (8, 8, 4, 4, 3, 2));
    shallower ones keep the wide first layer and the narrow tail (m = 32: (8, 4, 3, 2), m = 16: (8, 3, 2),
    m = 8: (8, 2), m = 4: (8,), m = 2: ()).
    """
    k = n_layers - 1
    if k >= len(PAPER_CHANNELS):
        return (8,) * (k - len(PAPER_CHANNELS)) + PAPER_CHANNELS
    if k <= 0:
        return ()
    return (8,) + PAPER_CHANNELS[len(PAPER_CHANNELS) - (k - 1) :]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_power_of_two(n: int) -> bool:
    return n >= 2 and n & (n - 1) == 0


def _numpy_real(value) -> bool:
    """A real number of another type than bool, int and float (a numpy scalar such as np.float32)."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool | int | float)


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one autoencoder; ``build_model(config)`` turns it into a network.

    ``size`` is m (images m × m) or n (1-D signals); ``alpha=None`` means the arch default (0.2 for
    paper64/paper1d, 0.05 for keras63); ``channels=None`` means ``default_channels`` (paper) or
    (8, 4, 3, 2) (keras63), else the encoder channels after the input, one per layer but the last
    (which has ``latent_dim``). ``output_activation='sigmoid'`` is allowed with ``bias=False`` but breaks
    the homogeneity D(λz) = λD(z) of Prop. 1. ``coord=True`` (paper64/paper1d only) concatenates coordinate
    channels to the input of every convolution (module docstring); it is written by ``to_dict`` only when
    True, so the dicts (and run digests) of plain configs are those of earlier versions.
    ``encoder='position'`` (paper64/paper1d, ``latent_dim = 1 + ndim``) replaces the learned encoder by
    the frozen hand-crafted ``PositionEncoder`` (code (s, q_1, …) = (1, p/n) for a unit Dirac at p); only
    the decoder is trained (``coord`` then applies to the decoder only). Like ``coord``, ``to_dict``
    writes it only when not the default ``'learned'``.
    """

    arch: str = "paper64"
    size: int = 64
    latent_dim: int = 1
    bias: bool = True
    alpha: float | None = None
    channels: tuple[int, ...] | None = None
    upsample: str = "zeros"
    output_activation: str = "leaky"
    coord: bool = False
    encoder: str = "learned"

    def __post_init__(self) -> None:
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))
        if _numpy_real(self.alpha):  # np.float32(0.05): the float it holds (validate then checks its range)
            object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions: 1 for paper1d, else 2."""
        return 1 if self.arch == "paper1d" else 2

    @property
    def n_layers(self) -> int:
        """Encoder (= decoder) depth: log2(size) for paper archs, 5 for keras63."""
        return 5 if self.arch == "keras63" else int(math.log2(self.size))

    @property
    def negative_slope(self) -> float:
        """The leaky ReLU slope α actually used."""
        return DEFAULT_ALPHA[self.arch] if self.alpha is None else float(self.alpha)

    @property
    def layer_channels(self) -> tuple[int, ...]:
        """All encoder channels, input to code: (1, c_1, …, c_{L-1}, d)."""
        if self.channels is not None:
            inner = tuple(self.channels)
        else:
            inner = KERAS_CHANNELS if self.arch == "keras63" else default_channels(self.n_layers)
        return (1, *inner, self.latent_dim)

    def validate(self) -> None:
        """Raise ValueError naming the offending parameter and its allowed values."""
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {self.upsample!r}")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {self.output_activation!r}"
            )
        if self.arch == "keras63":
            if self.size != 63:
                raise ValueError(f"size must be 63 for arch='keras63', got {self.size!r}")
            if self.upsample != "zeros":
                raise ValueError(
                    "upsample must be 'zeros' for arch='keras63' (its ConvTranspose2d is zero insertion), "
                    f"got {self.upsample!r}"
                )
        elif not (_is_int(self.size) and _is_power_of_two(self.size) and self.size <= MAX_SIZE):
            raise ValueError(
                f"size must be a power of two from 2 to {MAX_SIZE} for arch={self.arch!r} (no silent crop), "
                f"got {self.size!r}"
            )
        if not (_is_int(self.latent_dim) and 1 <= self.latent_dim <= MAX_WIDTH):
            raise ValueError(f"latent_dim must be an integer from 1 to {MAX_WIDTH}, got {self.latent_dim!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        if not isinstance(self.coord, bool):
            raise ValueError(f"coord must be True or False, got {self.coord!r}")
        if self.coord and self.arch == "keras63":
            raise ValueError("coord=True (coordinate channels) is only available for arch 'paper64' and 'paper1d'")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "position":
            if self.arch == "keras63":
                raise ValueError("encoder='position' is only available for arch 'paper64' and 'paper1d'")
            if self.latent_dim != 1 + self.ndim:
                raise ValueError(
                    f"latent_dim must be 1 + ndim = {1 + self.ndim} with encoder='position' (code (s, q_1, …)), "
                    f"got {self.latent_dim!r}"
                )
        if self.alpha is not None:
            if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
                raise ValueError(f"alpha must be a number >= 0 or None (arch default), got {self.alpha!r}")
            if not (finite_real(self.alpha) and 0 <= self.alpha <= MAX_ALPHA):
                raise ValueError(f"alpha must be a number from 0 to {MAX_ALPHA:g} or None, got {self.alpha!r}")
        if self.channels is not None:
            want = self.n_layers - 1
            if not isinstance(self.channels, tuple) or len(self.channels) != want:
                raise ValueError(
                    f"channels must be a sequence of {want} positive integers for arch={self.arch!r}, "
                    f"size={self.size} (the last of the {self.n_layers} layers has latent_dim), "
                    f"got {self.channels!r}"
                )
            if not all(_is_int(c) and 1 <= c <= MAX_WIDTH for c in self.channels):
                raise ValueError(f"channels must be integers from 1 to {MAX_WIDTH}, got {self.channels!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (channels as a list)."""
        d = dataclasses.asdict(self)
        if d["channels"] is not None:
            d["channels"] = list(d["channels"])
        if not d["coord"]:
            del d["coord"]  # the default: omitted so plain configs keep their earlier dicts and digests
        if d["encoder"] == "learned":
            del d["encoder"]  # idem
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; unknown keys and invalid values raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"a ModelConfig must be a dict (a JSON object), got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: unknown ModelConfig key(s); allowed keys: {names}")
        config = cls(**d)
        config.validate()
        return config
