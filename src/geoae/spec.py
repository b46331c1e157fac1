"""The one description of an autoencoder's layer stack, from which every executor is built.

The network of ICLR 2018 §3.1 (Table 1), in our notation: the encoder E^{l+1} = φ_α(E^l ∗ w^l + b^l) (stride-2
convolutions) and the decoder D^{l+1} = φ_α(U(D^l) ∗ w^l + b^l) (upsample ×2 with U of ICLR 2018 Prop. 1, then
convolve). A
``NetSpec`` lists these layers explicitly (operation, channels, kernel, stride, padding, upsampling mode,
activation, bias, coordinate channels, frozen weights, grid sizes), derived once from a ``ModelConfig`` by
``network_spec``. The torch modules (``models.Autoencoder``), the plain benchmark reference
(``bench.PlainAutoencoder``) and the fused C executor (``fused.FusedAutoencoder``) are all built from it;
what an executor can run is decided from the spec's features (``NetSpec.features``), never from an
architecture's name.

Operations (``LayerSpec.op``), on each spatial axis of length n_in (kernel k, taps a = 0 … k−1):

- ``conv``: out[i] = Σ_a w[a] in[s·i + a − p] (stride s, padding p; zero outside);
- ``upconv``: "upsample ×2 (``zeros``: the paper's U, zero insertion; ``nearest``), then a stride-1 conv
  with padding 1": out[i] = Σ_a w[a] U(in)[i + a − 1], U(in)[t] = in[t/2] for even t (``zeros``; odd t
  give 0) or in[⌊t/2⌋] (``nearest``);
- ``convT``: the transposed convolution of the authors' Keras code (stride 2, no padding):
  out[o] = Σ_{a, i: o = 2i + a} w[a] in[i], n_out = 2 n_in + k − 2.

``tap_table`` writes each operation as the input index read by tap a of output i (−1: nothing), the form
in which the fused kernels compute all three with the same loops. Weights are always handed to an executor
in the convolution layout (out, in, *k) of these formulas (``conv_kernel``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OPS", "LayerSpec", "NetSpec", "network_spec", "tap_table"]

OPS = ("conv", "upconv", "convT")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: out = act(op(in; w) + b [+ conv(coordinate maps; w_C)]).

    Shapes: input (B, cin, *(n_in,) * ndim), output (B, cout, *(n_out,) * ndim). ``coord``: the layer also
    reads ``ndim`` coordinate maps (its stored weight has cin + ndim input channels, coordinates last).
    ``frozen``: fixed hand-crafted weights, never trained.
    """

    stage: str  # "encoder" | "decoder"
    op: str  # one of OPS
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int
    upsample: str | None  # "zeros" | "nearest" for op "upconv", else None
    activation: str  # "leaky" | "identity" | "sigmoid"
    alpha: float  # slope of the leaky ReLU
    bias: bool
    coord: bool
    frozen: bool
    ndim: int
    n_in: int
    n_out: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.cin, *(self.n_in,) * self.ndim)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.cout, *(self.n_out,) * self.ndim)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image that read real input samples (taps on inserted zeros or padding
        not counted), over all output pixels and channels."""
        per_axis = sum(t >= 0 for t in tap_table(self))
        return per_axis**self.ndim * self.cin * self.cout


@dataclass(frozen=True)
class NetSpec:
    """The whole autoencoder: encoder layers (input → code z (B, d)), then decoder layers (z → x̂)."""

    ndim: int
    size: int
    latent_dim: int
    layers: tuple[LayerSpec, ...]

    @property
    def encoder(self) -> tuple[LayerSpec, ...]:
        return tuple(ly for ly in self.layers if ly.stage == "encoder")

    @property
    def decoder(self) -> tuple[LayerSpec, ...]:
        return tuple(ly for ly in self.layers if ly.stage == "decoder")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(1, m, m) or (1, n): one image without the batch axis."""
        return self.layers[0].in_shape

    def features(self) -> frozenset[str]:
        """What an executor must know to run this network, e.g. ``{'conv', 'upconv:zeros', 'act:leaky',
        'bias', 'coord', 'frozen', 'kernel:3', 'ndim:2'}``."""
        out: set[str] = {f"ndim:{self.ndim}"}
        for ly in self.layers:
            out |= {ly.op if ly.upsample is None else f"{ly.op}:{ly.upsample}", f"act:{ly.activation}",
                    f"kernel:{ly.kernel}"}
            out |= {name for name, on in (("bias", ly.bias), ("coord", ly.coord), ("frozen", ly.frozen)) if on}
        return frozenset(out)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of one image (real taps only)."""
        return sum(ly.macs for ly in self.layers)


def _out_len(op: str, n_in: int, kernel: int, stride: int, padding: int) -> int:
    if op == "conv":
        return (n_in + 2 * padding - kernel) // stride + 1
    if op == "upconv":
        return 2 * n_in
    return stride * (n_in - 1) + kernel  # convT, no padding


def network_spec(config) -> NetSpec:
    """The layer stack that ``config`` (a ``models.ModelConfig``) describes; ``config`` is validated.

    ``paper64`` / ``paper1d``: 3-tap stride-2 convs with padding 1, then ``upconv`` layers (SPEC 2.1);
    ``keras63``: 3-tap stride-2 convs without padding, then ``convT`` layers (SPEC 2.2); ``encoder='position'``:
    the frozen 2-tap stride-2 chain of ``models.PositionEncoder`` (3 → (1 + ndim) channels, no bias).
    """
    config.validate()
    ndim, alpha, chans = config.ndim, config.negative_slope, config.layer_channels
    keras = config.arch == "keras63"
    layers: list[LayerSpec] = []
    n = config.size
    if config.encoder == "position":
        c = 1 + ndim
        enc = [(1 if i == 0 else c, c, 2, 0, False, False, True) for i in range(config.n_layers)]
    else:
        enc = [(cin, cout, 3, 0 if keras else 1, config.bias, config.coord, False)
               for cin, cout in zip(chans[:-1], chans[1:], strict=True)]
    for cin, cout, k, pad, bias, coord, frozen in enc:
        n_out = _out_len("conv", n, k, 2, pad)
        layers.append(LayerSpec("encoder", "conv", cin, cout, k, 2, pad, None, "leaky", alpha, bias, coord, frozen,
                                ndim, n, n_out))
        n = n_out
    rev = chans[::-1]
    op = "convT" if keras else "upconv"
    for i, (cin, cout) in enumerate(zip(rev[:-1], rev[1:], strict=True)):
        act = config.output_activation if i == len(rev) - 2 else "leaky"
        n_out = _out_len(op, n, 3, 2, 0)
        layers.append(LayerSpec("decoder", op, cin, cout, 3, 2 if keras else 1, 0 if keras else 1,
                                None if keras else config.upsample, act, alpha, config.bias, config.coord, False,
                                ndim, n, n_out))
        n = n_out
    if n != config.size:  # a defect of this function, not of the user's input
        raise AssertionError(f"network_spec: decoder ends at {n}, expected {config.size}")
    return NetSpec(ndim, config.size, config.latent_dim, tuple(layers))


def tap_table(layer: LayerSpec) -> list[int]:
    """Along one spatial axis: the input index read by tap a of output i at ``[i * kernel + a]``, −1 where
    the tap reads padding or an inserted zero (module docstring). Length n_out · kernel."""
    k, n_in = layer.kernel, layer.n_in
    table = []
    for i in range(layer.n_out):
        for a in range(k):
            if layer.op == "conv":
                r = layer.stride * i + a - layer.padding
                table.append(r if 0 <= r < n_in else -1)
            elif layer.op == "upconv":
                t = i + a - layer.padding
                ok = 0 <= t < 2 * n_in and (layer.upsample == "nearest" or t % 2 == 0)
                table.append(t // 2 if ok else -1)
            else:  # convT: o = stride * i + a
                t = i - a
                ok = t >= 0 and t % layer.stride == 0 and t // layer.stride < n_in
                table.append(t // layer.stride if ok else -1)
    return table


def check_spec_shapes(spec: NetSpec) -> None:
    """Consecutive layers fit (channels and grid sizes): raises AssertionError otherwise."""
    for a, b in zip(spec.layers[:-1], spec.layers[1:], strict=True):
        if (a.cout, a.n_out) != (b.cin, b.n_in):
            raise AssertionError(f"layers do not fit: {a} then {b}")
    if spec.encoder[-1].n_out != 1 or spec.encoder[-1].cout != spec.latent_dim:
        raise AssertionError("the encoder must end at a 1-sample code of latent_dim channels")
    if not math.isfinite(spec.layers[0].alpha):
        raise AssertionError("alpha must be finite")
