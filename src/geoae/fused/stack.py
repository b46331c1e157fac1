"""A network's encoder or decoder as the kernel library sees it (``Stack``: C layer descriptors pointing at the
parameters), and the way back from the kernel's flat gradient buffers to the parameters' ``.grad`` (``grad_plan``,
``gradients_to_parameters``, ``coordinate_gradients``)."""

from __future__ import annotations

import ctypes
import math

import torch

from ..spec import LayerSpec, tap_table
from .abi import ACTIVATIONS, _Layer

__all__ = ["Stack", "grad_plan", "gradients_to_parameters", "coordinate_gradients"]


def _inverse(table: list[int], n_out: int, n_in: int, k: int) -> tuple[int, list[int]]:
    """For each input index r and tap a, the outputs i with table[i * k + a] == r: (multiplicity M, the
    n_in × k × M table, −1 padded)."""
    hits: list[list[int]] = [[] for _ in range(n_in * k)]
    for i in range(n_out):
        for a in range(k):
            r = table[i * k + a]
            if r >= 0:
                hits[r * k + a].append(i)
    m = max(1, max(len(h) for h in hits))
    return m, [h[q] if q < len(h) else -1 for h in hits for q in range(m)]


def _ints(values: list[int]) -> ctypes.Array:
    return (ctypes.c_int * len(values))(*values)


class Stack:
    """The encoder or the decoder as C layer descriptors (index tables from ``spec.tap_table``)."""

    def __init__(self, layers: tuple[LayerSpec, ...], modules: list[torch.nn.Module]):
        self.specs, self.modules = layers, modules
        descs, self._keep = [], []
        for ly in layers:
            one_d = ly.ndim == 1
            cols = tap_table(ly)
            rows = [0] if one_d else cols
            hin, hout, kh = (1, 1, 1) if one_d else (ly.n_in, ly.n_out, ly.kernel)
            mr, irows = _inverse(rows, hout, hin, kh)
            mc, icols = _inverse(cols, ly.n_out, ly.n_in, ly.kernel)
            tables = [_ints(t) for t in (rows, cols, irows, icols)]
            self._keep += tables
            act = ACTIVATIONS[ly.activation]
            descs.append(_Layer(hin, ly.n_in, ly.cin, hout, ly.n_out, ly.cout, kh, ly.kernel, act, ly.alpha,
                                tables[0], tables[1], None, None, None, mr, mc, tables[2], tables[3]))
        self.layers = (_Layer * len(descs))(*descs)
        self.n = len(descs)
        self._copies: dict[int, torch.Tensor] = {}
        self._copied: list[tuple[int, tuple[LayerSpec, torch.nn.Module]]] = []
        self._parameters = [p for ly, m in zip(layers, modules, strict=True)
                            for p in ((m.weight, m.bias) if ly.bias else (m.weight,))]
        self._bound: tuple[int, ...] | None = None  # the parameters' storage the descriptors point at
        self.frozen = all(ly.frozen for ly in layers)
        self._coord = [(k, ly, m) for k, (ly, m) in enumerate(zip(layers, modules, strict=True)) if ly.coord]
        self.maps: list[torch.Tensor] = []  # this step's bias maps of the coordinate channels (bind_parameters)

    def coefficients(self) -> list[torch.Tensor]:
        """Per layer, in the kernel's order: w in convolution layout (cout, cin, *k), then b, then the bias map
        (*S_out, cout) of the coordinate channels, each a differentiable function of the module's parameters."""
        from ..models import conv_weight, coordinate_bias

        out = []
        for ly, m in zip(self.specs, self.modules, strict=True):
            out.append(conv_weight(ly, m.weight).contiguous())
            if ly.bias:
                out.append(m.bias)
            if ly.coord:
                bm = coordinate_bias(ly, m.weight)  # (cout, *S_out)
                out.append(bm.permute(*range(1, ly.ndim + 1), 0).contiguous())
        return out

    def bind_parameters(self) -> None:
        """Point the C descriptors at the modules' own parameters, for ``FusedAutoencoder.step`` (no autograd but
        for the coordinate channels' bias maps: a ``convT`` kernel is transposed, a ``coord`` layer's image channels
        copied, into buffers kept from step to step). The descriptors are rewritten only when a parameter's storage
        moved or ``bind`` pointed them elsewhere; the bias maps (``maps``, functions of the weights, kept with their
        graph for ``coordinate_gradients``) are computed every step."""
        from ..models import conv_weight, coordinate_bias

        for k, (ly, m) in self._copied:  # transposed, sliced or non-contiguous kernels: refreshed every step
            self._copies[k].copy_(conv_weight(ly, m.weight))
        storage = tuple(p.data_ptr() for p in self._parameters)
        if storage != self._bound:
            for k, (desc, ly, m) in enumerate(zip(self.layers, self.specs, self.modules, strict=True)):
                w = m.weight
                if ly.op == "convT" or ly.coord or not w.is_contiguous():
                    if k not in self._copies:
                        self._copies[k] = conv_weight(ly, w).detach().contiguous()
                        self._copied.append((k, (ly, m)))
                    w = self._copies[k]
                desc.w = w.data_ptr()
                desc.b = m.bias.data_ptr() if ly.bias else None
                desc.bm = None
            self._bound = storage
        if self._coord:  # the graph of coefficients() for these maps alone: the same operations, the same numbers
            with torch.enable_grad():
                self.maps = [coordinate_bias(ly, m.weight).permute(*range(1, ly.ndim + 1), 0).contiguous()
                             for _, ly, m in self._coord]
            for (k, _, _), bm in zip(self._coord, self.maps, strict=True):
                self.layers[k].bm = bm.data_ptr()

    def bind(self, coefs: list[torch.Tensor]) -> None:
        """Point the C descriptors at this step's coefficient tensors."""
        self._bound = None
        it = iter(coefs)
        for desc, ly in zip(self.layers, self.specs, strict=True):
            desc.w = next(it).data_ptr()
            desc.b = next(it).data_ptr() if ly.bias else None
            desc.bm = next(it).data_ptr() if ly.coord else None


def grad_plan(stack: Stack, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | tuple, bool | None]]:
    """(parameter, its gradient's slice of ``flat`` in the kernel's coefficient order, whether that slice is the
    transpose of the parameter's layout (``convT``: the kernel's (cout, cin) against torch's (cin, cout))); for a
    ``coord`` layer's kernel, whose gradient ``coordinate_gradients`` assembles, (parameter, (the image channels'
    slice, the bias map's (*S_out, cout) slice), None)."""
    plan, offset = [], 0
    for ly, m in zip(stack.specs, stack.modules, strict=True):
        shape = (ly.cout, ly.cin, *m.weight.shape[2:])
        w_at, b_at = offset, offset + math.prod(shape)  # the layer's coefficients: w, then b, then the bias map
        bm_at = b_at + (ly.cout if ly.bias else 0)
        offset = bm_at + (math.prod(ly.out_shape) if ly.coord else 0)
        grad = flat[w_at:b_at].view(shape)
        if ly.coord:
            plan.append((m.weight, (grad, flat[bm_at:offset].view(*ly.out_shape[1:], ly.cout)), None))
        else:
            plan.append((m.weight, grad, ly.op == "convT"))
        if ly.bias:
            plan.append((m.bias, flat[b_at:bm_at], False))
    return plan


def coordinate_gradients(plan, stacks) -> None:
    """The gradient of each ``coord`` layer's stored weight (cout, cin + ndim, *k), as autograd forms it on the
    path of ``loss``: the image channels' gradient from the kernel, zero-padded to the weight's shape, plus the
    bias map's gradient from the kernel back-propagated through ``coordinate_bias`` (zero on the image channels):
    every entry one sum with a zero, as autograd adds its two contributions. Written to ``.grad`` (replaced)."""
    coord = [(param, grads) for param, grads, how in plan if how is None]
    maps = [bm for stack in stacks for bm in stack.maps]
    for stack in stacks:
        stack.maps = []  # this step's: the next one computes its own
    trainable = [(param, grads, bm) for (param, grads), bm in zip(coord, maps, strict=True) if param.requires_grad]
    if not trainable:
        return
    with torch.enable_grad():
        through_maps = torch.autograd.grad([bm for _, _, bm in trainable], [p for p, _, _ in trainable],
                                           [g[1] for _, g, _ in trainable])
    for (param, (image_grad, _), _), coord_grad in zip(trainable, through_maps, strict=True):
        padded = torch.zeros_like(param)
        padded[:, : image_grad.shape[1]] = image_grad
        param.grad = padded.add_(coord_grad)


def gradients_to_parameters(plan) -> None:
    """Hand each parameter its gradient from ``step``'s flat buffers (``grad_plan``): the slice itself (kept as
    ``.grad`` from step to step), or a ``convT`` kernel's transposed copy."""
    for param, grad, transposed in plan:
        if not param.requires_grad or transposed is None:
            continue
        held = param.grad
        if transposed:
            if held is None:
                held = param.grad = torch.empty_like(param)
            held.copy_(grad.transpose(0, 1))
        elif held is not grad and (held is None or held.data_ptr() != grad.data_ptr()):
            param.grad = grad
