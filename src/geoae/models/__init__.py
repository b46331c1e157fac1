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

from typing import NamedTuple

import torch
from torch import nn

from ..spec import LayerSpec, NetSpec, network_spec
from .config import (
    ARCHS,
    DEFAULT_ALPHA,
    DEFAULT_SIZE,
    ENCODERS,
    OUTPUT_ACTIVATIONS,
    UPSAMPLES,
    ModelConfig,
    default_channels,
)
from .layers import (
    CoordConv,
    UpsampleConv,
    conv_weight,
    coordinate_bias,
    coordinate_maps,
    upsample_kernel,
    upsample_zeros,
)

__all__ = [
    "ARCHS",
    "DEFAULT_SIZE",
    "DEFAULT_ALPHA",
    "UPSAMPLES",
    "OUTPUT_ACTIVATIONS",
    "ENCODERS",
    "ModelConfig",
    "default_channels",
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


class AEOutput(NamedTuple):
    z: torch.Tensor  # (B, d) code
    x_hat: torch.Tensor  # (B, 1, m, m) or (B, 1, n) reconstruction


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
            from ..handcrafted import PositionEncoder

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
