"""The layers of the autoencoders that torch lacks: the decoder's "upsample ×2, then convolve"
(``UpsampleConv``, computed as one stride-2 transposed convolution), and the coordinate channels
(``coordinate_maps``, ``coordinate_bias``, ``CoordConv``); the package docstring has the maths."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import LayerSpec
from .config import UPSAMPLES

__all__ = ["UpsampleConv", "CoordConv", "coordinate_maps", "coordinate_bias", "conv_weight", "upsample_zeros",
           "upsample_kernel"]

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
