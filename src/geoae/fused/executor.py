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

from .abi import EINDEX, _check, supports
from .build import Kernel, unavailable_reason
from .build import kernel as _default_kernel
from .stack import Stack, coordinate_gradients, grad_plan, gradients_to_parameters

__all__ = ["FusedAutoencoder", "StepOutput", "announce_fallback"]


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
        self.encoder = Stack(spec.encoder, layers[:n_enc])
        self.decoder = Stack(spec.decoder, layers[n_enc:])
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
        gradients_to_parameters(plan)
        if enc.maps or dec.maps:
            coordinate_gradients(plan, (enc, dec))
        penalty = pen_total.value / (n * d) if contractive else 0.0
        return StepOutput(z, torch.scalar_tensor(total.value / n, dtype=torch.float32),
                          torch.scalar_tensor(penalty, dtype=torch.float32))

    def _step_gradients(self) -> tuple[torch.Tensor, torch.Tensor, list]:
        """The flat gradient buffers that ``step`` writes and the parameters' views of them (kept: the views
        stay the parameters' ``.grad`` from step to step, so nothing is copied but ``convT`` kernels)."""
        if "step" not in self._work:
            count = self.kernel.lib.geoae_coef_floats
            e, d = self.encoder, self.decoder
            flat_e, flat_d = torch.zeros(count(e.layers, e.n, 1) // self.lanes), torch.zeros(
                count(d.layers, d.n, 1) // self.lanes)
            self._work["step"] = (flat_e, flat_d, grad_plan(e, flat_e) + grad_plan(d, flat_d))
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


def announce_fallback(reason: str) -> None:
    """Say once per reason on stderr that training runs on the (slower) torch path, and why."""
    if reason not in _announced:
        _announced.add(reason)
        print(f"geoae: training on the torch path (several times slower): {reason}", file=sys.stderr, flush=True)


_announced: set[str] = set()

