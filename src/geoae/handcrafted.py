"""Hand-crafted networks (SPEC 2.3) that make the theory concrete: ``IntegratingEncoder`` outputs the area Σ x
exactly (bias-free stride-2 convolutions of 2 × 2 taps of weight 1); ``PositionEncoder`` outputs (mass,
position/n) for every position of a Dirac exactly (two channels, non-negative two-tap kernels, so the leaky
ReLUs act as the identity); its effective linear filter is a ramp (P1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .models import _check_input
from .models.config import _is_int, _is_power_of_two

__all__ = ["IntegratingEncoder", "PositionEncoder"]


def _fixed_conv_chain(kernels: list[torch.Tensor], alpha: float) -> nn.Sequential:
    """Bias-free stride-2 convolutions with the given frozen (out, in, *2) kernels, each followed by φ_α."""
    layers: list[nn.Module] = []
    for k in kernels:
        conv = (nn.Conv1d if k.dim() == 3 else nn.Conv2d)(k.shape[1], k.shape[0], 2, stride=2, bias=False)
        conv.weight.data.copy_(k)
        conv.weight.requires_grad_(False)
        layers += [conv, nn.LeakyReLU(alpha)]
    return nn.Sequential(*layers)


def _check_handcrafted(size: int, ndim: int) -> int:
    if not (_is_int(size) and _is_power_of_two(size)):
        raise ValueError(f"size must be a power of two >= 2, got {size!r}")
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 or 2, got {ndim!r}")
    return int(math.log2(size))


class IntegratingEncoder(nn.Module):
    """z = Σ_p x[p] (the area of a disk) exactly: log2(m) bias-free stride-2 convs with all-ones 2 × 2 taps.

    For non-negative x every pre-activation is ≥ 0, so φ_α is the identity whatever α.
    """

    def __init__(self, size: int = 64, ndim: int = 2, alpha: float = 0.2):
        super().__init__()
        n_layers = _check_handcrafted(size, ndim)
        self.input_shape = (1, *(size,) * ndim)
        self.encoder = _fixed_conv_chain([torch.ones(1, 1, *(2,) * ndim)] * n_layers, alpha)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, m, m) or (B, 1, n) non-negative → z (B, 1) = Σ x."""
        _check_input(x, self.input_shape)
        return self.encoder(x).flatten(1)

    forward = encode


def _position_kernel(ndim: int, first: bool) -> torch.Tensor:
    """One layer of the position encoder, channels (s, q_1, …, q_ndim), kernel (1+ndim, in, *2):

    s' = Σ_children s;  q_a' = ½ Σ_children q_a + ½ Σ_{children in the upper half along axis a} s.
    The first layer reads the input x as s (q = 0), so it has one input channel.
    """
    c = 1 + ndim
    k = torch.zeros(c, 1 if first else c, *(2,) * ndim)
    k[0, 0] = 1.0
    for a in range(ndim):
        upper = (slice(None),) * a + (1,)  # children with offset 1 along axis a
        k[1 + a, 0][upper] = 0.5
        if not first:
            k[1 + a, 1 + a] = 0.5
    return k


class PositionEncoder(nn.Module):
    """Exact position encoder: z = (s, q_1, …, q_ndim) with s = Σ_p x[p] and q_a = Σ_p x[p] p_a / n.

    Bias-free stride-2 2-tap convs with non-negative weights (leaky ReLUs act as the identity on
    non-negative inputs). Induction: after l layers, q in a block of 2^l samples is (offset of the mass in
    the block) / 2^l, so after log2(n) layers a unit Dirac at p (0-indexed) gives s = 1 and q = p / n
    exactly (dyadic, hence exact in float32): the affine map is q = p / n, intercept 0, and the effective
    linear filter of q_a is the ramp p_a / n.
    """

    def __init__(self, size: int = 64, ndim: int = 1, alpha: float = 0.2):
        super().__init__()
        n_layers = _check_handcrafted(size, ndim)
        self.size, self.ndim = size, ndim
        self.input_shape = (1, *(size,) * ndim)
        kernels = [_position_kernel(ndim, first=i == 0) for i in range(n_layers)]
        self.encoder = _fixed_conv_chain(kernels, alpha)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n) or (B, 1, n, n) non-negative → z (B, 1 + ndim) = (s, q_1, …)."""
        _check_input(x, self.input_shape)
        return self.encoder(x).flatten(1)

    forward = encode

    def effective_filter(self) -> torch.Tensor:
        """z(δ_p) for every position p, shape (n, 1 + ndim) or (n, n, 1 + ndim): s = 1 and q_a = p_a / n.

        The encoder is linear on non-negative inputs, so this is its gradient at x = 1 (all activations > 0).
        """
        x = torch.ones(1, *self.input_shape, requires_grad=True)
        z = self.encode(x)[0]
        grads = [torch.autograd.grad(z[k], x, retain_graph=True)[0][0, 0] for k in range(z.numel())]
        return torch.stack(grads, dim=-1)

    def position_from_code(self, z: torch.Tensor) -> torch.Tensor:
        """Invert the map: (B, 1 + ndim) → positions (B, ndim) = n q / s (a unit Dirac's index; else the
        centre of mass)."""
        return self.size * z[:, 1:] / z[:, :1]
