"""The fused CPU executor: an autoencoder's training step in a few calls of a small C kernel.

Why: the paper's network (``paper64``: 1 → 8 → 4 → 4 → 3 → 2 → d channels, 3 × 3 kernels) does about
0.3 M multiply-accumulates per image, yet PyTorch's convolutions spend ~15 ms per batch of 64 on it: with
1 to 16 channels every library kernel is bound by memory traffic, layout reorders and per-call overhead
(docs/performance.md). ``_fused.c`` instead

* stores activations as [H][W][C][lane] with ``lanes`` images side by side, so every multiply-add of every
  layer is one vector instruction over the images, whatever the channel count;
* runs all layers on one block of images before the next block (the block's activations stay in cache),
  forward and backward, with bias, coordinate-channel term and activation fused into the convolution;
* writes every layer of a ``spec.NetSpec`` (strided conv, upsample-then-conv, transposed conv) as index
  tables (``spec.tap_table``), so taps that read padding or inserted zeros are never computed;
* splits the blocks over threads; gradients are kept per block and per image and summed in a fixed order,
  so results depend neither on the number of threads nor on the kernel configuration (lanes, blocking).

It computes the same mathematics as ``models.Autoencoder`` (E^{l+1} = φ_α(E^l ∗ w^l + b^l),
D^{l+1} = φ_α(U(D^l) ∗ w^l + b^l), ICLR 2018 §3.1), the per-pixel MSE and the contractive penalty; only the order of
floating-point additions differs from torch's (tests: losses and gradients to 1e-4 for every model the
experiments train). Which networks it runs is decided from the spec's features (``supports``).

Build: ``_fused.c`` (contract: ``_fused.h``) is compiled on first use with the system's C compiler (``CC``,
which may carry flags, else cc / gcc / clang), ``-march`` from ``GEOAE_MARCH`` (native by default, plain
flags where refused), into ``GEOAE_CACHE``. The kernel configuration (lanes 8 | 16 × weight-gradient
accumulators 8 | 16) is then chosen by measuring each candidate on a paper64 training step (a few seconds,
once per CPU, compiler and source; cached in ``tuning-*.json``), unless ``GEOAE_KERNEL`` forces one. A cached
library is loaded only if it belongs to the user, is not writable by others and matches the checksum
recorded when it was built; its ABI (version, struct size) is checked at load. A freshly built library is
first tried in a child process (one small training step): one that crashes there (SIGILL from a ``GEOAE_MARCH``
this CPU lacks) is refused, named, and not cached. Where nothing works,
``available()`` is False with the reason, and training falls back to torch (announced on stderr).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from .settings import LANES, WG_ACCUMULATORS, Settings, read_settings
from .spec import LayerSpec, NetSpec, tap_table

__all__ = ["Kernel", "FusedAutoencoder", "StepOutput", "available", "unavailable_reason", "supports", "kernel",
           "kernel_info", "SUPPORTED_FEATURES"]

SOURCE = Path(__file__).with_name("_fused.c")
HEADER = Path(__file__).with_name("_fused.h")
ABI_VERSION = 3
BASE_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-pthread")
ACTIVATIONS = {"leaky": 0, "identity": 1, "sigmoid": 2}
ERRORS = {1: "bad arguments (null pointer, size or activation)", 2: "a kernel's taps exceed the kernel's limit",
          3: "layers do not fit together"}
# what the kernel computes: every op of spec.OPS, both upsampling modes, every activation, biases, coordinate
# channels, a frozen encoder, kernels of 1 to 16 taps per axis, 1-D and 2-D
SUPPORTED_FEATURES = frozenset({"conv", "upconv:zeros", "upconv:nearest", "convT", "act:leaky", "act:identity",
                                "act:sigmoid", "bias", "coord", "frozen", "ndim:1", "ndim:2",
                                *(f"kernel:{k}" for k in range(1, 17))})
CANDIDATES = tuple((lanes, wg) for lanes in LANES for wg in WG_ACCUMULATORS)


class _Layer(ctypes.Structure):  # _fused.h: Layer
    _fields_ = [(name, ctypes.c_int) for name in ("hin", "win", "cin", "hout", "wout", "cout", "kh", "kw", "act")] + [
        ("alpha", ctypes.c_float),
        ("rows", ctypes.POINTER(ctypes.c_int)),
        ("cols", ctypes.POINTER(ctypes.c_int)),
        ("w", ctypes.c_void_p),
        ("b", ctypes.c_void_p),
        ("bm", ctypes.c_void_p),
        ("mr", ctypes.c_int),
        ("mc", ctypes.c_int),
        ("irows", ctypes.POINTER(ctypes.c_int)),
        ("icols", ctypes.POINTER(ctypes.c_int)),
    ]


class KernelError(RuntimeError):
    """The C kernel refused its arguments (a defect of geoae: the message says which check failed)."""


def _check(code: int, call: str) -> None:
    if code != 0:
        raise KernelError(f"fused kernel {call} returned error {code}: {ERRORS.get(code, 'unknown')}")


# ----------------------------------------------------------------------------------------- building


def _compiler() -> list[str] | None:
    """The C compiler command: ``CC`` (which may carry flags, e.g. ``gcc -O1``), else cc, gcc or clang."""
    cc = shlex.split(os.environ.get("CC", "")) or ["cc"]
    found = shutil.which(cc[0])
    if found:
        return [found, *cc[1:]]
    for name in ("gcc", "clang"):
        if shutil.which(name):
            return [shutil.which(name)]
    return None


def _cpu_signature() -> str:
    """The CPU model and flags (``-march=native`` depends on them), or the platform where unknown."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.processor() or platform.machine()


def flags_for(lanes: int, wg: int, march: str) -> tuple[str, ...]:
    """Compiler flags of one kernel configuration (``march`` '' for none)."""
    arch = (f"-march={march}",) if march else ()
    return (*BASE_FLAGS, *arch, f"-DGEOAE_LANES={lanes}", f"-DGEOAE_WG={wg}")


def _key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def library_path(flags: tuple[str, ...], cache: Path) -> Path:
    """Where the kernel built with ``flags`` lives: the name hashes source, header, flags, compiler, CPU."""
    cc = " ".join(_compiler() or ["none"])
    name = _key(SOURCE.read_bytes(), HEADER.read_bytes(), " ".join(flags), cc, platform.machine(), _cpu_signature())
    return cache / f"fused-{name}.so"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trusted(path: Path) -> str | None:
    """None if the cached file may be loaded, else why not (another owner, writable by others)."""
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users"
    return None


def _verified(path: Path) -> bool:
    """The library exists, is trusted, matches the checksum written beside it when it was built (``.sha256``),
    and ran a training step in a child process then (``.tried``, holding the same checksum; a library of an
    older geoae, without it, is rebuilt and tried)."""
    try:
        digest = _digest(path)
        return _trusted(path) is None and all(path.with_suffix(s).read_text().strip() == digest
                                              for s in (".sha256", ".tried"))
    except OSError:
        return False


class KernelCrashed(OSError):
    """A freshly built kernel library crashed (or hung) when tried in a child process: never loaded here."""


def _flag_value(flags: tuple[str, ...], prefix: str) -> str | None:
    return next((f[len(prefix):] for f in flags if f.startswith(prefix)), None)


# the child's program: load the library and run one small training step with it (exit 0 if all went well)
_TRY = """import sys
from pathlib import Path
from geoae import fused
fused._try_step(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
"""


def _try_step(path: Path, lanes: int, wg: int) -> None:
    """One training step (forward and backward, a 16 × 16 network, one thread) with the library at ``path``;
    raises where the numbers are not finite. Runs in the child process of ``_try_in_child``."""
    from .models import ModelConfig, build_model

    k = Kernel(_open(path), lanes, wg, (), path, "", {})
    ex = FusedAutoencoder(build_model(ModelConfig(size=16), seed=0), threads=1, kernel=k)
    _, mse, _ = ex.loss(torch.rand(2 * lanes, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    mse.backward()
    if not torch.isfinite(mse):
        raise SystemExit(f"the step's loss is {mse.item()}")


def _try_in_child(path: Path, flags: tuple[str, ...], timeout: float = 300) -> None:
    """Run a training step with the library at ``path`` in a child process, so that a library this CPU cannot
    run (SIGILL from a ``-march`` it lacks) kills the child, not this process. Raises ``KernelCrashed`` naming
    the library and the settings that chose its flags."""
    lanes, wg = int(_flag_value(flags, "-DGEOAE_LANES=") or 8), int(_flag_value(flags, "-DGEOAE_WG=") or 8)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(Path(__file__).resolve().parent.parent),
                                                       env.get("PYTHONPATH"))))
    try:
        proc = subprocess.run([sys.executable, "-c", _TRY, str(path), str(lanes), str(wg)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0:
            return
        if proc.returncode < 0:
            try:
                how = f"killed by {signal.Signals(-proc.returncode).name}: this CPU cannot run it"
            except ValueError:
                how = f"killed by signal {-proc.returncode}: this CPU cannot run it"
        else:
            how = f"exit {proc.returncode}: {' '.join(proc.stderr.strip().splitlines()[-1:])[-300:]}"
    except subprocess.TimeoutExpired:
        how = f"no answer in {timeout:g} s"
    march = _flag_value(flags, "-march=") or "(none)"
    raise KernelCrashed(
        f"the fused kernel library {library_path(flags, path.parent).name} (-march={march}, lanes={lanes}, "
        f"wg={wg}) failed when tried in a child process ({how}); refused and not cached. "
        f"Check GEOAE_MARCH (now {os.environ.get('GEOAE_MARCH') or 'unset: native'}) and GEOAE_KERNEL (now "
        f"{os.environ.get('GEOAE_KERNEL') or 'unset: auto'}), e.g. unset them or use GEOAE_MARCH=x86-64-v3")


def _private_dir(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    why = _trusted(cache)
    if why is not None:
        raise OSError(f"refusing the kernel cache: {why}; set GEOAE_CACHE to a directory of your own")
    return cache


def _build(flags: tuple[str, ...], cache: Path) -> Path:
    """The verified library for ``flags``: reused from the cache, else (re)compiled. Raises OSError."""
    path = library_path(flags, _private_dir(cache))
    if _verified(path):
        return path
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC, or install cc / gcc / clang)")
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=path.stem, suffix=".so.tmp")
    os.close(fd)
    try:
        proc = subprocess.run([*cc, *flags, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise OSError(f"{' '.join(cc)} failed: {proc.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)
        _try_in_child(Path(tmp), flags)  # KernelCrashed: the library is removed below, never cached
        digest = _digest(Path(tmp))
        _write_text(path.with_suffix(".sha256"), digest + "\n")
        _write_text(path.with_suffix(".tried"), digest + "\n")
        os.replace(tmp, path)  # atomic: concurrent processes build the same file and one wins
    except subprocess.SubprocessError as err:
        raise OSError(f"{' '.join(cc)} failed: {err}") from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _open(path: Path) -> ctypes.CDLL:
    """Load a verified library and check its ABI against this module's (raises OSError on mismatch)."""
    lib = ctypes.CDLL(str(path))
    try:
        return _bind(lib, path)
    except AttributeError as err:  # a library that is not geoae's kernel: a missing entry point
        raise OSError(f"{path}: not a geoae kernel ({err}); delete it to rebuild") from None


def _bind(lib: ctypes.CDLL, path: Path) -> ctypes.CDLL:
    for name in ("geoae_abi_version", "geoae_layer_size", "geoae_lanes", "geoae_chunk", "geoae_wg_accumulators",
                 "geoae_image_slots"):
        getattr(lib, name).restype = ctypes.c_int if name != "geoae_image_slots" else ctypes.c_long
    if lib.geoae_abi_version() != ABI_VERSION or lib.geoae_layer_size() != ctypes.sizeof(_Layer):
        raise OSError(f"{path}: ABI {lib.geoae_abi_version()} with a {lib.geoae_layer_size()}-byte Layer, expected "
                      f"ABI {ABI_VERSION} with {ctypes.sizeof(_Layer)} bytes; delete it to rebuild")
    ptr, ptrs, c_int, c_float, c_long = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                         ctypes.c_float, ctypes.c_long)
    layers = ctypes.POINTER(_Layer)
    lib.geoae_scratch_floats.restype = lib.geoae_activation_floats.restype = lib.geoae_coef_floats.restype = c_long
    lib.geoae_scratch_floats.argtypes = [layers, c_int, layers, c_int, c_int]
    lib.geoae_activation_floats.argtypes = [layers, c_int, c_int]
    lib.geoae_coef_floats.argtypes = [layers, c_int, c_int]
    lib.geoae_image_slots.argtypes = [c_int]
    lib.geoae_ae_forward.restype = lib.geoae_ae_backward.restype = c_int
    lib.geoae_ae_forward.argtypes = [layers, c_int, layers, c_int, c_int, ptr, ptr, ptrs, ptrs, ptr, ptrs, ptr, ptr,
                                     ptr, c_int, ptr, ptr]
    lib.geoae_ae_backward.argtypes = [layers, c_int, layers, c_int, c_int, ptrs, ptrs, ptr, c_float, ptrs, ptr,
                                      c_float, c_int, ptr, ptr, ptr, ptr, ptr, c_int]
    lib.geoae_ae_step.restype = c_int
    lib.geoae_ae_step.argtypes = [layers, c_int, layers, c_int, c_int, ptr, ptr, ptr, ptrs, ptrs, ptr, ptrs, ptr, ptr,
                                  c_float, c_float, c_int, ptr, ptr, ptr, ptr, ptr, c_int, ptr, ptr]
    return lib


@dataclass
class Kernel:
    """A loaded kernel library and its configuration."""

    lib: ctypes.CDLL
    lanes: int
    wg: int
    flags: tuple[str, ...]
    path: Path
    choice: str  # "measured", "cached measurement", "GEOAE_KERNEL", "only candidate"
    timings: dict[str, float]  # seconds per tuning step of each candidate ("lanes=8,wg=16": s)

    def info(self) -> dict:
        return {"lanes": self.lanes, "wg_accumulators": self.wg, "chunk": self.lib.geoae_chunk(),
                "flags": " ".join(self.flags), "choice": self.choice, "library": self.path.name,
                "tuning_seconds_per_step": self.timings}


_kernels: dict[tuple, Kernel | str] = {}
_lock = threading.Lock()


def _load_candidate(lanes: int, wg: int, march: str, cache: Path) -> tuple[ctypes.CDLL, tuple[str, ...], Path]:
    """Build (or reuse) and load one configuration; without ``-march`` support, plain flags are used."""
    errors = []
    for arch in ((march, "") if march else ("",)):
        flags = flags_for(lanes, wg, arch)
        try:
            path = _build(flags, cache)
            return _open(path), flags, path
        except KernelCrashed:
            raise  # compiled, then crashed: not a compiler that refuses -march; plain flags would hide it
        except OSError as err:
            errors.append(str(err))
    raise OSError("; ".join(errors))


def kernel(settings: Settings | None = None) -> Kernel | None:
    """The kernel for these settings (built, tuned and loaded once per process), or None where unavailable."""
    settings = read_settings() if settings is None else settings
    key = (settings.cache, settings.march, settings.kernel, settings.fused, os.environ.get("CC", ""))
    with _lock:  # train_many's threads may ask at once
        if key not in _kernels:
            try:
                _kernels[key] = _make_kernel(settings)
            except (OSError, KernelError) as err:
                _kernels[key] = str(err)
        found = _kernels[key]
    return found if isinstance(found, Kernel) else None


def _make_kernel(settings: Settings) -> Kernel:
    if not settings.fused:
        raise OSError("disabled by GEOAE_FUSED=0")
    cache = Path(settings.cache).expanduser()
    forced = settings.kernel_choice()
    if forced is not None:
        lib, flags, path = _load_candidate(*forced, settings.march, cache)
        return Kernel(lib, *forced, flags, path, "GEOAE_KERNEL", {})
    cc = " ".join(_compiler() or ["none"])
    key = _key(SOURCE.read_bytes(), HEADER.read_bytes(), settings.march, _cpu_signature(), cc)
    tuning = cache / f"tuning-{key}.json"
    try:
        saved = json.loads(tuning.read_text())
        lanes, wg = saved["lanes"], saved["wg"]
        if (lanes, wg) in CANDIDATES:
            lib, flags, path = _load_candidate(lanes, wg, settings.march, cache)
            return Kernel(lib, lanes, wg, flags, path, "cached measurement", saved.get("timings", {}))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return _tune(settings, cache, tuning)


def _tune(settings: Settings, cache: Path, tuning: Path) -> Kernel:
    """Build every candidate (two compilers at a time), time a paper64 training step with each, keep the fastest."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = {c: pool.submit(_load_candidate, *c, settings.march, cache) for c in CANDIDATES}
        loaded = {}
        for c, f in futures.items():
            try:
                loaded[c] = f.result()
            except OSError as err:
                last_error = err
    if not loaded:
        raise last_error
    timings = {f"lanes={c[0]},wg={c[1]}": _time_step(Kernel(lib, *c, flags, path, "", {}))
               for c, (lib, flags, path) in loaded.items()}
    best = min(loaded, key=lambda c: timings[f"lanes={c[0]},wg={c[1]}"])
    lib, flags, path = loaded[best]
    _write_text(tuning, json.dumps({"lanes": best[0], "wg": best[1], "timings": timings}, indent=1) + "\n")
    return Kernel(lib, *best, flags, path, "measured" if len(loaded) > 1 else "only candidate", timings)


def _time_step(k: Kernel, repeats: int = 5) -> float:
    """Seconds of one training step (forward and backward, batch 64, one thread) of the paper's network: the
    best of ``repeats`` after a warm-up."""
    from .models import ModelConfig, build_model

    model = build_model(ModelConfig(), seed=0)
    ex = FusedAutoencoder(model, threads=1, kernel=k)
    x = torch.rand(64, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    best = float("inf")
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        for _ in range(3):
            z, mse, _ = ex.loss(x)
            mse.backward()
        if r:
            best = min(best, (time.perf_counter() - t0) / 3)
    return best


def available(settings: Settings | None = None) -> bool:
    """True when the kernel is compiled (or compiles now) and loads."""
    return kernel(settings) is not None


def unavailable_reason(settings: Settings | None = None) -> str | None:
    """Why ``available()`` is False (None when it is True)."""
    settings = read_settings() if settings is None else settings
    if kernel(settings) is not None:
        return None
    key = (settings.cache, settings.march, settings.kernel, settings.fused, os.environ.get("CC", ""))
    return _kernels[key]


def kernel_info(settings: Settings | None = None) -> dict:
    """The kernel configuration in force (for bench output and run metrics), or why there is none."""
    k = kernel(settings)
    return k.info() if k is not None else {"unavailable": unavailable_reason(settings)}


def supports(spec: NetSpec) -> str | None:
    """None if the fused kernel computes the network ``spec``, else which of its features it lacks."""
    missing = sorted(spec.features() - SUPPORTED_FEATURES)
    if missing:
        return f"features {', '.join(missing)} (the fused kernel has: {', '.join(sorted(SUPPORTED_FEATURES))})"
    frozen = {ly.frozen for ly in spec.encoder}
    if len(frozen) > 1 or any(ly.frozen for ly in spec.decoder):
        return "a partly frozen network (the fused kernel trains the decoder, and the encoder or none of it)"
    return None


# ------------------------------------------------------------------------------------------ executor


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
        self.frozen = all(ly.frozen for ly in layers)

    def coefficients(self) -> list[torch.Tensor]:
        """Per layer, in the kernel's order: w in convolution layout (cout, cin, *k), then b, then the bias map
        (*S_out, cout) of the coordinate channels, each a differentiable function of the module's parameters."""
        from .models import conv_weight, coordinate_bias

        out = []
        for ly, m in zip(self.specs, self.modules, strict=True):
            out.append(conv_weight(ly, m.weight).contiguous())
            if ly.bias:
                out.append(m.bias)
            if ly.coord:
                bm = coordinate_bias(ly, m.weight)  # (cout, *S_out)
                out.append(bm.permute(*range(1, ly.ndim + 1), 0).contiguous())
        return out

    def bind(self, coefs: list[torch.Tensor]) -> None:
        """Point the C descriptors at this step's coefficient tensors."""
        it = iter(coefs)
        for desc, ly in zip(self.layers, self.specs, strict=True):
            desc.w = next(it).data_ptr()
            desc.b = next(it).data_ptr() if ly.bias else None
            desc.bm = next(it).data_ptr() if ly.coord else None


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
            kernel = globals()["kernel"]()
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

    def _buffers(self, batch: int, contractive: bool):
        free = self._pool.get((batch, contractive))
        if free:
            return free.pop()
        lib, enc, dec = self.kernel.lib, self.encoder, self.decoder
        size = lib.geoae_activation_floats
        acts_e = [torch.empty(size(enc.layers[k], 0, batch)) for k in range(enc.n)]
        acts_e.append(torch.empty(size(enc.layers[enc.n - 1], 1, batch)))
        acts_d = [acts_e[-1]] + [torch.empty(size(dec.layers[k], 1, batch)) for k in range(dec.n)]
        vbuf, u0 = [], None
        if contractive:  # per block and code dimension: the gradient of z_k at every encoder layer, and dz_k/dx
            d = self.spec.latent_dim
            vbuf = [torch.empty(d * size(enc.layers[k], 1, batch)) for k in range(enc.n)]
            u0 = torch.empty(d * acts_e[0].numel())
        slots = lib.geoae_image_slots(batch)
        sse, pen = torch.empty(slots, dtype=torch.float64), torch.empty(slots, dtype=torch.float64)
        return acts_e, acts_d, vbuf, u0, (_pointers(acts_e), _pointers(acts_d), _pointers(vbuf)), sse, pen

    def _release(self, batch: int, contractive: bool, buffers) -> None:
        free = self._pool.setdefault((batch, contractive), [])
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
        """None if ``step`` can train this network, else why not (coordinate channels: their bias map is a
        function of the weights that only the autograd path of ``loss`` differentiates)."""
        return "coordinate channels" if any(ly.coord for ly in self.spec.layers) else None

    @torch.no_grad()
    def step(self, images: torch.Tensor, index: torch.Tensor | None = None,
             contractive_weight: float = 0.0) -> StepOutput:
        """One training step in one kernel call (``geoae_ae_step``): the batch x = images[index] (images
        (N, 1, m, m) or (N, 1, n) float32; index (B,) int64, or None for x = images) gathered straight into the
        kernels' layout, forward, loss and backward, block by block. The gradient of
        MSE + contractive_weight · contractive penalty is written to the trainable parameters' ``.grad``
        (overwritten; parameters without gradient are left alone). Same numbers, bit for bit, as ``loss(x)``
        followed by ``backward()`` of that sum; no autograd graph is built."""
        from .models import check_input

        reason = self.one_call()
        if reason is not None:
            raise ValueError(f"FusedAutoencoder.step: not supported for networks with {reason}; use loss()")
        check_input(images, self.spec.input_shape, what="images")
        images = images.to(torch.float32).contiguous()
        if index is None:
            batch = images.shape[0]
        else:
            if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 1:
                raise TypeError(f"index must be a 1-D int64 tensor, got {getattr(index, 'dtype', type(index))}")
            index = index.contiguous()
            batch = index.shape[0]
            if batch and (int(index.min()) < 0 or int(index.max()) >= images.shape[0]):
                raise ValueError(f"index values must lie in [0, {images.shape[0]}), got "
                                 f"[{int(index.min())}, {int(index.max())}]")
        if batch < 1:
            raise ValueError("step needs a batch of at least 1 image")
        contractive = contractive_weight != 0.0
        lib, enc, dec = self.kernel.lib, self.encoder, self.decoder
        acts_e, acts_d, vbuf, u0, ptrs, sse, pen = buffers = self._buffers(batch, contractive)
        n, d = batch * math.prod(self.spec.input_shape), self.spec.latent_dim
        # the scales of loss().backward(): d total / d mse = 1, d total / d penalty = the weight in float32
        gscale = 2.0 / n
        cscale = 2.0 * float(torch.tensor(contractive_weight, dtype=torch.float32)) / (n * d) if contractive else 0.0
        z = images.new_empty(batch, d)
        total, pen_total = ctypes.c_double(0.0), ctypes.c_double(0.0)
        coefs_e, coefs_d = enc.coefficients(), dec.coefficients()
        enc.bind(coefs_e)
        dec.bind(coefs_d)
        flat_e, flat_d, plan = self._step_gradients()
        gacc_e, gacc_d = self._gradient_accumulators(batch)
        train_enc = not enc.frozen
        _check(lib.geoae_ae_step(
            enc.layers, enc.n, dec.layers, dec.n, batch, images.data_ptr(),
            index.data_ptr() if index is not None else None, z.data_ptr(), ptrs[0], ptrs[1], sse.data_ptr(),
            ptrs[2] if contractive else None, u0.data_ptr() if contractive else None,
            pen.data_ptr() if contractive else None, gscale, cscale, int(train_enc), flat_e.data_ptr(),
            flat_d.data_ptr(), self._scratch().data_ptr(), gacc_e.data_ptr(), gacc_d.data_ptr(), self.threads,
            ctypes.byref(total), ctypes.byref(pen_total)), "geoae_ae_step")
        self._release(batch, contractive, buffers)
        for param, grad, transposed in plan:
            if not param.requires_grad:
                continue
            if transposed:
                if param.grad is None:
                    param.grad = torch.empty_like(param)
                param.grad.copy_(grad.transpose(0, 1))
            elif param.grad is None or param.grad.data_ptr() != grad.data_ptr():
                param.grad = grad
        penalty = pen_total.value / (n * d) if contractive else 0.0
        return StepOutput(z, torch.tensor(total.value / n, dtype=torch.float32),
                          torch.tensor(penalty, dtype=torch.float32))

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
        from .models import check_input

        x = x.to(torch.float32).contiguous()
        check_input(x, self.spec.input_shape)
        coefs_e, coefs_d = self.encoder.coefficients(), self.decoder.coefficients()
        return _LossFunction.apply(self, bool(contractive), x, len(coefs_e), *coefs_e, *coefs_d)


class StepOutput(NamedTuple):
    """What ``FusedAutoencoder.step`` returns (its gradients are in the parameters' ``.grad``)."""

    z: torch.Tensor  # (B, d): the batch's codes
    mse: torch.Tensor  # (): mean over batch and pixels of (D(E(x)) − x)²
    penalty: torch.Tensor  # (): the contractive penalty, 0 unless asked for


def _grad_plan(stack: _Stack, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(parameter, its gradient's slice of ``flat`` in the kernel's coefficient order, whether that slice is the
    transpose of the parameter's layout (``convT``: the kernel's (cout, cin) against torch's (cin, cout)))."""
    plan, offset = [], 0
    for ly, m in zip(stack.specs, stack.modules, strict=True):
        shape = (ly.cout, ly.cin, *m.weight.shape[2:])
        n = math.prod(shape)
        plan.append((m.weight, flat[offset:offset + n].view(shape), ly.op == "convT"))
        offset += n
        if ly.bias:
            plan.append((m.bias, flat[offset:offset + ly.cout], False))
            offset += ly.cout
    return plan


def announce_fallback(reason: str) -> None:
    """Say once per reason on stderr that training runs on the (slower) torch path, and why."""
    if reason not in _announced:
        _announced.add(reason)
        print(f"geoae: training on the torch path (several times slower): {reason}", file=sys.stderr, flush=True)


_announced: set[str] = set()
