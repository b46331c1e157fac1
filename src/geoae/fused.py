"""Fused CPU kernels for training the paper's autoencoders: the same mathematics, several times faster.

Why: the paper's network (``paper64``: 1 → 8 → 4 → 4 → 3 → 2 → d channels, 3 × 3 kernels) does
317 k multiply-accumulates per image, yet PyTorch's convolutions spend ~15 ms per batch of 64 on it: with
1 to 8 channels, every library kernel is bound by memory traffic, layout reorders and per-call overhead
(docs/performance.md). Here each stage (``encode``, ``decode``) is one call into a small C kernel that

* stores activations as [H][W][C][lane] with ``lanes`` (16) images side by side, so every multiply-add of
  every layer is one vector instruction over 16 images, whatever the channel count;
* runs all layers of a stage on one block of 16 images before the next block (the block's activations
  stay in the core's cache), forward and backward, with bias and activation fused into the convolution;
* expresses the encoder's stride-2 convolution and the decoder's "upsample ×2 (U), then convolve" by
  index tables, so the taps that read U's inserted zeros are never computed;
* splits the blocks over ``threads`` POSIX threads. Weight gradients are kept per block and per lane and
  summed in a fixed order afterwards, so results do not depend on the number of threads.

Mathematically a stage computes exactly what ``Autoencoder.encode`` / ``decode`` compute (Eq. of Sec. 3:
E^{l+1} = φ_α(E^l ∗ w^l + b^l), D^{l+1} = φ_α(U(D^l) ∗ w^l + b^l)); only the order of floating-point
additions differs (tests compare values and gradients with the torch path to 1e-5).

The C source (``_fused.c``) is compiled on first use with the system's C compiler (``CC``, else ``cc``)
into a cache directory (``GEOAE_CACHE``, else ``~/.cache/geoae``), under a name that hashes the source, the
flags and the machine, so concurrent processes and later runs reuse it. Where no compiler works,
``available()`` is False with the reason in ``unavailable_reason()``, and training uses the torch path.

Covered: ``paper64`` and ``paper1d``, learned encoder, no coordinate channels, float32, with or without
biases, both upsampling modes, every output activation. ``supports(model)`` says why a model is not.
Second derivatives are not provided (the ``contractive`` regulariser trains on the torch path).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from .models import Autoencoder, UpsampleConv, _check_input

__all__ = ["available", "unavailable_reason", "supports", "FusedAutoencoder", "library_path"]

SOURCE = Path(__file__).with_name("_fused.c")
CFLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-pthread")
ARCH_FLAGS = ("-march=native",)  # dropped if the compiler refuses it
ACTIVATIONS = {"leaky": 0, "identity": 1, "sigmoid": 2}

_lib: ctypes.CDLL | None = None
_load_lock = threading.Lock()
_error: str | None = None


class _Layer(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("hin", "win", "cin", "hout", "wout", "cout", "kh", "kw", "act")] + [
        ("alpha", ctypes.c_float),
        ("rows", ctypes.POINTER(ctypes.c_int)),
        ("cols", ctypes.POINTER(ctypes.c_int)),
        ("w", ctypes.c_void_p),
        ("b", ctypes.c_void_p),
        ("mr", ctypes.c_int),
        ("mc", ctypes.c_int),
        ("irows", ctypes.POINTER(ctypes.c_int)),
        ("icols", ctypes.POINTER(ctypes.c_int)),
    ]


# ------------------------------------------------------------------------------------- the library


def cache_dir() -> Path:
    return Path(os.environ.get("GEOAE_CACHE") or Path.home() / ".cache" / "geoae")


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def library_path(flags: tuple[str, ...]) -> Path:
    """Where the compiled kernel for ``flags`` lives: the name hashes source, flags, compiler and machine."""
    cc = _compiler() or "none"
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(flags).encode(), cc.encode(), platform.machine().encode(),
                 _cpu_signature().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"fused-{key.hexdigest()[:16]}.so"


def _cpu_signature() -> str:
    """The CPU model and flags (``-march=native`` depends on them), or the platform where unknown."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def _build(flags: tuple[str, ...]) -> Path:
    path = library_path(flags)
    if path.exists():
        return path
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC, or install cc / gcc / clang)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".so.tmp")
    os.close(fd)
    try:
        proc = subprocess.run([cc, *flags, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise OSError(f"{cc} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, path)  # atomic: concurrent processes build the same file and one wins
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _load() -> ctypes.CDLL | None:
    with _load_lock:  # train_many's threads may ask at once
        return _load_locked()


def _load_locked() -> ctypes.CDLL | None:
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    if os.environ.get("GEOAE_FUSED", "1") == "0":
        _error = "disabled by GEOAE_FUSED=0"
        return None
    errors = []
    for flags in (CFLAGS + ARCH_FLAGS, CFLAGS):
        try:
            lib = ctypes.CDLL(str(_build(flags)))
            break
        except (OSError, subprocess.SubprocessError) as err:
            errors.append(str(err))
    else:
        _error = "; ".join(errors)
        return None
    lib.geoae_lanes.restype = ctypes.c_int
    ptr, ptrs, c_int = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int
    layers = ctypes.POINTER(_Layer)
    lib.geoae_forward.argtypes = [layers, c_int, c_int, ptr, ptr, ptrs, c_int]
    lib.geoae_backward.argtypes = [layers, c_int, c_int, ptrs, ptr, ptr, ptr, ptr, ptr, c_int]
    lib.geoae_ae_forward.restype = ctypes.c_double
    c_float = ctypes.c_float
    lib.geoae_ae_forward.argtypes = [layers, c_int, layers, c_int, c_int, ptr, ptr, ptrs, ptrs, ptr, ptrs, ptr, ptr,
                                     ptr, c_int]
    lib.geoae_ae_backward.argtypes = [layers, c_int, layers, c_int, c_int, ptrs, ptrs, ptr, c_float, ptrs, ptr,
                                      c_float, ptr, ptr, ptr, ptr, ptr, c_int]
    _lib = lib
    return _lib


def available() -> bool:
    """True when the kernel is compiled (or compiles now) and loads."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why ``available()`` is False (None when it is True)."""
    _load()
    return _error


def supports(model: Autoencoder) -> str | None:
    """None if the fused kernels compute ``model``, else the reason they do not."""
    c = model.config
    if c.arch not in ("paper64", "paper1d"):
        return f"arch {c.arch!r} (fused kernels cover 'paper64' and 'paper1d')"
    if c.coord:
        return "coordinate channels (coord=True)"
    if c.encoder != "learned":
        return f"encoder={c.encoder!r} (fused kernels cover the learned encoder)"
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return "parameters are not float32"
    return None


# ---------------------------------------------------------------------------------------------- stages


def _taps(n_out: int, n_in: int, k: int, kind: str) -> list[int]:
    """Index table (n_out × k): input index read by tap a of output i, -1 for padding / inserted zeros."""
    table = []
    for i in range(n_out):
        for a in range(k):
            if k == 1:
                table.append(i)
            elif kind == "down":  # stride-2 conv, padding 1
                r = 2 * i + a - 1
                table.append(r if 0 <= r < n_in else -1)
            else:  # upsample ×2 then conv with padding 1, on the 2·n_in grid
                s = i + a - 1
                ok = 0 <= s < 2 * n_in and (kind == "nearest" or s % 2 == 0)
                table.append(s // 2 if ok else -1)
    return table


def _inverse(table: list[int], n_out: int, n_in: int, k: int) -> tuple[int, list[int]]:
    """For each input index r and tap a, the outputs i with table[i * k + a] == r: (multiplicity M, the
    n_in × k × M table, -1 padded)."""
    hits: list[list[int]] = [[] for _ in range(n_in * k)]
    for i in range(n_out):
        for a in range(k):
            r = table[i * k + a]
            if r >= 0:
                hits[r * k + a].append(i)
    m = max(1, max(len(h) for h in hits))
    return m, [h[q] if q < len(h) else -1 for h in hits for q in range(m)]


class _Stage:
    """One stack of layers (the encoder or the decoder) as C layer descriptors."""

    def __init__(self, layers: list[tuple[torch.nn.Module, str]], ndim: int, side: int, alpha: float,
                 last_act: str):
        self.modules = [m for m, _ in layers]
        self.params: list[torch.nn.Parameter] = []
        descs, self._keep = [], []
        h, w = (1, side) if ndim == 1 else (side, side)
        self.shapes = [(h, w, self.modules[0].weight.shape[1])]  # (H, W, C) of the input, then of each output
        for k, (m, kind) in enumerate(layers):
            cout, cin = m.weight.shape[:2]
            hout, wout = (h // 2, w // 2) if kind == "down" else (2 * h, 2 * w)
            kh = 1 if ndim == 1 else 3
            if ndim == 1:
                hout = 1
            row_taps, col_taps = _taps(hout, h, kh, kind), _taps(wout, w, 3, kind)
            mr, inv_rows = _inverse(row_taps, hout, h, kh)
            mc, inv_cols = _inverse(col_taps, wout, w, 3)
            tables = [(ctypes.c_int * len(t))(*t) for t in (row_taps, col_taps, inv_rows, inv_cols)]
            self._keep += tables
            act = ACTIVATIONS[last_act] if k == len(layers) - 1 else ACTIVATIONS["leaky"]
            descs.append(_Layer(h, w, cin, hout, wout, cout, kh, 3, act, alpha, tables[0], tables[1], None, None,
                                mr, mc, tables[2], tables[3]))
            self.params += [m.weight] + ([m.bias] if m.bias is not None else [])
            h, w = hout, wout
            self.shapes.append((h, w, cout))
        self.layers = (_Layer * len(descs))(*descs)
        self.n = len(descs)
        self.coefs = sum(p.numel() for p in self.params)
        self.in_shape = self.shapes[0][2:] + ((self.shapes[0][1],) if ndim == 1 else self.shapes[0][:2])
        last = self.shapes[-1]
        self.out_shape = (last[2], last[1]) if ndim == 1 else (last[2], last[0], last[1])

    def largest(self, lanes: int) -> int:
        """Floats of the largest activation of one block."""
        return max(h * w * c for h, w, c in self.shapes) * lanes

    def _bind(self) -> None:
        """Point the C descriptors at the parameters' current storage (rewritten only when it moved)."""
        ptrs = tuple(p.data_ptr() for p in self.params)
        if ptrs == getattr(self, "_bound", None):
            return
        for desc, m in zip(self.layers, self.modules, strict=True):
            desc.w = m.weight.data_ptr()
            desc.b = m.bias.data_ptr() if m.bias is not None else None
        self._bound = ptrs

    def forward(self, x: torch.Tensor, threads: int, lanes: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C, *S) contiguous float32 → (y (B, C', *S'), the activations in block layout)."""
        batch = x.shape[0]
        nb = -(-batch // lanes)
        acts = [x.new_empty(nb * h * w * c * lanes) for h, w, c in self.shapes]
        y = x.new_empty(batch, *self.out_shape)
        self._bind()
        ptrs = (ctypes.c_void_p * len(acts))(*[a.data_ptr() for a in acts])
        _lib.geoae_forward(self.layers, self.n, batch, x.data_ptr(), y.data_ptr(), ptrs, threads)
        return y, acts

    def backward(self, acts: list[torch.Tensor], gy: torch.Tensor, need_input: bool, threads: int,
                 lanes: int) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        batch = gy.shape[0]
        nb = -(-batch // lanes)
        gx = gy.new_empty(batch, *self.in_shape) if need_input else None
        grads = gy.new_empty(self.coefs)
        threads = max(1, min(threads, nb))
        scratch = gy.new_empty(threads * 4 * self.largest(lanes))
        gacc = gy.new_empty(nb * self.coefs * lanes)
        self._bind()
        ptrs = (ctypes.c_void_p * len(acts))(*[a.data_ptr() for a in acts])
        _lib.geoae_backward(self.layers, self.n, batch, ptrs, gy.data_ptr(), gx.data_ptr() if gx is not None else None,
                            grads.data_ptr(), scratch.data_ptr(), gacc.data_ptr(), threads)
        return gx, self.split(grads)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The flat coefficient vector (w_0, b_0, w_1, …) as tensors shaped like the parameters."""
        return [g.view_as(p) for g, p in zip(flat.split([p.numel() for p in self.params]), self.params, strict=True)]


class _StageFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, stage: _Stage, threads: int, lanes: int, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        y, acts = stage.forward(x, threads, lanes)
        ctx.stage, ctx.threads, ctx.lanes, ctx.acts = stage, threads, lanes, acts
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):
        gx, grads = ctx.stage.backward(ctx.acts, gy.contiguous(), ctx.needs_input_grad[3], ctx.threads, ctx.lanes)
        ctx.acts = None
        return (None, None, None, gx, *grads)


def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class _AutoencoderLossFunction(torch.autograd.Function):
    """(x, encoder and decoder coefficients) → (z, mean over batch and pixels of (D(E(x)) − x)², contractive
    penalty (0 unless asked for))."""

    @staticmethod
    def forward(ctx, fused: FusedAutoencoder, contractive: bool, x: torch.Tensor, *params: torch.Tensor):
        enc, dec = fused.encoder, fused.decoder
        batch, d = x.shape[0], fused.config.latent_dim
        nb = -(-batch // fused.lanes)
        buffers = fused._activations(batch, contractive)
        acts_e, acts_d, vbuf, u0, ptrs = buffers
        z = x.new_empty(batch, d)
        sse = torch.empty(nb + 1, dtype=torch.float64)
        pen = torch.zeros(nb + 1, dtype=torch.float64)
        scratch = fused._workspace(batch, fused.threads)[0]
        enc._bind()
        dec._bind()
        total = _lib.geoae_ae_forward(
            enc.layers, enc.n, dec.layers, dec.n, batch, x.data_ptr(), z.data_ptr(), ptrs[0], ptrs[1],
            sse.data_ptr(), ptrs[2] if contractive else None,
            u0.data_ptr() if contractive else None, pen.data_ptr(), scratch.data_ptr(), fused.threads)
        n = x.numel()
        ctx.fused, ctx.buffers, ctx.batch, ctx.n, ctx.contractive = fused, buffers, batch, n, contractive
        ctx.set_materialize_grads(False)
        penalty = float(pen[nb]) / (n * d) if contractive else 0.0
        return z, torch.tensor(total / n, dtype=torch.float32), torch.tensor(penalty, dtype=torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx, gz: torch.Tensor | None, gmse: torch.Tensor | None, gpen: torch.Tensor | None):
        fused, batch, n = ctx.fused, ctx.batch, ctx.n
        enc, dec, threads = fused.encoder, fused.decoder, fused.threads
        buffers = ctx.buffers
        u0, ptrs = buffers[3], buffers[4]
        gscale = 0.0 if gmse is None else 2.0 * float(gmse) / n
        contractive = ctx.contractive and gpen is not None and float(gpen) != 0.0
        cscale = 2.0 * float(gpen) / (n * fused.config.latent_dim) if contractive else 0.0
        gz = gz.to(torch.float32).contiguous() if gz is not None else None
        grads_e, grads_d = torch.empty(enc.coefs), torch.empty(dec.coefs)
        scratch, gacc_e, gacc_d = fused._workspace(batch, threads)
        enc._bind()
        dec._bind()
        _lib.geoae_ae_backward(
            enc.layers, enc.n, dec.layers, dec.n, batch, ptrs[0], ptrs[1],
            gz.data_ptr() if gz is not None else None, gscale, ptrs[2] if contractive else None,
            u0.data_ptr() if contractive else None, cscale, grads_e.data_ptr(), grads_d.data_ptr(),
            scratch.data_ptr(), gacc_e.data_ptr(), gacc_d.data_ptr(), threads)
        ctx.buffers = None
        fused._release(batch, ctx.contractive, buffers)
        return (None, None, None, *enc.split(grads_e), *dec.split(grads_d))


class FusedAutoencoder:
    """``encode`` / ``decode`` of an ``Autoencoder`` through the fused kernels, sharing its parameters.

    Gradients flow to the model's own parameters, so an optimizer of ``model.parameters()`` trains it.
    Raises ``ValueError`` (with the reason) if the model is not supported or the kernel is unavailable.
    """

    def __init__(self, model: Autoencoder, threads: int = 1):
        reason = supports(model)
        if reason is None and not available():
            reason = f"the fused kernel is unavailable: {unavailable_reason()}"
        if reason is not None:
            raise ValueError(f"FusedAutoencoder: not supported: {reason}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        c = model.config
        self.model, self.threads, self.lanes, self.config = model, threads, _lib.geoae_lanes(), c
        enc = [(m, "down") for m in model.encoder if hasattr(m, "weight")]
        dec = [(m, c.upsample) for m in model.decoder if isinstance(m, UpsampleConv)]
        self.encoder = _Stage(enc, c.ndim, c.size, c.negative_slope, "leaky")
        self.decoder = _Stage(dec, c.ndim, 1, c.negative_slope, c.output_activation)
        self._pool: dict[int, list] = {}
        self._work: dict[tuple[int, int], tuple] = {}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, m, m) or (B, 1, n) → z (B, d)."""
        x = x.to(torch.float32).contiguous()
        _check_input(x, self.encoder.in_shape)
        z = _StageFunction.apply(self.encoder, self.threads, self.lanes, x, *self.encoder.params)
        return z.reshape(len(x), self.config.latent_dim)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, d) → x̂ (B, 1, m, m) or (B, 1, n)."""
        zz = z.to(torch.float32).reshape(len(z), *self.decoder.in_shape).contiguous()
        return _StageFunction.apply(self.decoder, self.threads, self.lanes, zz, *self.decoder.params)

    # Buffers are reused from step to step: fresh multi-MB allocations cost page faults (~1 ms a step).
    # A forward takes an activation set from the pool and its backward gives it back; a forward whose
    # backward never runs (evaluation, an abandoned graph) just lets its set be garbage-collected.

    def _activations(self, batch: int, contractive: bool = False):
        free = self._pool.get((batch, contractive))
        if free:
            return free.pop()
        nb, lanes = -(-batch // self.lanes), self.lanes
        acts_e = [torch.empty(nb * h * w * c * lanes) for h, w, c in self.encoder.shapes]
        acts_d = [acts_e[-1]] + [torch.empty(nb * h * w * c * lanes) for h, w, c in self.decoder.shapes[1:]]
        vbuf, u0 = [], None
        if contractive:  # per block and code dimension: the gradient of z_k at every encoder layer, and dz_k/dx
            d = self.config.latent_dim
            vbuf = [torch.empty(nb * d * h * w * c * lanes) for h, w, c in self.encoder.shapes[1:]]
            u0 = torch.empty(d * acts_e[0].numel())
        return acts_e, acts_d, vbuf, u0, (_pointers(acts_e), _pointers(acts_d), _pointers(vbuf))

    def _release(self, batch: int, contractive: bool, buffers) -> None:
        free = self._pool.setdefault((batch, contractive), [])
        if len(free) < 2:
            free.append(buffers)

    def _workspace(self, batch: int, threads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (batch, threads)
        if key not in self._work:
            nb, lanes = -(-batch // self.lanes), self.lanes
            big = max(self.encoder.largest(lanes), self.decoder.largest(lanes))
            self._work = {key: (torch.empty(threads * 4 * big), torch.empty(nb * self.encoder.coefs * lanes),
                                torch.empty(nb * self.decoder.coefs * lanes))}
        return self._work[key]

    def loss(self, x: torch.Tensor, contractive: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 1, m, m) or (B, 1, n) → (z (B, d), per-pixel MSE of D(E(x)) against x, contractive penalty
        mean over batch, pixels and k of (∂z_k/∂x)² (``train.contractive_penalty``; 0 unless ``contractive``)),
        in one pass: the reconstruction never leaves the kernel's block layout (the training step's fast path).
        """
        x = x.to(torch.float32).contiguous()
        _check_input(x, self.encoder.in_shape)
        return _AutoencoderLossFunction.apply(self, bool(contractive), x, *self.encoder.params, *self.decoder.params)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x → (z, x̂), as ``Autoencoder.forward``."""
        z = self.encode(x)
        return z, self.decode(z)
