"""The executor: a ``models.Autoencoder``'s training loss (``FusedAutoencoder.loss``, through autograd) and its
whole training step (``FusedAutoencoder.step``, one kernel call) on the loaded kernel library."""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from ..spec import LayerSpec, tap_table
from .abi import ACTIVATIONS, EINDEX, _check, _Layer, supports
from .build import Kernel, unavailable_reason
from .build import kernel as _default_kernel

__all__ = ["FusedAutoencoder", "StepOutput", "announce_fallback"]




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


class _Stack:
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
        graph for ``_coordinate_gradients``) are computed every step."""
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


def _check_index(code: int, call: str, images: torch.Tensor, index: torch.Tensor | None) -> None:
    """``_check``, with the kernel's refusal of an index outside the images (GEOAE_EINDEX, found before any work)
    told as the ValueError of a bad argument."""
    if code == EINDEX and index is not None:
        lo, hi = (int(v) for v in torch.aminmax(index))
        raise ValueError(f"index values must lie in [0, {images.shape[0]}), got [{lo}, {hi}]")
    _check(code, call)


def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class _LossFunction(torch.autograd.Function):
    """(x, encoder and decoder coefficients) → (z, mean over batch and pixels of (D(E(x)) − x)², contractive
    penalty (0 unless asked for))."""

    @staticmethod
    def forward(ctx, ex: FusedAutoencoder, contractive: bool, x: torch.Tensor, n_enc: int, *coefs: torch.Tensor):
        lib, enc, dec = ex.kernel.lib, ex.encoder, ex.decoder
        batch, d = x.shape[0], ex.spec.latent_dim
        buffers = ex._buffers(batch, contractive)
        acts_e, acts_d, vbuf, u0, ptrs, sse, pen = buffers
        z = x.new_empty(batch, d)
        total, pen_total = ctypes.c_double(0.0), ctypes.c_double(0.0)
        enc.bind(coefs[:n_enc])
        dec.bind(coefs[n_enc:])
        _check(lib.geoae_ae_forward(
            enc.layers, enc.n, dec.layers, dec.n, batch, x.data_ptr(), z.data_ptr(), ptrs[0], ptrs[1],
            sse.data_ptr(), ptrs[2] if contractive else None, u0.data_ptr() if contractive else None,
            pen.data_ptr() if contractive else None, ex._scratch().data_ptr(), ex.threads,
            ctypes.byref(total), ctypes.byref(pen_total)), "geoae_ae_forward")
        n = x.numel()
        ctx.ex, ctx.buffers, ctx.batch, ctx.n, ctx.contractive, ctx.n_enc = ex, buffers, batch, n, contractive, n_enc
        ctx.coefs = coefs
        ctx.set_materialize_grads(False)
        penalty = pen_total.value / (n * d) if contractive else 0.0
        return z, torch.tensor(total.value / n, dtype=torch.float32), torch.tensor(penalty, dtype=torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx, gz: torch.Tensor | None, gmse: torch.Tensor | None, gpen: torch.Tensor | None):
        ex, batch, n = ctx.ex, ctx.batch, ctx.n
        lib, enc, dec = ex.kernel.lib, ex.encoder, ex.decoder
        acts_e, acts_d, vbuf, u0, ptrs, sse, pen = ctx.buffers
        gscale = 0.0 if gmse is None else 2.0 * float(gmse) / n
        contractive = ctx.contractive and gpen is not None and float(gpen) != 0.0
        cscale = 2.0 * float(gpen) / (n * ex.spec.latent_dim) if contractive else 0.0
        gz = gz.to(torch.float32).contiguous() if gz is not None else None
        train_enc = not enc.frozen
        coefs = ctx.coefs
        n_enc = ctx.n_enc
        flat_e = torch.empty(sum(c.numel() for c in coefs[:n_enc]))
        flat_d = torch.empty(sum(c.numel() for c in coefs[n_enc:]))
        gacc_e, gacc_d = ex._gradient_accumulators(batch)
        enc.bind(coefs[:n_enc])
        dec.bind(coefs[n_enc:])
        _check(lib.geoae_ae_backward(
            enc.layers, enc.n, dec.layers, dec.n, batch, ptrs[0], ptrs[1], gz.data_ptr() if gz is not None else None,
            gscale, ptrs[2] if contractive else None, u0.data_ptr() if contractive else None, cscale, int(train_enc),
            flat_e.data_ptr(), flat_d.data_ptr(), ex._scratch().data_ptr(), gacc_e.data_ptr(), gacc_d.data_ptr(),
            ex.threads), "geoae_ae_backward")
        ctx.buffers = ctx.coefs = None
        ex._release(batch, ctx.contractive, (acts_e, acts_d, vbuf, u0, ptrs, sse, pen))
        grads_e = _split(flat_e, coefs[:n_enc]) if train_enc else [None] * n_enc
        return (None, None, None, None, *grads_e, *_split(flat_d, coefs[n_enc:]))


def _split(flat: torch.Tensor, like: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return [g.view_as(c) for g, c in zip(flat.split([c.numel() for c in like]), like, strict=True)]


class FusedAutoencoder:
    """The training loss of a ``models.Autoencoder`` on the fused kernel, sharing the model's parameters.

    ``loss(x)`` returns what ``training.TorchExecutor.loss`` returns, with gradients flowing to the model's
    own parameters, so an optimizer of ``model.parameters()`` trains it. Raises ``ValueError`` with the
    reason if the network is not supported or no kernel is available.
    """

    name = "fused"

    def __init__(self, model, threads: int = 1, kernel: Kernel | None = None):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        spec = model.spec
        reason = supports(spec)
        if reason is None and kernel is None:
            kernel = _default_kernel()
            if kernel is None:
                reason = f"the fused kernel is unavailable: {unavailable_reason()}"
        if reason is not None:
            raise ValueError(f"FusedAutoencoder: not supported: {reason}")
        self.model, self.spec, self.threads, self.kernel = model, spec, threads, kernel
        self.lanes = kernel.lanes
        layers = model.conv_layers()
        n_enc = len(spec.encoder)
        self.encoder = _Stack(spec.encoder, layers[:n_enc])
        self.decoder = _Stack(spec.decoder, layers[n_enc:])
        self._pool: dict[tuple[int, bool], list] = {}
        self._work: dict = {}

    # Buffers are reused from step to step: fresh multi-MB allocations cost page faults (~1 ms a step).
    # A forward takes a buffer set from the pool and its backward gives it back; a forward whose backward
    # never runs (evaluation, an abandoned graph) just lets its set be garbage-collected.

    def _buffers(self, batch: int, contractive: bool, local: bool = False):
        """Activation and loss buffers for a batch; ``local``: the activations of one block per thread (``step``),
        else of the whole batch."""
        free = self._pool.get((batch, contractive, local))
        if free:
            return free.pop()
        lib, enc, dec = self.kernel.lib, self.encoder, self.decoder
        size = lib.geoae_activation_floats
        held = min(self.threads * self.lanes, batch) if local else batch  # images whose activations are kept
        acts_e = [torch.empty(size(enc.layers[k], 0, held)) for k in range(enc.n)]
        acts_e.append(torch.empty(size(enc.layers[enc.n - 1], 1, held)))
        acts_d = [acts_e[-1]] + [torch.empty(size(dec.layers[k], 1, held)) for k in range(dec.n)]
        vbuf, u0 = [], None
        if contractive:  # per block and code dimension: the gradient of z_k at every encoder layer, and dz_k/dx
            d = self.spec.latent_dim
            vbuf = [torch.empty(d * size(enc.layers[k], 1, held)) for k in range(enc.n)]
            u0 = torch.empty(d * size(enc.layers[0], 0, held))
        slots = lib.geoae_image_slots(batch)
        sse, pen = torch.empty(slots, dtype=torch.float64), torch.empty(slots, dtype=torch.float64)
        return acts_e, acts_d, vbuf, u0, (_pointers(acts_e), _pointers(acts_d), _pointers(vbuf)), sse, pen

    def _release(self, batch: int, contractive: bool, buffers, local: bool = False) -> None:
        free = self._pool.setdefault((batch, contractive, local), [])
        if len(free) < 2:
            free.append(buffers)

    def _scratch(self) -> torch.Tensor:
        if "scratch" not in self._work:
            e, d = self.encoder, self.decoder
            self._work["scratch"] = torch.empty(self.kernel.lib.geoae_scratch_floats(e.layers, e.n, d.layers, d.n,
                                                                                     self.threads))
        return self._work["scratch"]

    def _gradient_accumulators(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._work.get("gacc_batch") != batch:
            floats = self.kernel.lib.geoae_coef_floats
            e, d = self.encoder, self.decoder
            self._work["gacc"] = (torch.empty(floats(e.layers, e.n, batch)), torch.empty(floats(d.layers, d.n, batch)))
            self._work["gacc_batch"] = batch
        return self._work["gacc"]

    def one_call(self) -> str | None:
        """None if ``step`` can train this network, else why not: every network the kernel computes (kept for
        callers that ask)."""
        return None

    @torch.no_grad()
    def step(self, images: torch.Tensor, index: torch.Tensor | None = None, contractive_weight: float = 0.0,
             code_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StepOutput:
        """One training step in one kernel call (``geoae_ae_step``): the batch x = images[index] (images
        (N, 1, m, m) or (N, 1, n) float32; index (B,) int64, or None for x = images) gathered straight into the
        kernels' layout, forward, loss and backward, block by block. The gradient of
        MSE + contractive_weight · contractive penalty is written to the trainable parameters' ``.grad``
        (overwritten; parameters without gradient are left alone). Same numbers, bit for bit, as ``loss(x)``
        followed by ``backward()`` of that sum; no autograd graph is built.

        ``code_loss(z)`` (z (B, d) → a scalar tensor, e.g. λ times the locality penalty) adds a term that reads
        the codes: the step is then two kernel calls, the codes alone (``geoae_ae_encode``) and, once autograd has
        differentiated ``code_loss`` at z alone, the whole step with that gradient added at the code (the encoder's
        forward is computed twice, bit for bit the same, so that each block's activations stay in cache from its
        forward to its backward). Not with ``contractive_weight``."""
        from ..models import check_input

        check_input(images, self.spec.input_shape, what="images")
        if images.dtype != torch.float32 or not images.is_contiguous():
            images = images.to(torch.float32).contiguous()
        if index is None:
            batch = images.shape[0]
        else:
            if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 1:
                raise TypeError(f"index must be a 1-D int64 tensor, got {getattr(index, 'dtype', type(index))}")
            if not index.is_contiguous():
                index = index.contiguous()
            batch = index.shape[0]  # its values are checked by the kernel (GEOAE_EINDEX), before any work
        if batch < 1:
            raise ValueError("step needs a batch of at least 1 image")
        contractive = contractive_weight != 0.0
        if code_loss is not None and contractive:
            raise ValueError("step takes a code_loss or a contractive_weight, not both")
        lib, enc, dec = self.kernel.lib, self.encoder, self.decoder
        acts_e, acts_d, vbuf, u0, ptrs, sse, pen = buffers = self._buffers(batch, contractive, local=True)
        n, d = batch * math.prod(self.spec.input_shape), self.spec.latent_dim
        # the scales of loss().backward(): d total / d mse = 1, d total / d penalty = the weight in float32
        gscale = 2.0 / n
        cscale = 2.0 * float(torch.tensor(contractive_weight, dtype=torch.float32)) / (n * d) if contractive else 0.0
        z = images.new_empty(batch, d)
        enc.bind_parameters()
        dec.bind_parameters()
        index_ptr = index.data_ptr() if index is not None else None
        gz = None
        if code_loss is not None:
            _check_index(lib.geoae_ae_encode(enc.layers, enc.n, batch, images.data_ptr(), images.shape[0], index_ptr,
                                             z.data_ptr(), ptrs[0], self._scratch().data_ptr(), self.threads),
                         "geoae_ae_encode", images, index)
            with torch.enable_grad():
                leaf = z.detach().requires_grad_(True)
                (gz,) = torch.autograd.grad(code_loss(leaf), leaf)
            gz = gz.to(torch.float32).contiguous()
        total, pen_total = ctypes.c_double(0.0), ctypes.c_double(0.0)
        flat_e, flat_d, plan = self._step_gradients()
        gacc_e, gacc_d = self._gradient_accumulators(batch)
        train_enc = not enc.frozen
        _check_index(lib.geoae_ae_step(
            enc.layers, enc.n, dec.layers, dec.n, batch, images.data_ptr(), images.shape[0], index_ptr, z.data_ptr(),
            gz.data_ptr() if gz is not None else None, ptrs[0], ptrs[1], sse.data_ptr(),
            ptrs[2] if contractive else None, u0.data_ptr() if contractive else None,
            pen.data_ptr() if contractive else None, gscale, cscale, int(train_enc), flat_e.data_ptr(),
            flat_d.data_ptr(), self._scratch().data_ptr(), gacc_e.data_ptr(), gacc_d.data_ptr(), self.threads,
            ctypes.byref(total), ctypes.byref(pen_total)), "geoae_ae_step", images, index)
        self._release(batch, contractive, buffers, local=True)
        self._gradients_to_parameters(plan)
        if enc.maps or dec.maps:
            _coordinate_gradients(plan, (enc, dec))
        penalty = pen_total.value / (n * d) if contractive else 0.0
        return StepOutput(z, torch.scalar_tensor(total.value / n, dtype=torch.float32),
                          torch.scalar_tensor(penalty, dtype=torch.float32))

    @staticmethod
    def _gradients_to_parameters(plan) -> None:
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

    def _step_gradients(self) -> tuple[torch.Tensor, torch.Tensor, list]:
        """The flat gradient buffers that ``step`` writes and the parameters' views of them (kept: the views
        stay the parameters' ``.grad`` from step to step, so nothing is copied but ``convT`` kernels)."""
        if "step" not in self._work:
            count = self.kernel.lib.geoae_coef_floats
            e, d = self.encoder, self.decoder
            flat_e, flat_d = torch.zeros(count(e.layers, e.n, 1) // self.lanes), torch.zeros(
                count(d.layers, d.n, 1) // self.lanes)
            self._work["step"] = (flat_e, flat_d, _grad_plan(e, flat_e) + _grad_plan(d, flat_d))
        return self._work["step"]

    def loss(self, x: torch.Tensor, contractive: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 1, m, m) or (B, 1, n) → (z (B, d), per-pixel MSE of D(E(x)) against x, contractive penalty:
        mean over batch, pixels and k of (∂z_k/∂x)², 0 unless ``contractive``), in one pass: the reconstruction
        never leaves the kernel's block layout."""
        from ..models import check_input

        x = x.to(torch.float32).contiguous()
        check_input(x, self.spec.input_shape)
        coefs_e, coefs_d = self.encoder.coefficients(), self.decoder.coefficients()
        return _LossFunction.apply(self, bool(contractive), x, len(coefs_e), *coefs_e, *coefs_d)


class StepOutput(NamedTuple):
    """What ``FusedAutoencoder.step`` returns (its gradients are in the parameters' ``.grad``)."""

    z: torch.Tensor  # (B, d): the batch's codes
    mse: torch.Tensor  # (): mean over batch and pixels of (D(E(x)) − x)²
    penalty: torch.Tensor  # (): the contractive penalty, 0 unless asked for


def _grad_plan(stack: _Stack, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | tuple, bool | None]]:
    """(parameter, its gradient's slice of ``flat`` in the kernel's coefficient order, whether that slice is the
    transpose of the parameter's layout (``convT``: the kernel's (cout, cin) against torch's (cin, cout))); for a
    ``coord`` layer's kernel, whose gradient ``_coordinate_gradients`` assembles, (parameter, (the image channels'
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


def _coordinate_gradients(plan, stacks) -> None:
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


def announce_fallback(reason: str) -> None:
    """Say once per reason on stderr that training runs on the (slower) torch path, and why."""
    if reason not in _announced:
        _announced.add(reason)
        print(f"geoae: training on the torch path (several times slower): {reason}", file=sys.stderr, flush=True)


_announced: set[str] = set()

