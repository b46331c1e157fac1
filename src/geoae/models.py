"""The autoencoders of Newson, Almansa, Gousseau & Ladjal, *Processing Simple Geometric Attributes with
Autoencoders*, JMIV 62 (2020), and hand-crafted networks of the same family.

Encoder (ICLR 2018 §3.1, Table 1; our notation): every layer is a stride-2 convolution followed by a leaky ReLU,

    E^{l+1} = φ_α(E^l ∗ w^l + b^l),        φ_α(t) = max(t, α t),

so a 64 × 64 image shrinks 64 → 32 → … → 1 in log2(64) = 6 layers and the code z ∈ R^d is the output of
the last leaky ReLU. The decoder mirrors it: each layer upsamples by 2 (the paper's operator U, zero
insertion; nearest-neighbour as an option), convolves and applies φ_α,

    D^{l+1} = φ_α(U(D^l) ∗ w^l + b^l).

Prop. 1 (positive homogeneity): without biases, D(λz) = λ D(z) and E(λx) = λ E(x) for every λ > 0,
because convolutions are linear and φ_α(λt) = λ φ_α(t). A sigmoid output layer breaks this.

Architectures (``ModelConfig.arch``):

- ``paper64``: the paper's network, (B, 1, m, m) with m a power of two, 3 × 3 kernels, padding 1.
- ``paper1d``: the same family with Conv1d, (B, 1, n), for Dirac signals.
- ``keras63``: the authors' released Keras code, 63 × 63, ``padding='valid'``, Conv2d down and
  ConvTranspose2d up, LeakyReLU(0.05) everywhere; ``load_official_model`` reads their trained weights.

Implementation note: "upsample by 2 then 3 × 3 conv (padding 1)" is computed as one stride-2 transposed
convolution with a kernel derived from the stored Conv-style weight (flipped for zero insertion; flipped
and summed over 2 × 2 shifts for nearest). It is exactly the two-step operation (tested against
``UpsampleConv.forward_explicit``) and about 5× faster on CPU.

Coordinate channels (beyond the paper; ``ModelConfig.coord=True``): the "CoordConv" fix of Liu et al.
(NeurIPS 2018) for position tasks. Every convolution of encoder and decoder sees, concatenated to its input,
ndim fixed maps of the pixel coordinates in [-1, 1] (``coordinate_maps``: row then column) at the
resolution it convolves (for a decoder layer: after the upsampling). As the coordinate maps are constant,
conv([x, C], [w_x, w_C]) = conv(x, w_x) + conv(C, w_C): the second term, a learned position-dependent bias
map, is computed once per batch. Constant inputs act like biases, so a coord net is not homogeneous
(Prop. 1) even with ``bias=False``.

Frozen hand-crafted encoder (beyond the paper's end-to-end training; ``ModelConfig.encoder='position'``):
the encoder is the fixed ``PositionEncoder`` below (no trainable weight), so training fits the decoder
alone to D(E_pos(x)) ≈ x with the exact code z = (1, p/n): decoding position is studied apart from encoding.

Hand-crafted networks (SPEC 2.3) make the theory concrete: ``IntegratingEncoder`` outputs the area
Σ x exactly; ``PositionEncoder`` outputs (mass, position/n) for every position exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .checks import finite_real
from .data import MAX_SIZE
from .spec import LayerSpec, NetSpec, network_spec

__all__ = [
    "ARCHS",
    "DEFAULT_SIZE",
    "UPSAMPLES",
    "OUTPUT_ACTIVATIONS",
    "ENCODERS",
    "ModelConfig",
    "AEOutput",
    "Autoencoder",
    "UpsampleConv",
    "CoordConv",
    "coordinate_maps",
    "coordinate_bias",
    "conv_weight",
    "check_input",
    "upsample_zeros",
    "upsample_kernel",
    "build_model",
    "count_parameters",
]

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


class AEOutput(NamedTuple):
    z: torch.Tensor  # (B, d) code
    x_hat: torch.Tensor  # (B, 1, m, m) or (B, 1, n) reconstruction


def upsample_zeros(x: torch.Tensor) -> torch.Tensor:
    """The paper's U: (B, C, *S) → (B, C, *2S), x at even indices 2i, zeros elsewhere (1 → 2 gives [v, 0])."""
    out = x.new_zeros(*x.shape[:2], *(2 * s for s in x.shape[2:]))
    out[(..., *(slice(None, None, 2),) * (x.dim() - 2))] = x
    return out


def upsample_kernel(weight: torch.Tensor, mode: str) -> torch.Tensor:
    """Transposed-conv kernel (in, out, *k) equal to "upsample ×2 (mode), then conv(weight, padding=1)"."""
    ndim = weight.dim() - 2
    k = weight.transpose(0, 1).flip(list(range(2, 2 + ndim)))
    if mode == "nearest":  # nearest = zero insertion followed by a box [1, 1] on each axis
        for axis in range(ndim):
            k = F.pad(k, [0, 0] * axis + [0, 1]) + F.pad(k, [0, 0] * axis + [1, 0])
    return k


_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


@functools.lru_cache(maxsize=32)
def _coordinate_maps(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    axes = [torch.linspace(-1.0, 1.0, s, dtype=dtype) if s > 1 else torch.zeros(1, dtype=dtype) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def coordinate_maps(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The CoordConv channels for a spatial ``shape`` (n,) or (H, W): (ndim, *shape), channel a holds the
    index along axis a (row, then column) mapped linearly onto [-1, 1] (0 for an axis of length 1)."""
    return _coordinate_maps(tuple(int(s) for s in shape), dtype).clone()


def _coordinate_term(weight: torch.Tensor, shape, stride: int) -> torch.Tensor:
    """conv(C, w_C) of the coordinate maps C at ``shape``: (1, out, *shape'), broadcast over the batch."""
    ndim = weight.dim() - 2
    maps = _coordinate_maps(tuple(int(s) for s in shape), weight.dtype)[None]
    return _CONV[ndim](maps, weight, None, stride=stride, padding=1)


def coordinate_bias(layer: LayerSpec, weight: torch.Tensor) -> torch.Tensor:
    """The coordinate channels' contribution to a ``coord`` layer's output, (cout, *S_out): a learned,
    position-dependent bias map. ``weight`` is the layer's stored weight (cout, cin + ndim, *3)."""
    w_c = weight[:, layer.cin :]
    if layer.op == "conv":  # read at the input grid with the layer's stride
        return _coordinate_term(w_c, (layer.n_in,) * layer.ndim, layer.stride)[0]
    return _coordinate_term(w_c, (layer.n_out,) * layer.ndim, 1)[0]  # upconv: on the upsampled grid


def conv_weight(layer: LayerSpec, weight: torch.Tensor) -> torch.Tensor:
    """The layer's kernel in the convolution layout of ``spec`` (cout, cin, *k), from its stored weight:
    the image channels of a ``coord`` layer, the (cin, cout, *k) weight of a ``convT`` layer transposed."""
    if layer.op == "convT":
        return weight.transpose(0, 1)
    return weight[:, : layer.cin] if layer.coord else weight


class UpsampleConv(nn.Module):
    """One decoder step U(x) ∗ w + b: upsample ×2 (``zeros`` or ``nearest``), then 3-tap conv with padding 1.

    ``weight`` has the Conv layout (out, in, *3) so the semantics are "upsample then conv"; ``forward``
    runs the equivalent stride-2 transposed convolution. With ``coord=True`` the conv also reads the
    ``ndim`` coordinate maps of the upsampled grid (weight (out, in + ndim, *3), the last ndim input
    channels for the coordinates).
    """

    def __init__(
        self, ndim: int, in_channels: int, out_channels: int, mode: str = "zeros", bias: bool = True,
        coord: bool = False,
    ):
        super().__init__()
        if mode not in UPSAMPLES:
            raise ValueError(f"mode must be one of {UPSAMPLES}, got {mode!r}")
        self.ndim, self.mode, self.in_channels, self.coord = ndim, mode, in_channels, coord
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels + (ndim if coord else 0), *(3,) * ndim))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight[:, : self.in_channels] if self.coord else self.weight
        kernel = upsample_kernel(weight, self.mode)
        extra = 1 if self.mode == "zeros" else 0  # 3-tap kernel needs output_padding, the 4-tap one not
        out = _CONV_T[self.ndim](x, kernel, self.bias, stride=2, padding=1, output_padding=extra)
        if self.coord:
            out = out + _coordinate_term(self.weight[:, self.in_channels :], out.shape[2:], stride=1)
        return out

    def forward_explicit(self, x: torch.Tensor) -> torch.Tensor:
        """Reference two-step version (slow): explicit upsampling, [coordinate maps,] then convolution."""
        if self.mode == "zeros":
            up = upsample_zeros(x)
        else:
            up = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.coord:
            maps = coordinate_maps(up.shape[2:], up.dtype)
            up = torch.cat([up, maps.expand(len(up), *maps.shape)], dim=1)
        return _CONV[self.ndim](up, self.weight, self.bias, padding=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.weight.shape[0]}, ndim={self.ndim}, mode={self.mode!r}"
                + (", coord=True" if self.coord else ""))


class CoordConv(nn.Module):
    """An encoder step with coordinate channels: conv([x, C], w) + b, 3-tap kernels, stride 2, padding 1,
    C = ``coordinate_maps`` of the input grid; weight (out, in + ndim, *3), coordinates last."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.ndim, self.in_channels = ndim, in_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels + ndim, *(3,) * ndim))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _CONV[self.ndim](x, self.weight[:, : self.in_channels], self.bias, stride=2, padding=1)
        return out + _coordinate_term(self.weight[:, self.in_channels :], x.shape[2:], stride=2)

    def forward_explicit(self, x: torch.Tensor) -> torch.Tensor:
        """Reference version: the coordinate maps concatenated to the input, then one convolution."""
        maps = coordinate_maps(x.shape[2:], x.dtype)
        xc = torch.cat([x, maps.expand(len(x), *maps.shape)], dim=1)
        return _CONV[self.ndim](xc, self.weight, self.bias, stride=2, padding=1)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.weight.shape[0]}, ndim={self.ndim}, coord=True"


def check_input(x: torch.Tensor, shape: tuple[int, ...], *, what: str = "input") -> None:
    """Refuse anything but a float32 / float64 tensor of shape (B, *shape), naming what was given: TypeError
    for another type or dtype, ValueError for another shape."""
    want = f"(B, {', '.join(map(str, shape))})"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {what} as a torch.Tensor of shape {want}, got {type(x).__name__}")
    if x.dim() != 1 + len(shape) or x.shape[1:] != shape:
        raise ValueError(f"expected {what} of shape {want}, got {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"expected {what} of dtype float32 (or float64), got {x.dtype}")


_check_input = check_input


def _activation(kind: str, alpha: float) -> nn.Module:
    return {"leaky": lambda: nn.LeakyReLU(alpha), "identity": nn.Identity, "sigmoid": nn.Sigmoid}[kind]()


def _layer_module(ly: LayerSpec) -> nn.Module:
    """The torch module of one layer of the spec (weights initialised later)."""
    if ly.op == "upconv":
        return UpsampleConv(ly.ndim, ly.cin, ly.cout, ly.upsample, bias=ly.bias, coord=ly.coord)
    if ly.op == "convT":
        return nn.ConvTranspose2d(ly.cin, ly.cout, ly.kernel, stride=ly.stride, bias=ly.bias)
    if ly.coord:
        return CoordConv(ly.ndim, ly.cin, ly.cout, bias=ly.bias)
    conv = nn.Conv1d if ly.ndim == 1 else nn.Conv2d
    return conv(ly.cin, ly.cout, ly.kernel, stride=ly.stride, padding=ly.padding, bias=ly.bias)


class Autoencoder(nn.Module):
    """x (B, 1, m, m) [or (B, 1, n)] → z (B, d) → x_hat of the input's shape. Build with ``build_model``."""

    def __init__(self, config: ModelConfig, *, seed: int | torch.Generator | None = 0):
        super().__init__()
        self.config = config
        self.spec: NetSpec = network_spec(config)  # validates config
        self.input_shape = self.spec.input_shape
        frozen = None  # the hand-crafted layers of a frozen encoder (requires_grad False)
        if config.encoder == "position":
            from .handcrafted import PositionEncoder

            frozen = iter([m for m in PositionEncoder(config.size, ndim=config.ndim).encoder if hasattr(m, "weight")])
        enc: list[nn.Module] = []
        for ly in self.spec.encoder:
            enc += [next(frozen) if ly.frozen else _layer_module(ly), _activation(ly.activation, ly.alpha)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*(m for ly in self.spec.decoder
                                       for m in (_layer_module(ly), _activation(ly.activation, ly.alpha))))
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | torch.Generator | None = 0) -> None:
        """Glorot-uniform weights, zero biases, from ``seed`` (None: torch's global RNG); frozen
        (hand-crafted) layers keep their weights."""
        gen = torch.Generator().manual_seed(seed) if isinstance(seed, int) else seed
        with torch.no_grad():
            for layer in self.conv_layers():
                if not layer.weight.requires_grad:
                    continue
                nn.init.xavier_uniform_(layer.weight, generator=gen)
                if layer.bias is not None:
                    layer.bias.zero_()

    def conv_layers(self) -> list[nn.Module]:
        """Encoder then decoder layers that carry a ``weight`` (and maybe a ``bias``), input to output."""
        return [m for m in (*self.encoder, *self.decoder) if hasattr(m, "weight")]

    def encoder_weights(self) -> list[torch.Tensor]:
        """Encoder convolution kernels (no biases), for L2 regularisers."""
        return [m.weight for m in self.encoder if hasattr(m, "weight")]

    def decoder_weights(self) -> list[torch.Tensor]:
        """Decoder convolution kernels (no biases), for L2 regularisers."""
        return [m.weight for m in self.decoder if hasattr(m, "weight")]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """E: (B, 1, m, m) → z (B, d), the output of the last leaky ReLU."""
        _check_input(x, self.input_shape)
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D: z (B, d) → x_hat (B, 1, m, m)."""
        check_input(z, (self.config.latent_dim,), what="a code")
        return self.decoder(z.view(*z.shape, *(1,) * self.config.ndim))

    def forward(self, x: torch.Tensor) -> AEOutput:
        z = self.encode(x)
        return AEOutput(z, self.decode(z))


def build_model(config: ModelConfig, *, seed: int | torch.Generator | None = 0) -> Autoencoder:
    """The one factory: validate ``config``, build the network, initialise it deterministically from
    ``seed`` (an int, a torch.Generator, or None for torch's global RNG)."""
    config.validate()
    return Autoencoder(config, seed=seed)


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in all parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


# The authors' model (``official.py``) and the hand-crafted networks (``handcrafted.py``) live in modules of their
# own, which import this one: they are reached from here lazily (PEP 562), so both import orders work.
_ELSEWHERE = {"official_model_path": "official", "load_official_model": "official", "OFFICIAL_WEIGHTS": "official",
              "OFFICIAL_WEIGHTS_ENV": "official", "IntegratingEncoder": "handcrafted", "PositionEncoder": "handcrafted"}


def __getattr__(name: str):
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(f"geoae.{_ELSEWHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
